"""Warm starts on a growing-dendrite movie: iterations to reach the cold start's error.

    python benchmarks/warm_start.py [--size 128] [--slices 16] [--frames 10] [--device auto]

Every frame is refined twice from the same pop-out result: cold (refine_volume from pop-out)
and warm (a Refiner that starts from the previous frame's volume). For each frame: the final
errors against the truth and the first iteration at which each run reached the cold run's
final error. Required (issue 5): warm-started frames reach the same error in at most half
the iterations of cold starts.
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
from stream3d.refine.evaluate import Trajectory  # noqa: E402
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
        cold_path = Trajectory(occupancy, potential=s.potential, dz=s.slice_thickness)
        cold = refine_volume(frame, pop.volume, config, callback=cold_path)
        warm_path = Trajectory(occupancy, potential=s.potential, dz=s.slice_thickness)
        refiner.callback = warm_path
        warm = refiner.refine(frame, pop)
        e_cold = errors(cold.volume, occupancy, potential=s.potential, dz=s.slice_thickness)
        e_warm = errors(warm.volume, occupancy, potential=s.potential, dz=s.slice_thickness)
        reach_cold = cold_path.reached(e_cold)
        reach_warm = warm_path.reached(e_cold)
        row = dict(frame=t, warm=warm.warm, cold_iterations=cold.iterations,
                   warm_iterations=warm.iterations, cold_reach=reach_cold,
                   warm_reach=warm.iterations if reach_warm is None else reach_warm,
                   cold_depth=e_cold.depth, warm_depth=e_warm.depth, cold_iou=e_cold.iou,
                   warm_iou=e_warm.iou)
        rows.append(row)
        report(f"{t:>5}{'warm' if warm.warm else 'cold':>6}{e_cold.depth:>9.1f}{e_cold.iou:>8.3f}"
               f"{cold.iterations:>7}{row['cold_reach']:>7}{e_warm.depth:>9.1f}{e_warm.iou:>8.3f}"
               f"{warm.iterations:>7}{row['warm_reach']:>7}")
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    """Means over the warm-started frames."""
    warm_rows = [r for r in rows if r["warm"]]
    keys = ("cold_iterations", "warm_iterations", "cold_reach", "warm_reach", "cold_depth",
            "warm_depth", "cold_iou", "warm_iou")
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
    print(f"{'frame':>5}{'start':>6}{'cold: depth Å':>15}{'IoU':>6}{'iters':>7}{'reach':>7}"
          f"{'warm: depth Å':>15}{'IoU':>6}{'iters':>7}{'reach':>7}")
    rows = run_movie(config, args.frames)
    m = summary(rows)
    print(f"\nmeans over {m['frames']} warm-started frames:")
    ratio = m["warm_reach"] / m["cold_reach"] if m["cold_reach"] > 0 else float("nan")
    print(f"  iterations to reach the cold start's final error: cold {m['cold_reach']:.1f}, "
          f"warm {m['warm_reach']:.1f} (ratio {ratio:.2f}, target <= 0.5)")
    print(f"  iterations used: cold {m['cold_iterations']:.1f}, warm {m['warm_iterations']:.1f}")
    print(f"  depth error (Å): cold {m['cold_depth']:.1f}, warm {m['warm_depth']:.1f}; "
          f"IoU: cold {m['cold_iou']:.3f}, warm {m['warm_iou']:.3f}")


if __name__ == "__main__":
    main()
