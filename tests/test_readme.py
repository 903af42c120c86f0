"""The README's notebook code runs as written (with and without xarray), and every run store,
even one without frames yet, is valid OME-Zarr 0.5."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from stream3d import config as config_mod
from stream3d.store import RawFrame, RunStore, Status

ROOT = Path(__file__).resolve().parents[1]
CFG = config_mod.load(None, ["sample.slices=4", "sample.slice_thickness=20"])


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _store(path: Path, frames: int) -> None:
    store = RunStore.open(path, CFG)
    if frames:
        store.append([RawFrame("m", i, 0.1 * i, np.full((16, 16), 100 + i, np.uint16))
                      for i in range(frames)])
        vol = np.zeros((4, 16, 16), np.float32)
        vol[1:3, 4:12, 4:12] = 5.0  # an 8 x 8 x 2-slice block of material
        store.write_result(frames - 1, status=Status.REFINED, volume=vol, loss=0.5)
    store.close()


@pytest.mark.parametrize("xarray", [True, False])
def test_the_notebook_snippet_runs_as_written(tmp_path, monkeypatch, xarray):
    if xarray:
        pytest.importorskip("xarray")
    else:
        monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray -> ImportError
    (snippet,) = [b for b in _python_blocks() if "open_run" in b]
    (tmp_path / "out").mkdir()
    _store(tmp_path / "out" / "run.zarr", 3)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["v"].shape == (4, 16, 16) and scope["run"].status_names[-1] == "refined"
    if xarray:
        assert scope["ds"]["volume"].shape == (3, 4, 16, 16)


def test_the_physics_snippet_runs_as_written():
    (snippet,) = [b for b in _python_blocks() if "multislice(" in b and "image(" in b]
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102
    assert np.isfinite(np.asarray(scope["I"])).all()


@pytest.mark.parametrize("frames", [0, 2])
def test_every_run_store_is_valid_ome_zarr(tmp_path, frames):
    from ome_zarr_models.v05.image import Image

    _store(tmp_path / "r.zarr", frames)
    group = zarr.open_group(tmp_path / "r.zarr", mode="r")
    if frames == 0:
        assert "ome" not in group.attrs  # no multiscales naming a volume that is not there
    else:
        Image.from_zarr(group)  # raises on anything invalid
