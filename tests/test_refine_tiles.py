"""Tiled refinement: the plan and halo arithmetic, no seam across tile borders, the same
accuracy as the whole frame, warm starts per tile, and tiles as tasks on real dask workers."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream3d.analysis.accuracy import height_error
from stream3d.config import Config, ConfigError
from stream3d.errors import UserError
from stream3d.popout import PopoutResult, popout
from stream3d.refine import Refiner
from stream3d.refine.tiles import (FIT_REACH_PX, axis_plan, fft_size, frame_plan, halo_px,
                                   reach_angstrom)
from stream3d.simulate import simulate_frame
from stream3d.specimen import column_height, column_thickness, three_discs, tilted_slab

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_300KV = 0.0196875  # Å (DESIGN.md)


# ----------------------------------------------------------------------------- arithmetic
def test_reach_is_delocalisation_plus_propagation_spread_at_the_band_limit():
    # Default optics: k_max = 2/3 x Nyquist at 1 Å/px = 1/3 Å^-1 (the 10 mrad aperture passes
    # 0.51 Å^-1); worst defocus 2000 Å (material at the exit plane); cell 32 x 20 Å.
    k = 1 / 3
    expected = LAMBDA_300KV * 2000 * k + LAMBDA_300KV**3 * 1e7 * k**3 + LAMBDA_300KV * 640 * k
    got = reach_angstrom(energy=300e3, defocus=2000, cs=1e7, aperture=10, cell=640,
                         pixel_size=1.0)
    assert got == pytest.approx(expected, rel=1e-5)
    assert got == pytest.approx(20.15, abs=0.01)
    assert halo_px(Config()) == math.ceil(expected) + FIT_REACH_PX == 29


def test_reach_follows_the_aperture_the_worst_defocus_and_the_astigmatism():
    lam = LAMBDA_300KV
    k = 4e-3 / lam  # a 4 mrad aperture cuts below the band limit
    # Overfocus: the top of a 640 Å cell is at |-300 - 640| Å, astigmatism adds its C12.
    got = reach_angstrom(energy=300e3, defocus=-300, cs=0, aperture=4, cell=640, pixel_size=1.0,
                         astigmatism=50)
    assert got == pytest.approx(lam * (940 + 50) * k + lam * 640 * k, rel=1e-5)


def test_plan_of_a_2048_frame_with_the_default_config():
    tiles = frame_plan((2048, 2048), Config())
    # At least ceil((2048 - 2 x 29) / (512 - 2 x 29)) = 5 per axis, with crops at the smallest
    # fast FFT size (2^a 3^b 5^c 7^d) holding a 398 px interior and its halos: 480 px. Six
    # per axis need 332 + 58 -> 392 px (2^3 7^2): 2352 px of crops per axis against 2400.
    assert len(tiles) == 36
    assert {t.crop_y[1] - t.crop_y[0] for t in tiles} == {392}
    assert [fft_size(n) for n in (456, 464, 480, 481, 1)] == [480, 480, 480, 486, 1]
    assert frame_plan((512, 512), Config())[0].crop == (slice(0, 512), slice(0, 512))
    assert len(frame_plan((4096, 4096), Config().replace("refine", tile=0))) == 1


@settings(max_examples=200, deadline=None)
@given(size=st.integers(8, 3000), tile=st.integers(40, 700), halo=st.integers(0, 19))
def test_axis_plan_partitions_the_axis_with_full_halos_inside_the_frame(size, tile, halo):
    plan = axis_plan(size, tile, halo)
    interiors = [inner for _, inner in plan]
    assert interiors[0][0] == 0 and interiors[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(interiors, interiors[1:]))  # no gap, no overlap
    crops = {c[1] - c[0] for c, _ in plan}
    assert len(crops) == 1 and crops.pop() <= min(tile, size)  # one size: batchable, bounded
    for (c0, c1), (i0, i1) in plan:
        assert 0 <= c0 <= i0 < i1 <= c1 <= size
        assert i0 - c0 >= halo or c0 == 0  # a full halo, except at the frame's edges
        assert c1 - i1 >= halo or c1 == size
    if size > tile:
        fewest = math.ceil((size - 2 * halo) / (tile - 2 * halo))
        assert fewest <= len(plan) <= fewest + 3
        crop = plan[0][0][1] - plan[0][0][0]
        assert crop == fft_size(crop) or crop == tile  # a fast FFT size unless capped
        # no more crop in all than the fewest tiles would need
        assert len(plan) * crop <= fewest * min(tile, fft_size(
            math.ceil((size - 2 * halo) / fewest) + 2 * halo))


def test_a_tile_too_small_for_its_halo_is_one_clear_error():
    with pytest.raises(UserError, match=r"refine.tile = 50 px .* halo of 29 px .* >= 74"):
        frame_plan((600, 600), Config().replace("refine", tile=50))
    with pytest.raises(ConfigError, match="refine.tile must be >= 0"):
        Config().replace("refine", tile=-1)
    with pytest.raises(UserError, match=r"refine.tile = 50 px"):  # before any frame arrives
        Refiner(Config().replace("refine", tile=50, device="cpu"))


def test_a_tile_too_small_fails_the_command_with_one_line_and_exit_code_2(tmp_path):
    from typer.testing import CliRunner

    from stream3d.cli import app
    from stream3d.io.movies import write_mrc_movie

    write_mrc_movie(tmp_path / "m.mrc", np.zeros((1, 64, 64), np.uint16), pixel_size=1.0)
    result = CliRunner().invoke(app, ["reconstruct", str(tmp_path / "m.mrc"), "--out",
                                      str(tmp_path / "r.zarr"), "--set", "refine.tile=50"])
    assert result.exit_code == 2, result.output
    assert "refine.tile = 50 px" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------- refinement
#: 128 x 128 px, 16 slices: tiles of 96 px with a 27 px halo make 2 x 2 tiles, borders at 64.
SMALL = Config().replace("sample", slices=16).replace("refine", device="cpu")


@pytest.fixture(scope="module")
def slab():
    """A tilted slab (height rising 1.1 Å/px along x) across the tile borders, refined from
    pop-out whole and in 2 x 2 tiles."""
    s = SMALL.sample
    occ = tilted_slab((16, 128, 128), s.sampling, height_left=100.0, height_right=220.0,
                      thickness=60.0, margin=0.08)
    frame, _ = simulate_frame(occ, SMALL, seed=1)
    pop = popout(frame, SMALL)
    tiled = SMALL.replace("refine", tile=96)
    whole = Refiner(SMALL).refine(frame, pop)
    parts = Refiner(tiled).refine(frame, pop)
    return occ, whole, parts, frame_plan(frame.shape, tiled)


def _maps(volume):
    s = SMALL.sample
    occ = np.clip(volume / s.potential, 0, 1)
    return (column_height(occ, s.slice_thickness), column_thickness(occ, s.slice_thickness))


def test_a_specimen_crossing_tile_borders_shows_no_step_across_them(slab):
    _, whole, parts, plan = slab
    assert len(plan) == 4 and parts.message.startswith("4 tiles of 96 x 96 px")
    height, thickness = _maps(parts.volume)
    untiled, _ = _maps(whole.volume)
    material = thickness >= SMALL.sample.slice_thickness / 2
    for axis, border in ((1, plan[1].inner_x[0]), (0, plan[2].inner_y[0])):
        assert border == 64
        step_h = np.abs(np.diff(height, axis=axis))
        step_t = np.abs(np.diff(thickness, axis=axis))
        both = material[:, 1:] & material[:, :-1] if axis == 1 else \
            material[1:] & material[:-1]
        at = np.take(both, border - 1, axis=axis)
        assert at.sum() > 50  # the slab does cross the border
        seam_h = np.take(step_h, border - 1, axis=axis)[at].mean()
        seam_t = np.take(step_t, border - 1, axis=axis)[at].mean()
        # Across a border the height changes as it does there in the untiled refinement
        # (pop-out's map has steps of its own: the slab's slope is 1.1 Å/px along x, and
        # the untiled map steps 1.5 Å at x = 64 against 0.9 Å on average), the thickness as
        # between any two neighbours.
        here = np.take(np.abs(np.diff(untiled, axis=axis)), border - 1, axis=axis)[at].mean()
        assert seam_h <= here + 0.5, (axis, seam_h, here)
        assert seam_t <= step_t[both].mean() + 1.0, (axis, seam_t, step_t[both].mean())


def test_tiled_and_whole_frame_refinement_agree_against_the_truth(slab):
    occ, whole, parts, _ = slab
    s = SMALL.sample
    e_whole = height_error(whole.volume, occ, potential=s.potential, dz=s.slice_thickness)
    e_parts = height_error(parts.volume, occ, potential=s.potential, dz=s.slice_thickness)
    assert abs(e_parts - e_whole) <= 2.0, (e_whole, e_parts)
    assert e_parts < 40.0  # a sane reconstruction, not two equally broken ones
    h_whole, t_whole = _maps(whole.volume)
    h_parts, t_parts = _maps(parts.volume)
    both = (t_whole >= s.slice_thickness / 2) & (t_parts >= s.slice_thickness / 2)
    assert np.abs(h_parts - h_whole)[both].mean() < 1.0
    assert parts.loss == pytest.approx(whole.loss, rel=0.1)


#: 8 slices of 40 Å and 3 iterations: the small, fast setting of the streaming tests.
FAST = Config().replace("sample", slices=8, slice_thickness=40.0).replace(
    "refine", device="cpu", iterations=3, tile=96)


def _discs_frame(seed: int):
    s = FAST.sample
    occ = three_discs((8, 128, 128), s.sampling, heights=(60.0, 160.0, 260.0), thickness=60.0)
    frame, _ = simulate_frame(occ, FAST, seed=seed)
    truth = (occ * s.potential).astype(np.float32)
    flat = np.zeros(frame.shape, np.float32)
    return frame, PopoutResult(volume=truth, height=flat, thickness=flat, confidence=flat,
                               message="truth")


def test_warm_starts_are_per_tile_from_the_stitched_previous_volume():
    refiner = Refiner(FAST)
    first = refiner.refine(*_discs_frame(0))
    assert not first.warm and "(0 warm)" in first.message
    assert refiner.previous is first.volume and refiner.previous.shape == (8, 128, 128)
    assert [r.shape for r in refiner.references] == [(96, 96)] * 4  # each tile's own crop
    second = refiner.refine(*_discs_frame(1))
    assert second.warm and "(4 warm)" in second.message


def test_freed_memory_is_released_where_glibc_is_and_skipped_where_not(monkeypatch):
    import ctypes

    from stream3d.refine import refiner as module

    assert module.release_freed_memory() in (True, False)

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert module.release_freed_memory() is False
    frame, pop = _discs_frame(0)  # a tiled refinement runs on without it
    assert Refiner(FAST).refine(frame, pop).volume.shape == (8, 128, 128)


# ----------------------------------------------------------------------------- distributed
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def gpu_cluster():
    """A real `dask scheduler` and two `dask worker --resources GPU=1` processes (CPU torch
    here) on loopback; always killed."""
    sys.path.insert(0, str(ROOT / "tests"))
    from stream_helpers import dask_processes

    with dask_processes(2, resources="GPU=1", env=ENV) as address:
        yield address


@pytest.mark.slow  # ~30 s: three dask processes start on a 2-core machine
def test_tiles_run_as_tasks_on_both_gpu_workers_and_match_the_local_result(gpu_cluster):
    from distributed import Client, get_task_stream

    from stream3d.refine.distributed import DaskTiles
    from stream3d.stream.cluster import gpu_workers
    from stream3d.stream.compute import _build_refiner, default_stages

    frame, pop = _discs_frame(0)
    local = Refiner(FAST).refine(frame, pop)
    with Client(gpu_cluster, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        assert len(gpu_workers(client)) == 2
        refiner = _build_refiner(default_stages(), FAST, client)  # what --scheduler builds
        assert isinstance(refiner.tiles, DaskTiles)
        with get_task_stream(client) as stream:
            remote = refiner.refine(frame, pop)
            warm = refiner.refine(*_discs_frame(1))
        # Affinity: each tile's warm state stays on its worker, and its next task runs there.
        sticky = Refiner(FAST, tiles=DaskTiles(client, affinity=True))
        with get_task_stream(client) as held:
            sticky.refine(frame, pop)
            held_warm = sticky.refine(*_discs_frame(1))
        # A tile that fails on a worker fails the frame with the worker's one-line error.
        with pytest.raises(UserError, match="negative counts"):
            Refiner(FAST, tiles=DaskTiles(client)).refine(frame.astype(np.float32) - 1e6, pop)
    tiles = [t for t in stream.data if t["key"].startswith("refine-tile-")]
    assert len(tiles) == 8  # 4 tiles x 2 frames
    assert len({t["worker"] for t in tiles}) == 2  # both workers refined tiles
    np.testing.assert_allclose(remote.volume, local.volume, atol=1e-3)
    assert remote.loss == pytest.approx(local.loss, rel=1e-4)
    assert warm.warm and "(4 warm)" in warm.message  # the warm state travelled with the tasks
    placed = {}
    for t in held.data:
        if t["key"].startswith("refine-tile-"):
            placed.setdefault(int(t["key"].rsplit("-", 1)[1]), []).append(t["worker"])
    assert sorted(placed) == [0, 1, 2, 3]
    assert all(len(w) == 2 and w[0] == w[1] for w in placed.values()), placed
    assert held_warm.warm and "(4 warm)" in held_warm.message


def test_the_embedded_cluster_has_no_gpu_workers_so_tiles_stay_local():
    from stream3d.refine.refiner import LocalTiles
    from stream3d.stream.cluster import dask_client, gpu_workers
    from stream3d.stream.compute import _build_refiner, default_stages

    with dask_client(None, threads=1) as client:
        assert gpu_workers(client) == []
        refiner = _build_refiner(default_stages(), FAST, client)
    assert isinstance(refiner.tiles, LocalTiles)
