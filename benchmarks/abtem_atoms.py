"""abTEM images of real atoms: the accuracy suite's `--simulator abtem-atoms` (issue 20, item 4).

An occupancy (z, y, x) becomes amorphous carbon or silicon atoms
(:func:`stream3d.specimen.atoms.amorphous_atoms`), abTEM builds their potential (Lobato
parametrisation, infinite projection) on a grid finer than the detector, runs its multislice and
its CTF with the config's lens, and the intensity is averaged over each detector pixel. The
reconstruction is told only the material's mean inner potential (:func:`mean_inner_potential`,
from abTEM's potential of a slab of the same atoms), never anything about its texture.

Geometry: the cell is the config's field (nx·dx, ny·dy Å, periodic) by slices·slice_thickness Å;
abTEM slices it from the entrance (z = 0) to the exit plane at the bottom, the CTF's defocus is
measured from that exit plane, so material at height h above it is seen at defocus - h exactly as
in :mod:`stream3d.physics`. abTEM's arrays are (x, y); atom x is our axis 2, so the image is
transposed back to (y, x).

Sampling (measured on the suite's three 60 Å carbon discs, 256² at 1 Å, against 0.125 Å): the
radially averaged image power spectrum at 0.25 Å is within 2 % of 0.125 Å's over 0.04-0.40 Å^-1
(0.5 Å: 2-10 % low; 1 Å: 7-22 % low up to 0.28 Å^-1 and nothing beyond 2/3 Nyquist, 0.33 Å^-1,
while the 10 mrad aperture passes 0.51 Å^-1); the discs' mean darkening (electrons the atoms
scatter outside the aperture) is 0.039 at 0.25 Å vs 0.041 at 0.125 Å (0.036 at 0.5 Å). Slices
of 2, 5, 10 and 20 Å gave the same image within 0.3 %. Hence the defaults: 0.25 Å potential
sampling, slices of at most 5 Å, 4 x 4 binning of the intensity to the 1 Å pixels. abTEM applies
a slice's atoms at its entrance face, so material is seen on average half a slice (2.5 Å) above
its centre of mass; our own simulator applies a 20 Å voxel at its top (10 Å above the centre the
accuracy metrics use).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from stream3d.config import Config
from stream3d.specimen.atoms import amorphous_atoms, slab_occupancy

#: Å: the potential's sampling (a divisor of the pixel size) and the largest multislice slice.
SAMPLING = 0.25
MAX_SLICE = 5.0


def _abtem():
    import abtem

    abtem.config.set({"device": "cpu"})
    return abtem


def _slice_thickness(depth_slice: float, max_slice: float = MAX_SLICE) -> float:
    """The config's slice (Å) cut into equal sub-slices of at most ``max_slice`` Å."""
    return depth_slice / math.ceil(depth_slice / max_slice - 1e-9)


def _bin(intensity: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor x factor block: a detector pixel's mean intensity (vacuum stays 1)."""
    nx, ny = intensity.shape[0] // factor, intensity.shape[1] // factor
    return intensity.reshape(nx, factor, ny, factor).mean(axis=(1, 3))


def potential_of(atoms, *, sampling: float, slice_thickness: float):
    """abTEM's potential (projected, V·Å per slice) of ``atoms`` over their whole cell."""
    abtem = _abtem()
    return abtem.Potential(atoms, sampling=sampling, slice_thickness=slice_thickness,
                           parametrization="lobato", projection="infinite", periodic=True)


def atoms_intensity(occupancy: np.ndarray, config: Config, *, material: str,
                    rng: np.random.Generator, sampling: float = SAMPLING) -> np.ndarray:
    """Noise-free image (y, x) float32, vacuum = 1, of ``occupancy`` (z, y, x) filled with
    amorphous ``material`` atoms drawn from ``rng``: abTEM multislice at ``sampling`` Å, CTF with
    the config's energy, defocus (from the exit plane), Cs, hard aperture and focal spread, then
    the intensity averaged over each pixel_size² detector pixel."""
    m, s = config.microscope, config.sample
    if m.astigmatism:
        raise ValueError("the abtem-atoms simulator does not model astigmatism")
    factor = round(s.pixel_size / sampling)
    if factor < 1 or abs(factor * sampling - s.pixel_size) > 1e-6 * s.pixel_size:
        raise ValueError(f"sampling {sampling} Å must divide the pixel size {s.pixel_size} Å")
    abtem = _abtem()
    atoms = amorphous_atoms(occupancy, s.sampling, material, rng)
    potential = potential_of(atoms, sampling=sampling,
                             slice_thickness=_slice_thickness(s.slice_thickness))
    waves = abtem.PlaneWave(energy=m.energy, device="cpu").multislice(potential)
    ctf = abtem.CTF(semiangle_cutoff=m.aperture if m.aperture > 0 else np.inf, soft=False,
                    focal_spread=m.focal_spread, defocus=m.defocus, Cs=m.cs, energy=m.energy)
    intensity = waves.apply_ctf(ctf).intensity().compute(progress_bar=False).array
    return np.ascontiguousarray(_bin(np.asarray(intensity), factor).T, dtype=np.float32)


@lru_cache(maxsize=8)
def mean_inner_potential(material: str, *, sampling: float = SAMPLING, width: float = 32.0,
                         thickness: float = 40.0, seed: int = 0) -> float:
    """The material's mean inner potential (V, relative to vacuum) from abTEM's own potential
    of its atoms: a laterally periodic slab ``width`` x ``width`` x ``thickness`` Å of
    :func:`amorphous_atoms` (in a cell twice as deep), projected potential (V·Å) summed over the
    slices, averaged over the cell's area, divided by the thickness. This is the k = 0
    Fourier component, exact in the infinite projection whatever the sampling."""
    atoms = slab_atoms(material, width=width, thickness=thickness, seed=seed)
    projected = potential_of(atoms, sampling=sampling, slice_thickness=thickness / 4).build()
    total = np.asarray(projected.compute(progress_bar=False).array).sum(axis=0)  # V·Å per pixel
    return float(total.mean() / thickness)


def slab_atoms(material: str, *, width: float, thickness: float, seed: int = 0,
               voxel: float = 1.0):
    """Atoms of a laterally uniform slab ``thickness`` Å thick at the top of a cell
    ``width`` x ``width`` x 2·thickness Å, on ``voxel`` Å lateral voxels."""
    n = int(round(width / voxel))
    occ = slab_occupancy((2, n, n), 0, 1)
    return amorphous_atoms(occ, (thickness, voxel, voxel), material,
                           np.random.default_rng(seed))


def mean_phase(material: str, *, thickness: float, energy: float, width: float = 32.0,
               sampling: float = SAMPLING, seed: int = 1) -> float:
    """Mean phase (rad) of abTEM's exit wave right below a slab of ``material`` ``thickness``
    Å thick (the cell is the slab, so the exit plane is its bottom face)."""
    abtem = _abtem()
    n = int(round(width))
    atoms = amorphous_atoms(slab_occupancy((1, n, n), 0, 1), (thickness, 1.0, 1.0), material,
                            np.random.default_rng(seed))
    potential = potential_of(atoms, sampling=sampling,
                             slice_thickness=_slice_thickness(thickness, 2.0))
    exit_wave = abtem.PlaneWave(energy=energy, device="cpu").multislice(potential)
    psi = np.asarray(exit_wave.compute(progress_bar=False).array)
    return float(np.mean(np.angle(psi)))


__all__ = ["SAMPLING", "atoms_intensity", "mean_inner_potential", "mean_phase", "slab_atoms"]
