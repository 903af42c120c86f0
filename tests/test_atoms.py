"""Amorphous atoms from an occupancy (stream3d.specimen.atoms) and abTEM's image of them
(benchmarks/abtem_atoms.py, the accuracy suite's --simulator abtem-atoms)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stream3d.physics import interaction_constant
from stream3d.specimen.atoms import (
    MATERIALS, amorphous_atoms, amorphous_positions, get_material, target_count,
)

ROOT = Path(__file__).resolve().parents[1]


def _blobs(shape=(6, 48, 40), seed=0) -> np.ndarray:
    """Random spheres with soft (partial) edges: occupancy in [0, 1], about a third full."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    occ = np.zeros(shape, dtype=np.float32)
    for _ in range(5):
        c = rng.uniform([0, 0, 0], shape)
        r = np.sqrt(((z - c[0]) * 4) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
        occ = np.maximum(occ, np.clip(12 - r, 0, 1))
    return occ


def _min_distance(pos: np.ndarray, cell: np.ndarray) -> float:
    """Exact smallest pair distance (Å), periodic in x and y only."""
    box = [cell[0], cell[1], cell[2] + 100.0]
    dist, _ = cKDTree(pos, boxsize=box).query(pos, k=2)
    return float(dist[:, 1].min())


def test_number_densities_of_the_materials():
    # 2.0 g/cm³ of C (12.011 g/mol), 2.28 g/cm³ of Si (28.086 g/mol)
    assert get_material("carbon").number_density == pytest.approx(0.10028, rel=1e-4)
    assert get_material("silicon").number_density == pytest.approx(0.04889, rel=1e-3)
    with pytest.raises(ValueError, match="carbon"):
        get_material("gold")


@pytest.mark.parametrize("name", sorted(MATERIALS))
def test_a_slab_has_the_density_and_no_pair_closer_than_the_separation(name):
    mat = get_material(name)
    shape, sampling = (4, 40, 40), (10.0, 1.0, 1.0)  # a 40 Å slab, 40 x 40 Å periodic
    occ = np.ones(shape, dtype=np.float32)
    atoms = amorphous_atoms(occ, sampling, name, np.random.default_rng(0))
    pos = atoms.positions
    assert len(atoms) == target_count(occ, sampling, mat.number_density)  # all voxels full
    assert set(atoms.get_chemical_symbols()) == {mat.symbol}
    assert np.allclose(atoms.cell.lengths(), [40.0, 40.0, 40.0])
    assert list(atoms.pbc) == [True, True, False]
    assert _min_distance(pos, atoms.cell.lengths()) >= mat.min_separation
    # density in the interior (5 Å from the free faces), not just the total count
    inner = (pos[:, 2] > 5) & (pos[:, 2] < 35)
    density = np.count_nonzero(inner) / (40 * 40 * 30)
    assert density == pytest.approx(mat.number_density, rel=0.02)


def test_atoms_lie_only_in_occupied_voxels_at_density_times_occupancy():
    occ = _blobs()
    sampling = (8.0, 1.0, 1.0)
    mat = get_material("carbon")
    pos = amorphous_positions(occ, sampling, number_density=mat.number_density,
                              min_separation=mat.min_separation, rng=np.random.default_rng(1))
    expected = target_count(occ, sampling, mat.number_density)
    assert expected > 1000 and abs(len(pos) - expected) < 4 * np.sqrt(expected)
    index = np.floor(pos[:, ::-1] / np.array(sampling)).astype(int)  # (z, y, x) voxels
    held = occ[tuple(index.T)]
    assert held.min() > 0
    # voxels half full hold about half the density of full ones
    counts = np.zeros(occ.shape)
    np.add.at(counts, tuple(index.T), 1)
    full, half = occ == 1, (occ > 0.3) & (occ < 0.7)
    per_full = counts[full].mean() / (mat.number_density * 8.0)
    per_half = counts[half].sum() / (mat.number_density * 8.0 * occ[half].sum())
    assert per_full == pytest.approx(1.0, rel=0.05)
    assert per_half == pytest.approx(1.0, rel=0.15)
    assert _min_distance(pos, np.array(occ.shape[::-1]) * sampling[::-1]) >= mat.min_separation


def test_the_atoms_are_reproducible_from_the_generator():
    occ = _blobs(seed=2)
    a = amorphous_atoms(occ, (8.0, 1.0, 1.0), "silicon", np.random.default_rng(7))
    b = amorphous_atoms(occ, (8.0, 1.0, 1.0), "silicon", np.random.default_rng(7))
    c = amorphous_atoms(occ, (8.0, 1.0, 1.0), "silicon", np.random.default_rng(8))
    assert np.array_equal(a.positions, b.positions)
    assert abs(len(a) - len(c)) < 0.05 * len(a)
    assert not np.allclose(a.positions[:100], c.positions[:100])


def test_too_dense_for_the_separation_is_refused():
    occ = np.ones((1, 10, 10), dtype=np.float32)
    with pytest.raises(RuntimeError, match="too dense"):
        # packing fraction 0.1 x pi/6 x 2.5³ = 0.82: beyond random sequential addition
        amorphous_positions(occ, (10.0, 1.0, 1.0), number_density=0.1, min_separation=2.5,
                            rng=np.random.default_rng(0), max_rounds=30)
    with pytest.raises(ValueError, match="occupancy"):
        amorphous_positions(occ * 2, (10.0, 1.0, 1.0), number_density=0.1, min_separation=1.0,
                            rng=np.random.default_rng(0))


# ---- abTEM (the `bench` extra) -------------------------------------------------------------
def _abtem_atoms():
    pytest.importorskip("abtem")
    pytest.importorskip("ase")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import abtem_atoms

    return abtem_atoms


#: V: the mean inner potentials abTEM's Lobato neutral atoms give at the materials' densities.
MIP = {"carbon": 12.05, "silicon": 13.66}


@pytest.mark.slow  # importing abTEM (numba) alone takes ~30 s on a busy 2-core machine
@pytest.mark.parametrize("name", sorted(MATERIALS))
def test_a_slab_of_atoms_shifts_the_phase_by_sigma_mip_thickness(name):
    sim = _abtem_atoms()
    mip = sim.mean_inner_potential(name)
    assert mip == pytest.approx(MIP[name], abs=0.02)
    phase = sim.mean_phase(name, thickness=20.0, energy=300e3)
    assert phase == pytest.approx(interaction_constant(300e3) * mip * 20.0, rel=0.02)


@pytest.mark.slow
def test_the_atoms_image_has_our_axes_and_a_vacuum_of_one():
    sim = _abtem_atoms()
    from stream3d.config import load

    config = load(None, ["simulate.ny=32", "simulate.nx=48", "sample.slices=4",
                         "sample.slice_thickness=20", "sample.pixel_size=1.0",
                         "microscope.energy=300000", "microscope.cs=0", "microscope.defocus=0",
                         "microscope.aperture=10", "microscope.focal_spread=0",
                         "microscope.astigmatism=0"])
    occ = np.zeros((4, 32, 48), dtype=np.float32)
    occ[1:4, 0:12, 24:44] = 1.0  # 60 Å of carbon, top right (small y, large x)
    image = sim.atoms_intensity(occ, config, material="carbon", rng=np.random.default_rng(0))
    assert image.shape == (32, 48) and image.dtype == np.float32
    # in focus (no Cs) the object shows only by the electrons it scatters outside the
    # aperture: 0.7 % of them through 60 Å of carbon, where the object is and nowhere else
    inside, outside = image[2:10, 26:42].mean(), image[16:30, 2:20].mean()
    assert 0.990 < inside < 0.996
    assert outside == pytest.approx(1.0, abs=0.001)
