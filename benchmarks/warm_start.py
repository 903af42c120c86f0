"""Warm starts on a small growing-dendrite movie: pop-out vs cold vs warm, against the truth.

    python benchmarks/warm_start.py [--size 128] [--slices 16] [--frames 10] [--device auto]

Every frame is refined twice from the same pop-out result: cold (refine_volume from pop-out)
and warm (a Refiner whose start carries the previous frames' heights). For each frame: the
depth (height) error and 3D IoU of pop-out, cold and warm. Required (issue 10): warm <= cold
in depth error, and never a drift that grows with the frame. The 256 px suite is
benchmarks/accuracy.py's movie.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream3d.config import Config, load  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.refine import Refiner, errors, refine_volume  # noqa: E402
from stream3d.movie import render_frame  # noqa: E402
from stream3d.specimen import amorphous_texture  # noqa: E402
from stream3d.specimen.catalog import dendrite  # noqa: E402


def movie_config(size: int, slices: int, overrides: list[str] = ()) -> Config:
    """A growing dendrite that fits a size x size x slices grid (20 Å slices)."""
    depth = slices * 20.0
    return load(None, [f"simulate.ny={size}", f"simulate.nx={size}", f"sample.slices={slices}",
                       f"simulate.depth_low={0.125 * depth}",
                       f"simulate.depth_high={0.875 * depth}",
                       "simulate.radius_min=15.0", "simulate.radius_max=22.0",
                       "simulate.branches=6", "simulate.growth=10.0", *overrides])


def run_movie(config: Config, frames: int, *, seed: int = 100, report=print) -> list[dict]:
    """Cold and warm refinements of every frame; one dict of results per frame."""
    s = config.sample
    specimen = dendrite(config)
    # One amorphous texture for the whole movie, as `stream3d simulate` does: material keeps
    # its texture as it grows; only the shot noise is new in every frame.
    shape = (s.slices, config.simulate.ny, config.simulate.nx)
    texture = (amorphous_texture(shape, s.sampling, length=s.texture_length,
                                 rng=np.random.default_rng(seed)) if s.texture > 0 else None)
    refiner = Refiner(config)
    rows = []
    for t in range(frames):
        occupancy = specimen.occupancy(t)
        frame, _, _ = render_frame(occupancy, config, texture=texture, noise_seed=seed + t,
                                   device=config.refine.device)
        pop = popout(frame, config)
        cold = refine_volume(frame, pop.volume, config)
        warm = refiner.refine(frame, pop)
        e_pop, e_cold, e_warm = (errors(v, occupancy, potential=s.potential,
                                        dz=s.slice_thickness)
                                 for v in (pop.volume, cold.volume, warm.volume))
        row = dict(frame=t, warm=warm.warm, popout_depth=e_pop.depth, popout_iou=e_pop.iou,
                   cold_depth=e_cold.depth, warm_depth=e_warm.depth, cold_iou=e_cold.iou,
                   warm_iou=e_warm.iou)
        rows.append(row)
        report(f"{t:>5}{'warm' if warm.warm else 'cold':>6}{e_pop.depth:>9.1f}{e_pop.iou:>8.3f}"
               f"{e_cold.depth:>9.1f}{e_cold.iou:>8.3f}{e_warm.depth:>9.1f}{e_warm.iou:>8.3f}")
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    """Means over the warm-started frames."""
    warm_rows = [r for r in rows if r["warm"]]
    keys = ("popout_depth", "popout_iou", "cold_depth", "warm_depth", "cold_iou", "warm_iou")
    return {k: float(np.mean([r[k] for r in warm_rows])) if warm_rows else float("nan")
            for k in keys} | {"frames": len(warm_rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    config = movie_config(args.size, args.slices, [f"refine.device={args.device}", *args.sets])
    print(f"warm start: growing dendrite, {args.frames} frames of {args.size}x{args.size}x"
          f"{args.slices}, device {config.refine.device}")
    print(f"{'frame':>5}{'start':>6}{'pop-out Å':>9}{'IoU':>8}{'cold Å':>9}{'IoU':>8}"
          f"{'warm Å':>9}{'IoU':>8}")
    rows = run_movie(config, args.frames)
    m = summary(rows)
    print(f"\nmeans over {m['frames']} warm-started frames (depth error Å / IoU):")
    print(f"  pop-out {m['popout_depth']:.1f} / {m['popout_iou']:.3f}   cold {m['cold_depth']:.1f}"
          f" / {m['cold_iou']:.3f}   warm {m['warm_depth']:.1f} / {m['warm_iou']:.3f}")


if __name__ == "__main__":
    main()
