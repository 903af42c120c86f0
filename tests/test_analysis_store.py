"""Reading run and truth stores: lazy arrays, coordinates, live stores, bad input, growth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import stream3d
from analysis_stores import CFG, DT, NX, NY, SHAPE, SAMPLING, write_run, write_truth
from stream3d.analysis import Run, read_run
from stream3d.analysis.analyze import analyze
from stream3d.analysis.metrics import occupancy
from stream3d.analysis.run import run_config
from stream3d.cli import app
from stream3d.errors import UserError
from stream3d.specimen import Dendrite, DendriteParams
from stream3d.store import Status

R, S, F, P = Status.REFINED, Status.SKIPPED, Status.FAILED, Status.PENDING


def test_import_stream3d_stays_light_and_exports_open_run():
    code = ("import sys, stream3d; heavy = {'zarr', 'dask', 'scipy', 'matplotlib', 'torch'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules); "
            "assert callable(stream3d.open_run)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_open_run_gives_lazy_arrays_with_physical_coordinates(tmp_path):
    import dask.array as da

    write_run(tmp_path / "run.zarr", [R, R, S, R])
    opened = stream3d.open_run(tmp_path / "run.zarr")
    run = opened if isinstance(opened, Run) else read_run(tmp_path / "run.zarr")
    assert isinstance(run.volume, da.Array) and run.volume.shape == (4, *SHAPE)
    assert run.arrays["frames"].shape == (4, NY, NX)
    c = run.coords()
    np.testing.assert_allclose(c["t"], [0.0, DT, 2 * DT, 3 * DT])
    np.testing.assert_allclose(c["x"][:2], [0.5, 1.5])  # voxel centres, Å
    assert c["height"][0] == pytest.approx(SHAPE[0] * SAMPLING[0] - SAMPLING[0] / 2)
    assert run.sampling == SAMPLING and run.frame_interval == pytest.approx(DT)
    assert run.status_names == ("refined", "refined", "skipped", "refined")
    np.testing.assert_array_equal(run.frame_id, [100, 101, 102, 103])
    assert run.counters["skipped"] == 1 and run.config["sample"]["potential"] == 5.0
    assert run_config(run).sample == CFG.sample


def test_open_run_as_xarray_when_installed(tmp_path):
    pytest.importorskip("xarray")
    write_run(tmp_path / "run.zarr", [R, S])
    ds = stream3d.open_run(tmp_path / "run.zarr")
    assert ds["volume"].dims == ("t", "z", "y", "x") and ds["volume"].chunks is not None
    assert float(ds["x"][1] - ds["x"][0]) == SAMPLING[2]
    assert ds["height"].dims == ("z",) and ds.attrs["counters"]["skipped"] == 1
    assert ds["volume"].attrs["units"] == "V" and ds["frames"].attrs["units"] == "counts"
    assert ds["t"].attrs["units"] == "s" and ds["timestamp"].attrs["units"] == "s"
    meanings = dict(zip(ds["status"].attrs["flag_values"],
                        ds["status"].attrs["flag_meanings"].split()))
    assert [meanings[int(v)] for v in ds["status"].values] == ["refined", "skipped"]


def test_growing_discs_rows_rates_and_empty_rows(tmp_path):
    from analysis_stores import disc_volume_nm3

    statuses = [R, R, S, R, F, R, P]
    write_run(tmp_path / "run.zarr", statuses)
    table = analyze(tmp_path / "run.zarr", tmp_path / "report").table
    refined = [t for t, s in enumerate(statuses) if s == R]
    np.testing.assert_array_equal(np.flatnonzero(table.analysed), refined)
    for t in refined:
        assert table.values["volume_nm3"][t] == pytest.approx(disc_volume_nm3(t), rel=0.02)
        assert table.values["parts"][t] == 3
    rate = table.growth_rate_nm3_per_s
    assert (rate[refined] > 0).all() and np.isnan(rate[[2, 4, 6]]).all()
    # Across the skipped and failed frames: a line through the analysed frames 0, 1, 3, 5.
    want = np.polyfit(np.array(refined) * DT, [disc_volume_nm3(t) for t in refined], 1)[0]
    assert rate[3] == pytest.approx(want, rel=0.03)

    lines = (tmp_path / "report" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert len(rows) == len(statuses)
    metric_columns = header[header.index("volume_nm3"):]
    for t, row in enumerate(rows):
        assert row["status"] == ("refined", "refined", "skipped", "refined", "failed", "refined",
                                 "pending")[t]
        assert float(row["time_s"]) == pytest.approx(t * DT)
        filled = [row[c] != "" for c in metric_columns if c != "growth_rate_nm3_per_s"]
        assert all(filled) if statuses[t] == R else not any(filled), row


def test_dendrite_truth_store_grows(tmp_path):
    dendrite = Dendrite(DendriteParams(branches=6, growth=15.0, seed=1), (32, 96, 96),
                        (20.0, 2.0, 2.0))
    write_truth(tmp_path / "truth.zarr", [dendrite.occupancy(t) for t in range(5)], pixel_size=2.0)
    run = read_run(tmp_path / "truth.zarr")
    assert run.name == "occupancy" and run.sampling == (20.0, 2.0, 2.0)
    assert run.status_names == ("complete",) * 5
    table = analyze(tmp_path / "truth.zarr", tmp_path / "report").table
    assert table.analysed.all()
    assert (table.growth_rate_nm3_per_s[1:] > 0).all()
    assert (table.values["parts"] == 1).all()
    assert (np.diff(table.values["area_nm2"]) > 0).all()


def test_a_store_being_written_is_read_as_far_as_it_is_committed(tmp_path):
    path = tmp_path / "live.zarr"
    store = write_run(path, [R, P, R, P], close=False)  # never closed: a live run
    # A torn append: arrays already resized for frame 4, its frame_id (the commit mark) not yet.
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    for name in group.array_keys():
        a = group[name]
        a.resize((5, *a.shape[1:]))
    run = read_run(path)
    assert run.shape[0] == 4 and run.arrays["frames"].shape[0] == 4
    np.testing.assert_array_equal(np.flatnonzero(run.done), [0, 2])
    assert len(store) == 4
    # Frames the writer finishes later show up when the store is read again.
    volume = np.asarray(run.frame(0))
    store.write_result(1, status=R, popout=volume, volume=volume)
    np.testing.assert_array_equal(np.flatnonzero(read_run(path).done), [0, 1, 2])


def test_a_partly_simulated_truth_store_counts_only_written_frames(tmp_path):
    occ = np.zeros((4, 16, 16), np.float32)
    occ[1:3, 4:12, 4:12] = 1.0
    write_truth(tmp_path / "truth.zarr", [occ] * 5, written=3)
    run = read_run(tmp_path / "truth.zarr")
    assert run.shape[0] == 3


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is not a Zarr run store"),
    (lambda p: zarr.open_group(p, mode="w").create_array("x", shape=(3,), dtype="f4"),
     "no volume / occupancy / potential array"),
    (lambda p: write_run(p, [P, S, F]), "no reconstructed frames yet (1 pending, 1 skipped, 1 failed)"),
])
def test_bad_input_is_one_clear_error_and_exit_code_2(tmp_path, make, message):
    path = tmp_path / "in.zarr"
    make(path)
    with pytest.raises(UserError, match=None) as info:
        analyze(path, tmp_path / "out")
    assert message in str(info.value)
    result = CliRunner().invoke(app, ["analyze", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_rejects_a_frame_that_was_not_reconstructed(tmp_path):
    write_run(tmp_path / "run.zarr", [R, S, R])
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "run.zarr"), "--out",
                                      str(tmp_path / "out"), "--frame", "1"])
    assert result.exit_code == 2 and "--frame 1 is skipped" in result.output


def test_threshold_follows_the_material_potential(tmp_path):
    write_run(tmp_path / "run.zarr", [R])
    run = read_run(tmp_path / "run.zarr")
    volume = run.frame(0)
    # Raising sample.potential to 12 V puts the threshold (6 V) above the 5 V material.
    assert occupancy(volume, run_config(run, None, ("sample.potential=12",)).sample.potential).max() < 0.5


def test_a_frame_marked_refined_without_a_volume_is_an_empty_row(tmp_path):
    store = write_run(tmp_path / "run.zarr", [R, P], close=False)
    store.write_result(1, status=R, volume=None)  # status says refined, volume never written
    store.close()
    table = analyze(tmp_path / "run.zarr", tmp_path / "out").table
    assert table.status == ("refined", "empty")
    assert table.analysed.tolist() == [True, False]
    assert all(cell == "" for cell in table.rows()[1][4:])
