"""Frames and volumes from files for the command line: .npy, .mrc, or a Zarr group.

A Zarr group is read like the run store or ``stream3d simulate``'s truth.zarr: the array
``volume`` (refined), else ``potential`` (the truth, real part), else ``popout``, at one
frame index. MRC stacks and 3D/4D .npy arrays are indexed the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream3d.errors import UserError, reason

ZARR_VOLUMES = ("volume", "potential", "popout")


def _load(path: Path) -> np.ndarray:
    if not path.exists():
        raise UserError(f"{path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r")
        if suffix in (".mrc", ".mrcs", ".st"):
            import mrcfile

            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                if mrc.data is None:
                    raise UserError(f"{path} holds no data")
                return np.array(mrc.data)
        if suffix == ".zarr" or path.is_dir():
            import zarr

            group = zarr.open_group(str(path), mode="r")
            for name in ZARR_VOLUMES:
                if name in group:
                    return group[name]
            raise UserError(f"{path} has none of the arrays {', '.join(ZARR_VOLUMES)}")
    except (OSError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{path} cannot be read: {reason(exc)}") from None
    raise UserError(f"{path}: unknown file type {suffix!r} (use .npy, .mrc or .zarr)")


def _pick(array, ndim: int, index: int, path: Path, what: str) -> np.ndarray:
    if array.ndim == ndim + 1:
        if not -array.shape[0] <= index < array.shape[0]:
            raise UserError(f"{path} has {array.shape[0]} frames; index {index} is out of range")
        array = array[index]
    if array.ndim != ndim:
        raise UserError(f"{path}: a {what} must have {ndim} axes (or {ndim + 1} with time), "
                        f"got shape {tuple(array.shape)}")
    return np.real(np.asarray(array)).astype(np.float32)


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Raw counts (y, x) from a file; stacks (t, y, x) give frame ``index``."""
    path = Path(path)
    return _pick(_load(path), 2, index, path, "frame")


def read_volume(path: str | Path, index: int = 0) -> np.ndarray:
    """A real volume (z, y, x) V from a file; 4D (t, z, y, x) arrays give frame ``index``."""
    path = Path(path)
    return _pick(_load(path), 3, index, path, "volume")
