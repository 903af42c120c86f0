"""Objects of one frame: 3D connected components of material, each measured in nm.

Material is occupancy > 0.5 (half the material level), parts are 26-connected, and parts
smaller than a minimum volume are noise, not objects. Each object owns its voxels plus a
one-voxel rim (partial-volume voxels at its boundary; a rim voxel between two objects goes to
the nearer), so volumes integrate V / level as :mod:`stream3d.analysis.metrics` does and the
objects' volumes add up to the frame's. Surfaces are the 0.5 level set of the object's
occupancy after a lateral Gaussian blur of ``resolution`` Å (FWHM): detail finer than the
data resolve (noise roughness) is not surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from stream3d.analysis.maps import MATERIAL, smooth_lateral, top_bottom
from stream3d.analysis.metrics import ANTIALIAS_PX, FWHM_PER_SIGMA, NM, material_ratio
from stream3d.analysis.surface import isosurface, mesh_area
from stream3d.specimen.geometry import slice_centres

_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # faces, edges and corners touch


@dataclass(frozen=True)
class ObjectRow:
    """One object of one frame. Lengths nm; z is the height above the exit plane."""

    frame: int  # store index t
    t: float  # s since the first frame
    object: int  # label in this frame, 1..n by decreasing volume
    volume_nm3: float
    surface_nm2: float
    centroid_z_nm: float  # height above the exit plane
    centroid_y_nm: float
    centroid_x_nm: float
    lowest_face_nm: float  # height of the object's lowest material face
    highest_face_nm: float  # height of its highest material face


OBJECT_COLUMNS = tuple(f.name for f in fields(ObjectRow))


@dataclass(frozen=True)
class FrameObjects:
    """The objects of one frame: ``labels`` (z, y, x) int32, 0 = none, k = ``rows[k - 1]``."""

    labels: np.ndarray
    rows: list[ObjectRow]


def lateral_sigma_px(resolution: float, pixel: float) -> float:
    """Lateral blur (px, Gaussian sigma) that measures a surface at ``resolution`` Å FWHM;
    never below the anti-aliasing blur that keeps pixel staircases out of the area."""
    return max(ANTIALIAS_PX, resolution / FWHM_PER_SIGMA / pixel)


def label_material(occ: np.ndarray, voxel_nm3: float, min_volume_nm3: float) -> np.ndarray:
    """Labels (int32) of the 26-connected parts of occ > 0.5 holding at least
    ``min_volume_nm3``, numbered 1..n by decreasing size (ties: first voxel in C order)."""
    labels, n = ndimage.label(occ > MATERIAL, structure=_NEIGHBOURS)
    if n == 0:
        return labels.astype(np.int32)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(sizes * voxel_nm3 >= min_volume_nm3)
    order = keep[np.argsort(-sizes[keep], kind="stable")]  # biggest first, stable in label order
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[order + 1] = np.arange(1, order.size + 1, dtype=np.int32)
    return lut[labels]


def owned_regions(labels: np.ndarray) -> np.ndarray:
    """Labels grown by one voxel (26-neighbourhood): each object's voxels and its rim."""
    from skimage.segmentation import expand_labels

    return expand_labels(labels, distance=math.sqrt(3.0) + 1e-6).astype(np.int32)


def frame_objects(volume: np.ndarray, *, frame: int, t: float, sampling: Sequence[float],
                  level: float, min_volume_nm3: float = 1.0,
                  resolution: float = 0.0,
                  origin: tuple[float, float] = (0.0, 0.0)) -> FrameObjects:
    """Label and measure the objects of one (z, y, x) volume sampled at (dz, dy, dx) Å.

    ``level``: full material (V, or 1 for an occupancy); ``min_volume_nm3``: smallest object;
    ``resolution``: Å FWHM at which surfaces are measured (0: the pixel grid's, anti-aliased);
    ``origin``: (y, x) Å of the volume's corner in the whole frame (a region of interest's
    offset), added to the centroids.
    """
    dz, dy, dx = (float(s) for s in sampling)
    ratio = material_ratio(volume, level)
    occ = np.clip(ratio, 0.0, 1.0)
    labels = label_material(occ, dz * dy * dx / NM**3, min_volume_nm3)
    n = int(labels.max())
    if n == 0:
        return FrameObjects(labels, [])
    region = owned_regions(labels)
    amount = np.bincount(region.ravel(), weights=ratio.ravel(), minlength=n + 1)
    weight = np.clip(ratio, 0.0, None)
    mass = np.bincount(region.ravel(), weights=weight.ravel(), minlength=n + 1)
    nz, ny, nx = occ.shape
    axes = (slice_centres(nz, dz), origin[0] + (np.arange(ny) + 0.5) * dy,
            origin[1] + (np.arange(nx) + 0.5) * dx)
    index = np.arange(1, n + 1)
    centroid = [np.asarray(ndimage.sum_labels(weight * _along(c, axis, occ.ndim), region, index))
                / mass[1:] for axis, c in enumerate(axes)]
    sigma = lateral_sigma_px(resolution, min(dy, dx))
    boxes = ndimage.find_objects(region)
    rows = []
    for k in range(1, n + 1):
        box = _grow_box(boxes[k - 1], occ.shape, int(math.ceil(3 * sigma)) + 1)
        own = occ[box] * (region[box] == k)
        top, bottom = top_bottom(own, dz)
        area = mesh_area(isosurface(smooth_lateral(own, sigma), MATERIAL, (dz, dy, dx)))
        shift_h = (nz - box[0].stop) * dz  # heights in the box are above the box's lowest slice
        rows.append(ObjectRow(
            frame=int(frame), t=float(t), object=k,
            volume_nm3=float(amount[k]) * dz * dy * dx / NM**3,
            surface_nm2=area / NM**2,
            centroid_z_nm=float(centroid[0][k - 1]) / NM,
            centroid_y_nm=float(centroid[1][k - 1]) / NM,
            centroid_x_nm=float(centroid[2][k - 1]) / NM,
            lowest_face_nm=(float(np.nanmin(bottom)) + shift_h) / NM,
            highest_face_nm=(float(np.nanmax(top)) + shift_h) / NM,
        ))
    return FrameObjects(labels, rows)


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def _grow_box(box: tuple[slice, ...], shape: Sequence[int], pad: int) -> tuple[slice, ...]:
    """The bounding box grown by ``pad`` voxels laterally (room for the lateral blur) and by
    one slice along z (the blur never acts along z)."""
    z, y, x = box
    return (slice(max(z.start - 1, 0), min(z.stop + 1, shape[0])),
            slice(max(y.start - pad, 0), min(y.stop + pad, shape[1])),
            slice(max(x.start - pad, 0), min(x.stop + pad, shape[2])))
