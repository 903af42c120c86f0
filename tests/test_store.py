"""The run store: contract layout, commit order, resume after a torn append, metadata that reopens."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from stream3d import config as config_mod
from stream3d.errors import UserError
from stream3d.ome import scale_of
from stream3d.store import RawFrame, RunStore, Status, open_run, read_segments

CFG = config_mod.load(None, ["sample.slices=4", "stream.frame_interval=0.5"])


def _frames(n, start=0, shape=(8, 6), dtype=np.uint16, series="s1"):
    rng = np.random.default_rng(start)
    return [RawFrame(series, i, 10.0 + 0.25 * i,
                     rng.integers(0, 60000, shape).astype(dtype)) for i in range(start, start + n)]


def test_layout_dtypes_chunks_and_attributes(tmp_path):
    path = tmp_path / "run.zarr"
    store = RunStore.open(path, CFG)
    frames = _frames(3, dtype=np.dtype(">u2"))
    assert store.append(frames, {"received": 3}) == range(0, 3)
    # Raw frames are appended by direct whole-chunk file writes; zarr must read them back.
    assert set(store._fast) == {"frames", "timestamp", "frame_id", "status"}
    vol = np.full((4, 8, 6), 2.5, np.float32)
    store.write_result(1, status=Status.REFINED, popout=vol * 2, volume=vol, loss=0.125,
                       counters={"received": 3, "malformed": 2})
    store.close()

    g = open_run(path)
    # A big-endian detector's uint16 stays uint16 (values kept; stored in native byte order).
    assert g["frames"].dtype == np.dtype("uint16") and g["frames"].shape == (3, 8, 6)
    np.testing.assert_array_equal(g["frames"][:], np.stack([f.data for f in frames]))
    for name, dtype, shape in [("popout", "float32", (3, 4, 8, 6)), ("volume", "float32", (3, 4, 8, 6)),
                               ("frame_id", "int64", (3,)), ("timestamp", "float64", (3,)),
                               ("status", "uint8", (3,)), ("loss", "float32", (3,))]:
        assert g[name].dtype == np.dtype(dtype) and g[name].shape == shape, name
        assert g[name].chunks[0] == 1
    np.testing.assert_array_equal(g["volume"][1], vol)
    assert np.isnan(g["volume"][0]).all() and np.isnan(g["volume"][2]).all()
    np.testing.assert_array_equal(g["status"][:], [0, 1, 0])
    np.testing.assert_array_equal(g["frame_id"][:], [0, 1, 2])
    np.testing.assert_allclose(g["timestamp"][:], [10.0, 10.25, 10.5])
    assert g["loss"][1] == np.float32(0.125) and np.isnan(g["loss"][0])
    meta = g.attrs["stream3d"]
    assert meta["counters"] == {"received": 3, "malformed": 2, "gaps": 0, "duplicates": 0,
                                "skipped": 0, "failed": 0}
    assert meta["config"]["sample"]["slices"] == 4 and meta["version"]
    # Interval measured from the timestamps (0.25 s), not the config's 0.5 s.
    assert scale_of(g.attrs["ome"]) == (0.25, 20.0, 1.0, 1.0)
    # Consolidated metadata exists after close, and a plain zarr open sees every array.
    assert zarr.open_consolidated(path).metadata.consolidated_metadata is not None


def test_torn_append_is_cut_back_and_resume_continues(tmp_path):
    path = tmp_path / "run.zarr"
    store = RunStore.open(path, CFG)
    store.append(_frames(4))
    # Simulate a kill after the resize and the raw write but before frame_id (the commit mark).
    arrays = {n: zarr.open_array(path / n, mode="r+") for n in ("frames", "frame_id", "status")}
    for a in zarr.open_group(path, mode="r+").array_values():
        a.resize((6, *a.shape[1:]))
    arrays["frames"][4:6] = np.ones((2, 8, 6), np.uint16)
    del store  # never closed: no consolidated metadata

    again = RunStore.open(path, CFG)
    assert len(again) == 4 and list(again.frame_ids) == [0, 1, 2, 3]
    assert again.seen() == {"s1": {0, 1, 2, 3}}
    assert list(again.indices(Status.PENDING)) == [0, 1, 2, 3]
    again.append(_frames(2, start=4))
    again.close()
    g = open_run(path)
    assert g["frames"].shape[0] == 6 and list(g["frame_id"][:]) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(g["frames"][4], _frames(1, start=4)[0].data)


def test_series_segments_and_skipped_marks(tmp_path):
    store = RunStore.open(tmp_path / "r.zarr", CFG)
    store.begin_series("a", {"microscope": {"defocus": 1500.0}})
    store.append(_frames(3, series="a"))
    store.append(_frames(2, series="b"))
    store.mark([0, 1], Status.SKIPPED, {"skipped": 2})
    store.close()
    g = open_run(tmp_path / "r.zarr")
    segs = read_segments(g)
    assert [(s["series"], s["first"]) for s in segs] == [("a", 0), ("b", 3)]
    assert segs[0]["meta"] == {"microscope": {"defocus": 1500.0}}
    assert list(g["status"][:]) == [2, 2, 0, 0, 0]
    again = RunStore.open(tmp_path / "r.zarr", CFG)
    assert again.seen() == {"a": {0, 1, 2}, "b": {0, 1}}
    assert again.counters["skipped"] == 2
    # Reopened for writing: the consolidated view is gone, so no reader trusts a stale one.
    assert zarr.open_group(tmp_path / "r.zarr", mode="r").metadata.consolidated_metadata is None
    again.close()
    assert zarr.open_group(tmp_path / "r.zarr", mode="r").metadata.consolidated_metadata is not None


def test_refuses_other_physics_and_foreign_paths(tmp_path):
    RunStore.open(tmp_path / "r.zarr", CFG).append(_frames(1))
    other = CFG.replace("microscope", defocus=1234.0)
    with pytest.raises(UserError, match="microscope.defocus"):
        RunStore.open(tmp_path / "r.zarr", other)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="not a Zarr run store"):
        RunStore.open(tmp_path / "junk", CFG)
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(UserError, match="not a stream3d run store"):
        RunStore.open(tmp_path / "plain.zarr", CFG)
