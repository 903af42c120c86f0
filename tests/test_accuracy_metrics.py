"""The accuracy suite's metrics on hand-made volumes with exact answers."""

import math

import numpy as np
import pytest

from stream3d.analysis.accuracy import (
    accuracy, core_thickness_error, footprint, footprint_iou, height_error, layer_recall,
    mass_ratio, thickness_error,
)

P, DZ, NZ = 5.0, 20.0, 16


def slab(k0: int, k1: int, rows: slice = slice(2, 6), cols: slice = slice(2, 6),
         shape=(NZ, 8, 8)) -> np.ndarray:
    """Occupancy 1 in slices [k0, k1) over the given columns."""
    occ = np.zeros(shape, dtype=np.float32)
    occ[k0:k1, rows, cols] = 1.0
    return occ


def test_slab_shifted_by_two_slices_has_height_error_two_slices():
    truth = slab(4, 8)
    recon = slab(6, 10) * P
    assert height_error(recon, truth, potential=P, dz=DZ) == pytest.approx(2 * DZ)
    # same footprint, same thickness: those errors vanish
    assert footprint_iou(recon, truth, potential=P, dz=DZ) == 1.0
    assert thickness_error(recon, truth, potential=P, dz=DZ) == 0.0
    # 3D: 2 of 4 slices overlap per column -> 2 / 6
    acc = accuracy(recon, truth, potential=P, dz=DZ)
    assert acc.iou == pytest.approx(2 / 6)


def test_truth_scores_perfectly_against_itself():
    truth = slab(3, 9)
    acc = accuracy(truth * P, truth, potential=P, dz=DZ)
    assert acc.height_error == 0.0 and acc.iou == 1.0 and acc.footprint_iou == 1.0
    assert acc.thickness_error == 0.0 and acc.core_thickness == 0.0 and acc.layer_recall == ()


def test_missing_column_counts_the_full_cell_depth():
    truth = slab(4, 8, cols=slice(2, 4))  # 4 rows x 2 columns = 8 true columns
    recon = truth.copy() * P
    recon[:, 2:6, 3] = 0.0  # 4 of the 8 columns lost
    # 4 columns exact (0 Å), 4 missing (NZ * DZ each)
    assert height_error(recon, truth, potential=P, dz=DZ) == pytest.approx(NZ * DZ / 2)
    # a trace of material below dz/2 is still missing
    recon[7, 2:6, 3] = 0.4 * P
    assert height_error(recon, truth, potential=P, dz=DZ) == pytest.approx(NZ * DZ / 2)


def test_extra_material_outside_the_truth_does_not_change_height_error():
    truth = slab(4, 8)
    recon = truth * P
    recon[0:2, 7, 7] = P
    assert height_error(recon, truth, potential=P, dz=DZ) == 0.0
    # footprint: 16 true columns, 1 extra -> 16/17
    assert footprint_iou(recon, truth, potential=P, dz=DZ) == pytest.approx(16 / 17)
    # thickness: the extra column is 40 Å off, averaged over the 17-column union
    assert thickness_error(recon, truth, potential=P, dz=DZ) == pytest.approx(40 / 17)


def test_half_overlapping_boxes_have_iou_one_third():
    truth = slab(4, 8, cols=slice(0, 4))
    recon = slab(4, 8, cols=slice(2, 6)) * P
    assert accuracy(recon, truth, potential=P, dz=DZ).iou == pytest.approx(1 / 3)
    assert footprint_iou(recon, truth, potential=P, dz=DZ) == pytest.approx(1 / 3)


def test_thickness_error_and_core_thickness_of_a_too_thin_recon():
    truth = slab(2, 12)  # 200 Å thick
    recon = slab(5, 9) * P  # 80 Å thick, same centre
    assert thickness_error(recon, truth, potential=P, dz=DZ) == pytest.approx(120.0)
    assert core_thickness_error(recon, truth, potential=P, dz=DZ) == pytest.approx(-0.6)
    # partial voxels count by their fraction: V = P/2 over 4 slices is 40 Å
    half = slab(5, 9) * (P / 2)
    assert thickness_error(half, truth, potential=P, dz=DZ) == pytest.approx(160.0)


def test_footprint_needs_half_a_slice():
    occ = np.zeros((NZ, 2, 2), dtype=np.float32)
    occ[0, 0, 0], occ[0, 1, 1] = 0.5, 0.49
    assert footprint(occ, DZ).tolist() == [[True, False], [False, False]]


def test_layer_recall_counts_only_shared_columns():
    low = slab(10, 13, cols=slice(0, 4))  # low layer, columns 0-3
    high = slab(2, 5, cols=slice(2, 6))  # high layer, columns 2-5; shared: columns 2-3
    # a recon that finds only the high layer, everywhere
    recon = high * P
    assert layer_recall(recon, [low, high], potential=P) == (0.0, 1.0)
    # one merged layer in the middle catches neither
    assert layer_recall(slab(6, 9) * P, [low, high], potential=P) == (0.0, 0.0)
    # the low layer found in one of the two shared columns: 1/2
    recon = high * P
    recon[10:13, 2:6, 2] = P
    assert layer_recall(recon, [low, high], potential=P) == pytest.approx((0.5, 1.0))
    acc = accuracy(recon, np.maximum(low, high), potential=P, dz=DZ, layers=[low, high])
    assert acc.layer_recall == pytest.approx((0.5, 1.0))


def test_empty_truth_and_no_shared_columns_give_nan():
    empty = np.zeros((NZ, 8, 8), dtype=np.float32)
    assert math.isnan(height_error(slab(1, 3) * P, empty, potential=P, dz=DZ))
    assert math.isnan(core_thickness_error(empty, empty, potential=P, dz=DZ))
    assert footprint_iou(empty, empty, potential=P, dz=DZ) == 1.0
    assert thickness_error(empty, empty, potential=P, dz=DZ) == 0.0
    apart = [slab(1, 3, cols=slice(0, 2)), slab(5, 7, cols=slice(4, 6))]
    assert all(math.isnan(r) for r in layer_recall(slab(1, 3) * P, apart, potential=P))


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same"):
        height_error(np.zeros((NZ, 8, 8)), np.zeros((NZ, 8, 7)), potential=P, dz=DZ)
    with pytest.raises(ValueError, match="shape"):
        layer_recall(np.zeros((NZ, 8, 8)), [np.zeros((NZ, 4, 4))], potential=P)
    with pytest.raises(ValueError, match="> 0"):
        thickness_error(np.zeros((NZ, 8, 8)), np.zeros((NZ, 8, 8)), potential=0.0, dz=DZ)


def test_mass_ratio_is_reconstructed_over_true_material():
    truth = slab(4, 8)  # 4 slices x 16 columns
    assert mass_ratio(truth * P, truth, potential=P) == pytest.approx(1.0)
    # 1.5x the potential, or the same potential over 6 slices instead of 4: 1.5x the mass
    assert mass_ratio(truth * 1.5 * P, truth, potential=P) == pytest.approx(1.5)
    assert accuracy(slab(3, 9) * P, truth, potential=P, dz=DZ).mass_ratio == pytest.approx(1.5)
    assert math.isnan(mass_ratio(truth, truth * 0, potential=P))
