"""The paper's Fig. 1, measured: pop-out alone vs refined from pop-out vs refined from uniform.

    python benchmarks/figure1.py [--size 256] [--slices 32] [--seeds 1] [--frame 9]
                                 [--device auto] [--set section.key=value ...]

For a simulated growing dendrite (frame --frame) and three discs at three depths, every
row reports, against the ground truth: mean column depth (height) error (Å), 3D IoU at half the
material potential, the final data loss (refine.loss on the dose-normalised frame) and the
wall time. Required (issue 5): refined-from-pop-out beats pop-out alone on depth error AND
IoU; refined-from-uniform is clearly worse than both.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream3d.config import Config, load  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.refine import errors, refine_volume  # noqa: E402
from stream3d.refine.measurement import uniform_volume  # noqa: E402
from stream3d.refine.model import ImagingModel  # noqa: E402
from stream3d.simulate import simulate_frame  # noqa: E402
from stream3d.specimen.catalog import dendrite, discs  # noqa: E402

SPECIMENS = {"dendrite": dendrite, "discs": discs}
ROWS = ("pop-out alone", "refined from pop-out", "refined from uniform")


@dataclass
class Row:
    depth: float  # Å
    iou: float
    loss: float
    seconds: float


def run_case(config: Config, occupancy: np.ndarray, seed: int) -> dict[str, Row]:
    """The three rows for one simulated frame."""
    s = config.sample
    frame, _ = simulate_frame(occupancy, config, seed=seed, device=config.refine.device)

    def row(volume: np.ndarray, loss: float, seconds: float) -> Row:
        e = errors(volume, occupancy, potential=s.potential, dz=s.slice_thickness)
        return Row(e.depth, e.iou, loss, seconds)

    t0 = time.perf_counter()
    pop = popout(frame, config)
    t_pop = time.perf_counter() - t0
    alone = refine_volume(frame, pop.volume, config.replace("refine", iterations=0))
    refined = refine_volume(frame, pop.volume, config)
    start = uniform_volume(frame, ImagingModel.from_config(config), s.slices)
    t0 = time.perf_counter()
    uniform = refine_volume(frame, start, config)
    t_uni = time.perf_counter() - t0
    return {
        ROWS[0]: row(pop.volume, alone.loss, t_pop),
        ROWS[1]: row(refined.volume, refined.loss, t_pop + refined.seconds),
        ROWS[2]: row(uniform.volume, uniform.loss, t_uni),
    }


def mean_rows(cases: list[dict[str, Row]]) -> dict[str, Row]:
    return {name: Row(*(float(np.mean([getattr(c[name], f) for c in cases]))
                        for f in ("depth", "iou", "loss", "seconds"))) for name in ROWS}


def print_table(title: str, rows: dict[str, Row]) -> None:
    print(f"\n{title}")
    print(f"{'start':<24}{'depth error (Å)':>17}{'IoU @ V/2':>11}{'final loss':>13}"
          f"{'time (s)':>10}")
    for name in ROWS:
        r = rows[name]
        print(f"{name:<24}{r.depth:>17.1f}{r.iou:>11.3f}{r.loss:>13.4g}{r.seconds:>10.1f}")


def verdict(rows: dict[str, Row]) -> str:
    pop, ref, uni = (rows[n] for n in ROWS)
    beats = ref.depth < pop.depth and ref.iou > pop.iou
    worse = (uni.depth > max(pop.depth, ref.depth) and uni.iou < min(pop.iou, ref.iou))
    return (f"refined beats pop-out on depth and IoU: {'yes' if beats else 'NO'}; "
            f"uniform worse than both: {'yes' if worse else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="frame size (pixels)")
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=1, help="noise/texture seeds per case")
    parser.add_argument("--frame", type=int, default=9, help="dendrite frame (growth stage)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--config", default=None, help="TOML config (default: built-in)")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="section.key=value override (repeatable)")
    parser.add_argument("--specimens", nargs="+", default=list(SPECIMENS), choices=list(SPECIMENS))
    args = parser.parse_args()
    config = load(args.config, [f"simulate.ny={args.size}", f"simulate.nx={args.size}",
                                f"sample.slices={args.slices}",
                                f"simulate.depth_high={min(540.0, args.slices * 20.0 - 40.0)}",
                                f"simulate.depth_low={min(100.0, args.slices * 4.0)}",
                                f"refine.device={args.device}", *args.sets])
    s = config.sample
    print(f"Fig. 1 benchmark: {args.size}x{args.size}x{args.slices} voxels of "
          f"{s.pixel_size}x{s.pixel_size}x{s.slice_thickness} Å, "
          f"{config.microscope.energy / 1e3:.0f} kV, defocus {config.microscope.defocus:.0f} Å, "
          f"{config.detector.dose:.0f} e/Å², {args.seeds} seed(s), device {config.refine.device}")
    for name in args.specimens:
        specimen = SPECIMENS[name](config)
        occupancy = specimen.occupancy(args.frame if name == "dendrite" else 0)
        cases = [run_case(config, occupancy, seed) for seed in range(args.seeds)]
        rows = mean_rows(cases)
        label = (f"growing dendrite, frame {args.frame}" if name == "dendrite"
                 else "discs at three depths")
        print_table(label, rows)
        print(verdict(rows))


if __name__ == "__main__":
    main()
