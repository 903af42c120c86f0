"""Reading and writing recorded movies: MRC, TIFF, Gatan DM3/DM4, Velox and NCEM EMD, TIA
SER/EMI (readers in :mod:`stream3d.io.readers`) and a run store's raw frames.

A movie is a sequence of 2D raw frames (y, x) read lazily (one frame from disk when asked
for), so replaying a movie larger than RAM is fine. ``meta`` holds the file's calibrations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from stream3d.errors import UserError
from stream3d.io.meta import MovieMeta
from stream3d.io.readers import DM, EMD, SUPPORTED, TIA, read_mrc, read_rsciio, read_tiff

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
    meta: MovieMeta = field(default_factory=MovieMeta)

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
    """Open a movie for lazy reading: MRC (.mrc/.mrcs/.st/.map), TIFF, DM3/DM4, EMD (Velox,
    NCEM), TIA (.ser/.emi) or a run store (.zarr).

    A single 2D image is a one-frame movie. Raises :class:`UserError` naming the problem.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"movie {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".zarr" or (path / "zarr.json").exists():
        return _open_run_frames(path)
    if suffix == ".emi":  # TIA: the .emi holds the metadata, the series is in <name>_1.ser
        sers = sorted(path.parent.glob(f"{path.stem}_*.ser"))
        if not sers:
            raise UserError(f"movie {path}: no {path.stem}_1.ser beside it")
    if suffix in MRC_SUFFIXES:
        frames, meta, closer = read_mrc(path)
    elif suffix in TIFF_SUFFIXES:
        frames, meta, closer = read_tiff(path)
    elif suffix in DM + EMD + TIA:
        frames, meta, closer = read_rsciio(path)
    else:
        raise UserError(f"movie {path}: unknown format {suffix!r} "
                        f"(use {', '.join(SUPPORTED)} or a run store .zarr)")
    return ArrayMovie(frames, meta.pixel_size, closer, meta)


def _open_run_frames(path: Path) -> ArrayMovie:
    from stream3d.ome import scale_of
    from stream3d.store import open_run

    group = open_run(path)
    if "frames" not in group.array_keys():
        raise UserError(f"run store {path} has no frames yet")
    state = group.attrs["stream3d"]
    size = scale_of(group.attrs["ome"])[2]
    meta = MovieMeta("stream3d run store", pixel_size=size,
                     frame_interval=state.get("frame_interval"))
    for segment in state.get("series", []):
        dectris = (segment.get("meta") or {}).get("dectris") or {}
        meta.detector = meta.detector or dectris.get("detector_description")
    return ArrayMovie(group["frames"], size, None, meta)


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
