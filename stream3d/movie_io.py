"""Reading and writing recorded movies: MRC stacks, multi-page TIFF, and a run store's raw frames.

A movie is a sequence of 2D raw frames (y, x) read lazily (memory-mapped where the format
allows), so replaying a movie larger than RAM is fine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from stream3d.errors import UserError

MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".map")
TIFF_SUFFIXES = (".tif", ".tiff")


class Movie(Protocol):
    """Frames (y, x) by index; ``pixel_size`` in Å when the file records it, else None."""

    pixel_size: float | None

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> np.ndarray: ...
    def close(self) -> None: ...


@dataclass
class ArrayMovie:
    """A movie over an array-like (t, y, x): an MRC memory map, a Zarr array, or plain numpy."""

    frames: object
    pixel_size: float | None = None
    _closer: object = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} is outside the movie (0..{len(self) - 1})")
        return np.asarray(self.frames[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()


def open_movie(path: str | Path) -> ArrayMovie:
    """Open an MRC (.mrc/.mrcs/.st/.map), TIFF or run-store (.zarr) movie for lazy reading.

    A single 2D image is a one-frame movie. Raises :class:`UserError` naming the problem.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"movie {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return _open_mrc(path)
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path)
    if suffix == ".zarr" or (path / "zarr.json").exists():
        return _open_run_frames(path)
    raise UserError(f"movie {path}: unknown format {suffix!r} "
                    f"(use {', '.join(MRC_SUFFIXES + TIFF_SUFFIXES)} or a run store .zarr)")


def _open_mrc(path: Path) -> ArrayMovie:
    import mrcfile

    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except (ValueError, OSError) as exc:
        raise UserError(f"movie {path} is not a readable MRC file: {exc}") from None
    data = mrc.data
    if data is None or data.ndim not in (2, 3):
        mrc.close()
        raise UserError(f"movie {path}: expected a 2D frame or a 3D stack (t, y, x)")
    if data.ndim == 2:
        data = data[None]
    size = float(mrc.voxel_size.x)
    return ArrayMovie(data, size if size > 0 else None, mrc)


def _open_tiff(path: Path) -> ArrayMovie:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as img:
            pages = [np.asarray(page) for page in ImageSequence.Iterator(img)]
    except (OSError, ValueError) as exc:
        raise UserError(f"movie {path} is not a readable TIFF file: {exc}") from None
    shapes = {p.shape for p in pages}
    if len(shapes) != 1 or pages[0].ndim != 2:
        raise UserError(f"movie {path}: pages must be 2D frames of one shape, got {sorted(shapes)}")
    return ArrayMovie(np.stack(pages))


def _open_run_frames(path: Path) -> ArrayMovie:
    from stream3d.ome import scale_of
    from stream3d.store import open_run

    group = open_run(path)
    if "frames" not in group.array_keys():
        raise UserError(f"run store {path} has no frames yet")
    return ArrayMovie(group["frames"], scale_of(group.attrs["ome"])[2])


def write_mrc_movie(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, *,
                    pixel_size: float) -> Path:
    """Write frames (t, y, x) as an MRC image stack with ``pixel_size`` Å (dtype kept:
    uint16 -> mode 6, float32 -> mode 2, int16 -> mode 1, uint8 -> mode 0)."""
    import mrcfile

    path = Path(path)
    stack = np.ascontiguousarray(np.stack(list(frames)) if not isinstance(frames, np.ndarray)
                                 else frames)
    if stack.ndim != 3:
        raise ValueError(f"frames must be (t, y, x), got shape {stack.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(stack)
        mrc.set_image_stack()
        mrc.voxel_size = pixel_size
    return path
