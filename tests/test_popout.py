"""Pop-out 3D metrology against simulated ground truth: depth per region and per pixel,
thickness, material mask, near-Scherzer honesty, bad input, dask determinism."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.popout import PopoutResult, popout
from stream3d.popout.scoring import score
from stream3d.simulate import simulate_frame
from stream3d.specimen import column_height, column_thickness, three_discs, tilted_slab
from stream3d.specimen.catalog import dendrite

CONFIG = Config()  # 300 kV, defocus 2000 Å, 32 x 20 Å slices, 1 Å/px, 2000 e/Å²
N = 256
DZ = CONFIG.sample.slice_thickness
SHAPE = (CONFIG.sample.slices, N, N)


@pytest.fixture(scope="module")
def discs():
    occ = three_discs(SHAPE, CONFIG.sample.sampling)  # heights 128, 320, 512 Å; 80 Å thick
    frame, _ = simulate_frame(occ, CONFIG, seed=1)
    return occ, frame, popout(frame, CONFIG)


@pytest.fixture(scope="module")
def slab():
    occ = tilted_slab(SHAPE, CONFIG.sample.sampling, height_left=100.0, height_right=540.0,
                      thickness=80.0)
    frame, _ = simulate_frame(occ, CONFIG, seed=2)
    return occ, frame, popout(frame, CONFIG)


@pytest.fixture(scope="module")
def grown_dendrite():
    occ = dendrite(CONFIG.replace("simulate", ny=N, nx=N)).occupancy(9)
    frame, _ = simulate_frame(occ, CONFIG, seed=3)
    return occ, frame, popout(frame, CONFIG)


def test_result_contract(discs):
    _, _, r = discs
    assert isinstance(r, PopoutResult)
    assert r.volume.shape == SHAPE and r.volume.dtype == np.float32
    for m in (r.height, r.thickness, r.confidence):
        assert m.shape == (N, N) and m.dtype == np.float32 and np.isfinite(m).all()
    assert r.confidence.min() >= 0 and r.confidence.max() <= 1
    assert r.message == ""
    again = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(again.volume, r.volume)
    assert pickle.loads(pickle.dumps(popout)) is popout  # a dask task needs a picklable function


def test_three_discs_at_three_depths(discs):
    occ, _, r = discs
    sc = score(r, occ, DZ, "pieces")
    assert len(sc.region_errors) == 3
    # Issue 4: per-region depth error <= 100 Å required, <= 40 Å the goal (we reach ~10 Å).
    assert sc.worst_region <= 40.0, sc
    assert sc.height_mae <= 30.0, sc
    # Recall first (a missed column costs its whole height): the mask follows thinning edges
    # down to twice the noise and is grown by the map's resolution, so it is a rim too wide.
    assert sc.iou >= 0.7, sc
    material = column_thickness(occ, DZ) >= DZ / 2
    assert (r.thickness[material] > 0).mean() >= 0.99
    assert sc.thickness_mae <= 15.0, sc
    assert sc.confidence >= 0.3, sc
    # The three discs are told apart: their estimated heights are in the true order.
    true_h = column_height(occ, DZ)
    from stream3d.popout.scoring import regions
    order = [np.median(r.height[m]) for m in sorted(regions(occ, "pieces"),
                                                      key=lambda m: np.median(true_h[m]))]
    assert order == sorted(order) and order[-1] - order[0] > 300.0


def test_tilted_slab_rises_at_the_true_slope(slab):
    occ, _, r = slab
    sc = score(r, occ, DZ, "strips")
    assert len(sc.region_errors) >= 3
    assert sc.worst_region <= 40.0, sc
    assert sc.height_mae <= 30.0, sc
    assert sc.iou >= 0.85, sc  # grown by the map's resolution, see above
    # Slope of height across x inside the slab: truth 440 Å over the field.
    truth = column_thickness(occ, DZ) > 0
    yy, xx = np.nonzero(truth)
    slope = np.polyfit(xx, r.height[yy, xx], 1)[0]
    assert slope == pytest.approx(440.0 / N, rel=0.15)


def test_dendrite_depth(grown_dendrite):
    occ, _, r = grown_dendrite
    sc = score(r, occ, DZ, "tiles")
    assert len(sc.region_errors) >= 4
    assert sc.worst_region <= 100.0, sc
    assert sc.height_mae <= 40.0, sc
    # 0.856 with the texture mask at 4x the noise's variance, 0.848 at 2x (which finds weak
    # textures' objects: texture_mask.EXCESS).
    assert sc.iou >= 0.84, sc
    assert sc.thickness_mae <= 15.0, sc


def test_volume_is_the_maps_on_the_config_grid(discs):
    _, _, r = discs
    v0 = CONFIG.sample.potential
    occupancy = r.volume / v0
    assert occupancy.min() >= 0 and occupancy.max() <= 1 + 1e-6
    np.testing.assert_allclose(column_thickness(occupancy, DZ), r.thickness, atol=1e-2)
    material = r.thickness > 0
    com = column_height(occupancy, DZ)
    # Centre of mass by slice centres is right to a fraction of a slice (partial slices).
    assert np.abs(com - r.height)[material].max() <= DZ / 2
    assert (r.volume[:, ~material] == 0).all()


def test_near_scherzer_focus_is_reported_not_guessed():
    scherzer = Config().replace("microscope", defocus=530.0)  # 1.2 sqrt(Cs lambda) = 532 Å
    occ = three_discs(SHAPE, scherzer.sample.sampling)
    frame, _ = simulate_frame(occ, scherzer, seed=4)
    r = popout(frame, scherzer)
    assert "Scherzer" in r.message and "microscope.defocus" in r.message
    truth = column_thickness(occ, DZ) > 0
    assert r.confidence.max() <= 0.05
    # Whatever depth it reports, nothing wrong is reported with confidence.
    err = np.abs(r.height - column_height(occ, DZ))
    assert not ((r.confidence > 0.5) & truth & (err > 100)).any()
    # Material is still found, though near focus the phase contrast that measures thickness
    # barely transfers: most of it, from the absorption contrast.
    assert ((r.thickness > 0) & truth).sum() > 0.6 * truth.sum()


def test_a_dose_that_is_off_is_absorbed_by_the_solvent_reference(discs):
    occ, frame, _ = discs
    r = popout(frame * 1.3, CONFIG)
    assert "solvent intensity is 1.30" in r.message
    sc = score(r, occ, DZ, "pieces")
    assert sc.thickness_mae <= 15.0 and sc.worst_region <= 40.0, sc


@pytest.mark.parametrize("frame, message", [
    (np.zeros((2, N, N)), "must be 2-D"),
    (np.zeros(N), "must be 2-D"),
    (np.ones((32, 300)), "smaller than popout.patch"),
    (np.full((N, N), "x"), "must hold numbers"),
    (np.ones((N, N), dtype=complex), "real detector counts"),
    (np.ones((N, N), dtype=bool), "must hold numbers"),
])
def test_bad_shapes_and_types_are_one_clear_user_error(frame, message):
    with pytest.raises(UserError, match=message) as info:
        popout(frame, CONFIG)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("frame, message", [
    (np.zeros((128, 128)), "all zero"),
    (np.full((128, 128), np.nan), "no finite pixels"),
    (np.full((128, 128), 2000.0), "constant"),
    (-np.ones((128, 128)), "not positive"),
])
def test_frames_with_nothing_to_measure_give_zero_confidence(frame, message):
    r = popout(frame, CONFIG)
    assert message in r.message
    assert r.volume.shape == (CONFIG.sample.slices, 128, 128) and not r.volume.any()
    assert not r.thickness.any() and not r.confidence.any() and np.isfinite(r.height).all()


def test_vacuum_frame_finds_no_material():
    frame = np.random.default_rng(0).poisson(2000.0, (128, 128)).astype(np.float32)
    r = popout(frame, CONFIG)
    assert "no material" in r.message
    assert not r.thickness.any() and not r.confidence.any()


def test_nan_pixels_are_ignored_and_get_no_confidence(discs):
    occ, frame, _ = discs
    bad = np.random.default_rng(1).random(frame.shape) < 0.01
    r = popout(np.where(bad, np.nan, frame), CONFIG)
    assert "non-finite" in r.message
    assert not r.confidence[bad].any() and np.isfinite(r.volume).all()
    assert score(r, occ, DZ, "pieces").worst_region <= 40.0


def test_patch_larger_than_the_frame_is_a_user_error_naming_the_key(discs):
    _, frame, _ = discs
    with pytest.raises(UserError, match="popout.patch"):
        popout(frame[:48, :48], CONFIG)


def test_results_are_deterministic_whatever_the_task_split(discs):
    _, frame, r = discs
    for cfg in (CONFIG, CONFIG.replace("popout", rows_per_task=1, threads=1),
                CONFIG.replace("popout", rows_per_task=50, threads=2)):
        again = popout(frame, cfg)
        for name in ("volume", "height", "thickness", "confidence"):
            np.testing.assert_array_equal(getattr(again, name), getattr(r, name), err_msg=name)


def test_runs_on_a_distributed_client_and_inside_a_worker(discs):
    distributed = pytest.importorskip("distributed")
    _, frame, r = discs
    small = frame[:128, :128]
    ref = popout(small, CONFIG)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        on_client = popout(small, CONFIG, client=client)
        # The streaming pipeline's pattern: one pop-out per frame as a task on a worker.
        in_worker = client.submit(popout, small, CONFIG).result()
        # Bad input inside a worker is a clean result, never a crash.
        zero = client.submit(popout, np.zeros((128, 128)), CONFIG).result()
    for got in (on_client, in_worker):
        for name in ("volume", "height", "thickness", "confidence"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert "all zero" in zero.message


def test_config_section_defaults_are_sane():
    p = CONFIG.popout
    assert p.k_low < p.k_high and p.step <= p.patch
    assert math.isclose(p.k_high, 0.3) and p.patch == 64


def test_cli_pops_out_one_frame_of_an_mrc_movie(discs, tmp_path):
    import mrcfile
    from typer.testing import CliRunner

    from stream3d.cli import app

    _, frame, _ = discs
    movie = tmp_path / "movie.mrc"
    with mrcfile.new(movie) as mrc:
        mrc.set_data(np.stack([frame, frame]).astype(np.float32))
    runner = CliRunner()
    done = runner.invoke(app, ["popout", str(movie), "--frame", "1", "--out", str(tmp_path / "po")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "po" / "popout.png").stat().st_size > 10_000
    maps = np.load(tmp_path / "po" / "popout.npz")
    assert maps["volume"].shape == SHAPE and maps["height"].shape == (N, N)
    bad = runner.invoke(app, ["popout", str(movie), "--frame", "5"])
    assert bad.exit_code == 2 and "outside the movie's 2 frames" in bad.output
    assert "Traceback" not in bad.output


def test_two_overlapping_layers_are_both_found_in_their_shared_columns():
    """Two layers 320 Å apart that share columns: pop-out puts two slabs there, each layer's
    voxels in the shared columns largely recovered (one slab per column would find at most one
    of them, at a height between)."""
    from stream3d.analysis.accuracy import layer_recall
    from stream3d.specimen import two_layers

    cfg = CONFIG.replace("sample", absorption=0.0)
    s = cfg.sample
    heights, t = (140.0, 460.0), 80.0
    occ = two_layers(SHAPE, s.sampling, heights=heights, thickness=t)
    frame, _ = simulate_frame(occ, cfg, seed=1)
    r = popout(frame, cfg)
    layers = [two_layers(SHAPE, s.sampling, heights=(h, h), thickness=t) * mask
              for h, mask in ((heights[0], _left(occ)), (heights[1], _right(occ)))]
    recall = layer_recall(r.volume, layers, potential=s.potential)
    assert min(recall) >= 0.4, recall


def _left(occ: np.ndarray) -> np.ndarray:
    """The left-hand layer's columns of :func:`two_layers` (x < 0.6 of the field)."""
    mask = np.zeros(occ.shape[1:], dtype=np.float32)
    mask[:, : int(0.6 * occ.shape[2])] = 1.0
    return mask[None]


def _right(occ: np.ndarray) -> np.ndarray:
    mask = np.zeros(occ.shape[1:], dtype=np.float32)
    mask[:, int(0.4 * occ.shape[2]):] = 1.0
    return mask[None]


def test_an_object_within_about_one_patch_takes_one_height():
    """Two 60 Å discs of 30 px radius (within about one 64 px patch): all of each object's
    columns, rim included, take one height, its fits' weighted median (a pixel-wise map of the
    fits would vary over the disc and hand its edge to the patches that hold least of it).
    A 30 px disc's fits scatter by ~30 Å (its texture's few thousand speckles), so the bound
    on the error is loose; the suite (benchmarks/accuracy.py) measures the precision."""
    from scipy import ndimage

    from stream3d.popout.maps import weighted_median
    from stream3d.specimen.shapes import Disc, discs as disc_occupancy

    truth = (180.0, 470.0)
    occ = disc_occupancy(SHAPE, CONFIG.sample.sampling,
                         [Disc(80.0, 80.0, 30.0, truth[0], 60.0),
                          Disc(176.0, 176.0, 30.0, truth[1], 60.0)])
    frame, _ = simulate_frame(occ, CONFIG, seed=4)
    r = popout(frame, CONFIG)
    labels, count = ndimage.label(r.thickness > 0)
    assert count == 2
    for label, true_height in zip((labels[80, 80], labels[176, 176]), truth):
        own = labels == label
        assert np.ptp(r.height[own]) < 1e-3
        assert abs(float(r.height[own][0]) - true_height) <= 60.0, (r.height[own][0], true_height)
    assert weighted_median(np.array([5.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0])) == 3.0
    assert weighted_median(np.array([5.0, 1.0, 3.0]), np.array([0.0, 1.0, 3.0])) == 3.0
    assert weighted_median(np.array([5.0, 1.0, 3.0]), np.array([5.0, 1.0, 1.0])) == 5.0


@pytest.mark.parametrize("gap", [2.5, 4, 10])
def test_objects_a_few_px_apart_stay_two_objects(gap):
    # Issue 20: two growing discs 10 px and then 2.5 px apart were reconstructed as one object
    # (the texture mask and the lens fringes reach across the gap). 60 Å discs at 200 / 400 Å.
    cfg = CONFIG.replace("sample", absorption=0.0).replace("microscope", focal_spread=0.0)
    n, r = 160, 30.0
    occ = np.zeros((cfg.sample.slices, n, n), np.float32)
    yy, xx = np.mgrid[:n, :n] + 0.5
    for cx, h in ((n / 2 - r - gap / 2, 200.0), (n / 2 + r + gap / 2, 400.0)):
        z0, z1 = int((h - 30) / DZ), int((h + 30) / DZ)
        occ[z0:z1, (yy - n / 2) ** 2 + (xx - cx) ** 2 <= r**2] = 1.0
    frame, _ = simulate_frame(occ, cfg, seed=1)
    result = popout(frame, cfg)
    from scipy import ndimage
    labels, count = ndimage.label(result.thickness > 0)
    assert count == 2
    truth = ndimage.label(occ.sum(axis=0) > 0)[0]
    # each true disc lies (almost all) in one reconstructed object, a different one each
    owners = [np.bincount(labels[truth == i], minlength=3)[1:].argmax() for i in (1, 2)]
    assert owners[0] != owners[1]


def test_electrons_the_material_loses_are_measured_as_absorption():
    # Issue 20: real atoms scatter electrons beyond the aperture and the band, which darkens
    # material like an absorption the config (a user's homogeneous material) does not know;
    # read as phase contrast, the darkening made pop-out's mass 2.4x the truth. Here the
    # simulator's material absorbs (0.05) and the config says 0: pop-out measures the loss
    # and its mass stays right.
    occ = three_discs(SHAPE, CONFIG.sample.sampling)
    truth_cfg = CONFIG.replace("sample", absorption=0.05)
    frame, _ = simulate_frame(occ, truth_cfg, seed=7)
    told = CONFIG.replace("sample", absorption=0.0)
    result = popout(frame, told)
    assert result.absorption == pytest.approx(0.05, rel=0.35)
    mass = float(result.volume.sum() / (occ.sum() * CONFIG.sample.potential))
    assert 0.8 <= mass <= 1.2
    # A frame of material that loses nothing measures nothing: the config's value stays.
    clean, _ = simulate_frame(occ, told, seed=7)
    assert popout(clean, told).absorption == 0.0
    # A config that overstates the absorption is measured down: taken at its word (0.1 on a
    # frame that loses nothing), the k -> 0 transfer reads absent darkening and the mass
    # comes out at 0.26 (abTEM carbon atoms told 0.1: 0.29); measured, 0.97.
    overstated = popout(clean, CONFIG.replace("sample", absorption=0.1))
    assert overstated.absorption < 0.03
    mass = float(overstated.volume.sum() / (occ.sum() * CONFIG.sample.potential))
    assert 0.8 <= mass <= 1.2


def test_heights_are_unbiased_over_discs_slab_and_dendrite(discs, slab, grown_dendrite):
    # A height error shared by every object (a mis-set half slice, a wrong sign of the
    # amplitude phase, a texture spectrum that trades ring position for ring power) moves the
    # whole specimen: the median signed error of each specimen's material columns, averaged
    # over three specimens, stays within 6 Å of zero (measured -0.8, +6.5, -7.8 Å: mean -0.7).
    # Shifting every height by +-10 Å fails it.
    medians = []
    for occ, _, r in (discs, slab, grown_dendrite):
        found = (column_thickness(occ, DZ) >= DZ / 2) & (r.thickness > 0)
        medians.append(float(np.median(r.height[found] - column_height(occ, DZ)[found])))
    assert abs(np.mean(medians)) <= 6.0, medians


def test_overfocus_discs_keep_their_heights_and_their_footprint():
    # In overfocus Cs adds to the defocus and the lens moves an object's high-k rings 15-20 Å
    # outside it. An object's spectrum cut a few px past its edge loses them and the fit reads
    # fewer rings, a smaller |defocus|; a texture mask shrunk by lambda x defocus x k_high of
    # the material closest to focus keeps the fringes as material. Measured per disc, seeds
    # 1 and 2: -12 / -4 / -7 and -9 / -26 / -19 Å, 3D IoU 0.61 and 0.83; parts grown 4 px
    # instead: -12 / -4 / -7 and -65 / -146 / -4 Å; with that shrink as well, IoU 0.12 (seed 1).
    over = CONFIG.replace("microscope", defocus=-2000.0)
    occ = three_discs(SHAPE, CONFIG.sample.sampling)
    true_h = column_height(occ, DZ)
    from stream3d.popout.scoring import regions
    errors, ious = [], []
    for seed in (1, 2):
        frame, _ = simulate_frame(occ, over, seed=seed)
        r = popout(frame, over)
        errors += [float(np.median(r.height[m] - true_h[m])) for m in regions(occ, "pieces")]
        ious.append(score(r, occ, DZ, "pieces").iou)
        # Its finest rings (Cs adding) are finer than 2 Fourier px of a 64 px patch: said so.
        assert "finer than a popout.patch = 64 px patch resolves" in r.message
    assert len(errors) == 6
    assert np.mean(np.abs(errors)) <= 20.0, errors
    assert min(ious) >= 0.5, ious
