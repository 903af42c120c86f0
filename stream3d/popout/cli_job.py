"""The work behind ``stream3d popout``: read one frame, pop it out, write the picture and maps."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

from stream3d.config import Config
from stream3d.errors import UserError, reason
from stream3d.popout.api import popout
from stream3d.popout.picture import save_picture


def read_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of an MRC image or image stack, as a float32 array (y, x)."""
    if not Path(path).is_file():
        raise UserError(f"movie {path} does not exist")
    try:
        with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
            data = mrc.data
            if data is None:
                raise UserError(f"{path} holds no image data")
            if data.ndim == 2:
                if index != 0:
                    raise UserError(f"{path} holds one frame; --frame must be 0, got {index}")
                return np.array(data, dtype=np.float32)
            if data.ndim != 3:
                raise UserError(f"{path} has shape {data.shape}; expected (y, x) or (t, y, x)")
            if not 0 <= index < data.shape[0]:
                raise UserError(f"--frame {index} is outside the movie's {data.shape[0]} frames")
            return np.array(data[index], dtype=np.float32)
    except (ValueError, OSError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{path} is not a readable MRC file: {reason(exc)}") from None


def run_popout(movie: Path, index: int, out: Path, config: Config, *,
               truth: Path | None = None) -> list[str]:
    """Pop out frame ``index`` of ``movie`` into ``out``; return the lines to print."""
    frame = read_frame(movie, index)
    result = popout(frame, config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = config.sample
    picture = save_picture(out / "popout.png", frame, result, pixel_size=s.pixel_size,
                           depth=s.slices * s.slice_thickness)
    maps = out / "popout.npz"
    np.savez_compressed(maps, volume=result.volume, height=result.height,
                        thickness=result.thickness, confidence=result.confidence,
                        message=np.array(result.message))
    material = result.thickness > 0
    lines = [f"wrote {picture}", f"wrote {maps}",
             f"material {100 * material.mean():.1f}% of the frame; height "
             + (f"{np.median(result.height[material]):.0f} Å median, confidence "
                f"{result.confidence[material].mean():.2f} mean" if material.any() else "-")]
    if result.message:
        lines.append(f"warning: {result.message}")
    if truth is not None:
        lines.append(_truth_line(result, truth, index, s.slice_thickness))
    return lines


def _truth_line(result, truth: Path, index: int, dz: float) -> str:
    import zarr

    from stream3d.popout.scoring import score

    try:
        occupancy = np.asarray(zarr.open_group(str(truth), mode="r")["occupancy"][index])
    except Exception as exc:  # noqa: BLE001 - any unreadable store is the user's input
        raise UserError(f"{truth} has no readable occupancy for frame {index}: {exc}") from None
    if occupancy.shape[1:] != result.height.shape or occupancy.shape[0] != result.volume.shape[0]:
        raise UserError(f"truth occupancy {occupancy.shape} does not match the frame and "
                        f"config grid {result.volume.shape}")
    sc = score(result, occupancy, dz, "tiles")
    return (f"against the truth: mean |height error| {sc.height_mae:.1f} Å in material, worst "
            f"64 px tile {sc.worst_region:.1f} Å, mask IoU {sc.iou:.3f}, mean |thickness error| "
            f"{sc.thickness_mae:.1f} Å")
