"""`stream3d compare`: errors of a run store against the truth store of its movie."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis_stores import CFG, SAMPLING, SHAPE, growing_discs, write_truth
from stream3d.analysis.truth import compare_to_truth
from stream3d.cli import app
from stream3d.specimen import discs
from stream3d.store import RawFrame, RunStore, Status


def _run(path, volumes, statuses):
    store = RunStore.open(path, CFG)
    raw = np.full(SHAPE[1:], 2000, np.uint16)
    store.append([RawFrame("movie", t, 0.25 * t, raw) for t in range(len(statuses))])
    for t, (v, status) in enumerate(zip(volumes, statuses)):
        if status == Status.REFINED:
            store.write_result(t, status=status, popout=v[0], volume=v[1], loss=0.0)
        else:
            store.mark([t], status)
    store.close()


def test_errors_are_zero_for_the_truth_and_the_shift_for_a_shifted_volume(tmp_path):
    occ = [discs(SHAPE, SAMPLING, growing_discs(t)) for t in range(3)]
    truth = write_truth(tmp_path / "truth.zarr", occ)
    pot = CFG.sample.potential
    # Frame 0: pop-out = truth. Frame 1: pop-out lifted by 2 slices (40 Å), refined = truth.
    # Frame 2: skipped.
    lifted = np.roll(occ[1], -2, axis=0) * pot
    _run(tmp_path / "run.zarr", [(occ[0] * pot, occ[0] * pot), (lifted, occ[1] * pot), None],
         [Status.REFINED, Status.REFINED, Status.SKIPPED])
    rows = compare_to_truth(tmp_path / "run.zarr", truth)
    assert [r.frame_id for r in rows] == [0, 1, 2]
    assert rows[0].popout_depth == pytest.approx(0.0, abs=1e-6) and rows[0].popout_iou == 1.0
    assert rows[1].popout_depth == pytest.approx(40.0, abs=1e-4)
    assert rows[1].refined_depth == pytest.approx(0.0, abs=1e-6) and rows[1].refined_iou == 1.0
    assert 0.0 < rows[1].popout_iou < 1.0
    assert rows[2].status == "skipped" and math.isnan(rows[2].refined_depth)

    out = CliRunner().invoke(app, ["compare", str(tmp_path / "run.zarr"), str(truth),
                                   "--csv", str(tmp_path / "e.csv")])
    assert out.exit_code == 0, out.output
    assert "mean over 2 frames" in out.output
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[3].endswith("skipped,,,,")


def test_a_store_that_is_not_a_truth_store_is_exit_code_2(tmp_path):
    occ = [discs(SHAPE, SAMPLING, growing_discs(0))]
    _run(tmp_path / "run.zarr", [(occ[0], occ[0])], [Status.REFINED])
    out = CliRunner().invoke(app, ["compare", str(tmp_path / "run.zarr"), str(tmp_path / "run.zarr")])
    assert out.exit_code == 2 and "not a truth.zarr" in out.output


def test_compare_out_writes_side_by_side_pictures_and_analyze_truth_adds_them(tmp_path):
    from PIL import Image

    from stream3d.analysis.compare_pictures import _section_lines, exaggeration

    occ = [discs(SHAPE, SAMPLING, growing_discs(t)) for t in range(3)]
    truth = write_truth(tmp_path / "truth.zarr", occ)
    pot = CFG.sample.potential
    _run(tmp_path / "run.zarr", [(occ[0] * pot, occ[0] * pot), (occ[1] * pot, occ[1] * pot), None],
         [Status.REFINED, Status.REFINED, Status.SKIPPED])
    out = CliRunner().invoke(app, ["compare", str(tmp_path / "run.zarr"), str(truth), "--out",
                                   str(tmp_path / "cmp")])
    assert out.exit_code == 0, out.output
    names = {"errors.csv", "compare_xz.png", "compare_yz.png", "compare_heights.png"}
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == names
    for name in names - {"errors.csv"}:
        with Image.open(tmp_path / "cmp" / name) as img:
            assert img.format == "PNG" and min(img.size) > 400, name
    rows = (tmp_path / "cmp" / "errors.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].startswith("0,0,refined,0,1,0,1")
    # Sections go through the objects: the row / column crossing the most truth material.
    iy, ix = _section_lines(occ[2])
    assert (occ[2][:, iy, :] > 0.5).sum() == max((occ[2][:, j, :] > 0.5).sum() for j in range(SHAPE[1]))
    assert (occ[2][:, :, ix] > 0.5).sum() == max((occ[2][:, :, i] > 0.5).sum() for i in range(SHAPE[2]))
    assert exaggeration(64.0, 10.0) == pytest.approx(0.6 * 10.0 / 64.0)
    # analyze --truth: the same pictures and the errors table join the report.
    out = CliRunner().invoke(app, ["analyze", str(tmp_path / "run.zarr"), "--truth", str(truth),
                                   "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    page = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "Errors against the ground truth" in page
    for name in names:
        assert f'"{name}"' in page and (tmp_path / "rep" / name).is_file(), name
