"""Occupancy -> atoms of an amorphous material: a specimen for atomistic simulators (abTEM).

Pure numpy/scipy; ASE only to hand the result over as an ``ase.Atoms``. An occupancy map
(z, y, x) in [0, 1] on voxels of ``sampling`` = (dz, dy, dx) Å is filled with atoms at random
positions, none closer than the material's minimum separation, at the material's number
density (atoms / Å³) times the voxel's occupancy. Random sequential addition with a k-d tree
(scipy's cKDTree, periodic laterally): candidates are drawn in rounds, a candidate is kept when
it is at least the minimum separation from every atom kept before it, until the full density is
reached over the occupied voxels and a margin; then each atom is kept with its voxel's occupancy
(a voxel half full holds material at half the density throughout, as the voxel-mean potential
of :func:`stream3d.specimen.occupancy_to_potential` does). This is an amorphous material
without medium-range order: a hard-core pair correlation and a flat structure factor beyond it,
unlike the Gaussian texture of :func:`stream3d.specimen.amorphous_texture`.

Geometry (matching the multislice grid of :mod:`stream3d.physics`): the cell is
(nx·dx, ny·dy, nz·dz) Å along the Atoms' (x, y, z); atom x is the array's axis 2, y its axis 1,
and z runs down the beam from the entrance (z = 0, slice 0) to the exit plane (z = nz·dz). A
voxel (i, j, l) holds atoms with z in [i·dz, (i+1)·dz), y in [j·dy, (j+1)·dy), x in
[l·dx, (l+1)·dx). Periodic in x and y, not in z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: Avogadro's number (1/mol) and cm³ -> Å³.
_AVOGADRO = 6.02214076e23
_A3_PER_CM3 = 1e24


@dataclass(frozen=True)
class Material:
    """An amorphous element: its symbol, mass density (g/cm³), molar mass (g/mol) and the
    minimum distance (Å) between two atoms' centres."""

    symbol: str
    density: float  # g/cm³
    molar_mass: float  # g/mol
    min_separation: float  # Å

    @property
    def number_density(self) -> float:
        """Atoms per Å³."""
        return self.density / self.molar_mass * _AVOGADRO / _A3_PER_CM3


#: Amorphous carbon (evaporated a-C, ~2.0 g/cm³; C-C bonds 1.42-1.54 Å) and amorphous silicon
#: (2.28 g/cm³; Si-Si bond 2.35 Å). Number densities 0.1003 and 0.0489 atoms/Å³.
MATERIALS: dict[str, Material] = {
    "carbon": Material("C", 2.0, 12.011, 1.3),
    "silicon": Material("Si", 2.28, 28.086, 2.1),
}


def get_material(name: str) -> Material:
    """The entry of :data:`MATERIALS` called ``name``; ValueError naming the choices."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(f"unknown material {name!r}; choose from {', '.join(MATERIALS)}") from None


def _check(occupancy: np.ndarray, sampling) -> tuple[np.ndarray, np.ndarray]:
    """(occupancy as float64, sampling (dz, dy, dx) Å as an array) after validation."""
    occupancy = np.asarray(occupancy, dtype=np.float64)
    if occupancy.ndim != 3:
        raise ValueError(f"occupancy must be (z, y, x), got shape {occupancy.shape}")
    if occupancy.size and (occupancy.min() < 0 or occupancy.max() > 1):
        raise ValueError("occupancy must lie in [0, 1]")
    sampling = np.asarray(sampling, dtype=np.float64)
    if sampling.shape != (3,) or not np.all(sampling > 0):
        raise ValueError(f"sampling must be three positive lengths (dz, dy, dx) Å, got {sampling}")
    return occupancy, sampling


def target_count(occupancy: np.ndarray, sampling, number_density: float) -> int:
    """Atoms (rounded) in ``occupancy``: number_density (1/Å³) x sum(occupancy) x voxel Å³."""
    occupancy, sampling = _check(occupancy, sampling)
    return int(round(number_density * float(occupancy.sum()) * float(np.prod(sampling))))


def _candidates(weights: np.ndarray, voxels: np.ndarray, shape, sampling, count: int,
                rng: np.random.Generator) -> np.ndarray:
    """``count`` random positions (x, y, z) Å: a voxel drawn with probability ``weights`` (over
    the flat indices ``voxels``), then uniform inside it."""
    flat = voxels[rng.choice(voxels.size, size=count, p=weights)]
    index = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.float64)  # (z, y, x)
    pos = (index + rng.random((count, 3))) * sampling
    return pos[:, ::-1].copy()  # (x, y, z)


def _first_free(candidates: np.ndarray, kept: cKDTree | None, d: float, box) -> np.ndarray:
    """Indices of the candidates at least ``d`` Å from every kept atom and from every earlier
    candidate (a candidate that clashes with an earlier one is dropped even if that one is
    dropped too: conservative, never a pair closer than ``d``)."""
    ok = np.ones(len(candidates), dtype=bool)
    if kept is not None:
        dist, _ = kept.query(candidates, k=1, distance_upper_bound=d)
        ok &= ~(dist < d)
    idx = np.flatnonzero(ok)
    if idx.size > 1:
        pairs = cKDTree(candidates[idx], boxsize=box).query_pairs(d, output_type="ndarray")
        if len(pairs):
            drop = np.zeros(idx.size, dtype=bool)
            drop[pairs.max(axis=1)] = True
            idx = idx[~drop]
    return idx


def _domain(occupancy: np.ndarray, sampling: np.ndarray, reach: float) -> np.ndarray:
    """Voxels (bool) within ``reach`` Å (a box, per axis) of an occupied voxel; periodic in y, x."""
    r = [int(np.ceil(reach / d)) for d in sampling]
    return ndimage.maximum_filter(occupancy > 0, size=[2 * k + 1 for k in r],
                                  mode=("constant", "wrap", "wrap"))


def _hard_core(domain: np.ndarray, support: np.ndarray, sampling: np.ndarray, count: int,
               d: float, rng: np.random.Generator, max_rounds: int) -> np.ndarray:
    """Positions (x, y, z) Å uniform over the ``domain`` voxels, no two closer than ``d``
    (periodic in x, y), ``count`` of them inside the ``support`` voxels (a part of the domain
    at least 2 d from its surface): random sequential addition in rounds of candidates.
    Counting inside the support, not over the domain, keeps the atoms that random sequential
    addition crowds against the domain's free surface from thinning the interior."""
    shape = domain.shape
    extent = np.array(shape, dtype=np.float64)[::-1] * sampling[::-1]  # (x, y, z) Å
    # periodic in x, y; a z period longer than the cell by 2 d never wraps a pair
    box = np.array([extent[0], extent[1], extent[2] + 2 * d + 1.0])
    voxels = np.flatnonzero(domain)
    weights = np.full(voxels.size, 1.0 / voxels.size)
    share = np.count_nonzero(support) / voxels.size  # fraction of candidates in the support
    kept, inside = np.zeros((0, 3)), 0
    tree, rate = None, 1.0
    for _ in range(max_rounds):
        need = count - inside
        if need <= 0:
            break
        n = int(min(max(1.2 * need / (max(rate, 0.02) * share), 64), 20 * count / share + 64))
        cand = _candidates(weights, voxels, shape, sampling, n, rng)
        cand = np.minimum(cand, np.nextafter(box, 0))  # rounding at the cell's far edge
        free = _first_free(cand, tree, d, box)
        rate = max(free.size / n, 1e-3)
        hits = np.cumsum(support[tuple(_voxel(cand[free], sampling, shape).T)])
        free = free[: np.searchsorted(hits, need) + 1]  # stop at the need-th one inside
        kept = np.concatenate([kept, cand[free]])
        inside += int(min(need, hits[-1])) if hits.size else 0
        tree = cKDTree(kept, boxsize=box)
    if inside < count:
        raise RuntimeError(f"placed {inside} of {count} atoms in {max_rounds} rounds: "
                           f"{count / (np.count_nonzero(support) * np.prod(sampling)):.4f} "
                           f"/Å³ is too dense for a {d} Å minimum separation")
    return kept


def _voxel(pos: np.ndarray, sampling: np.ndarray, shape) -> np.ndarray:
    """(n, 3) voxel indices (z, y, x) of positions (x, y, z) Å."""
    index = np.floor(pos[:, ::-1] / sampling).astype(np.int64)
    return np.clip(index, 0, np.array(shape) - 1)


def amorphous_positions(occupancy: np.ndarray, sampling, *, number_density: float,
                        min_separation: float, rng: np.random.Generator,
                        max_rounds: int = 200) -> np.ndarray:
    """Atom positions (n, 3) float64 in Å, columns (x, y, z) (see the module docstring), filling
    ``occupancy`` (z, y, x) in [0, 1] at ``number_density`` (atoms / Å³) x occupancy, no two
    closer than ``min_separation`` Å (periodic in x and y); the same ``rng`` state gives the
    same atoms.

    A hard-core material is grown at the full density over the occupied voxels and a margin of
    2 x ``min_separation`` around them (so an object's surface has the density of its interior:
    random sequential addition would crowd atoms against a free surface), then each atom is
    kept with its voxel's occupancy. The count is :func:`target_count` on average. RuntimeError
    when ``max_rounds`` rounds of candidates cannot reach the density (too dense for the
    separation: random sequential addition jams near a packing fraction of 0.38)."""
    occupancy, sampling = _check(occupancy, sampling)
    if not number_density > 0 or not min_separation >= 0:
        raise ValueError("number_density must be > 0 and min_separation >= 0")
    if not occupancy.any():
        return np.zeros((0, 3))
    domain = _domain(occupancy, sampling, 2 * min_separation)
    support = occupancy > 0
    count = target_count(support, sampling, number_density)
    pos = _hard_core(domain, support, sampling, count, min_separation, rng, max_rounds)
    index = _voxel(pos, sampling, occupancy.shape)
    keep = rng.random(len(pos)) < occupancy[tuple(index.T)]
    return pos[keep]


def amorphous_atoms(occupancy: np.ndarray, sampling, material: Material | str,
                    rng: np.random.Generator):
    """``ase.Atoms`` of ``material`` (a :class:`Material` or a key of :data:`MATERIALS`) filling
    ``occupancy`` (z, y, x) in [0, 1] at ``sampling`` (dz, dy, dx) Å: positions from
    :func:`amorphous_positions`, cell (nx·dx, ny·dy, nz·dz) Å, periodic in x and y."""
    try:
        from ase import Atoms
    except ImportError:
        raise ImportError("amorphous_atoms needs ASE (pip install -e '.[bench]')") from None

    mat = material if isinstance(material, Material) else get_material(material)
    occupancy, sampling_a = _check(occupancy, sampling)
    pos = amorphous_positions(occupancy, sampling_a, number_density=mat.number_density,
                              min_separation=mat.min_separation, rng=rng)
    nz, ny, nx = occupancy.shape
    dz, dy, dx = sampling_a
    return Atoms(symbols=[mat.symbol] * len(pos), positions=pos,
                 cell=[nx * dx, ny * dy, nz * dz], pbc=[True, True, False])


def slab_occupancy(shape: tuple[int, int, int], top: int, bottom: int) -> np.ndarray:
    """Occupancy (z, y, x) float32 of a laterally uniform slab filling slices [top, bottom)."""
    occ = np.zeros(shape, dtype=np.float32)
    occ[top:bottom] = 1.0
    return occ


__all__ = ["Material", "MATERIALS", "get_material", "target_count", "amorphous_positions",
           "amorphous_atoms", "slab_occupancy"]
