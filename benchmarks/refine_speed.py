"""One refinement iteration (forward + backward + Adam step) against one forward pass, and a
whole frame's refinement in forward-pass equivalents.

    python benchmarks/refine_speed.py [--device auto|cpu|cuda] [--shape 32 256 256]

Targets: one iteration <= 4x a forward pass (issue 5); a frame's refinement <= 150 forward
passes at 256x256x32 (issue 10). Ratios are taken in one run, so they hold on a shared, noisy
machine where absolute times drift.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import best_time, pick_device  # noqa: E402

from stream3d.config import Config  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.refine import refine_volume  # noqa: E402
from stream3d.refine.model import ImagingModel  # noqa: E402
from stream3d.simulate import simulate_frame  # noqa: E402
from stream3d.specimen import three_discs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 256, 256))
    args = parser.parse_args()
    device = pick_device(args.device)
    nz, ny, nx = args.shape
    config = Config().replace("sample", slices=nz, slice_thickness=640.0 / nz, absorption=0.0) \
        .replace("refine", device=str(device)).replace("simulate", ny=ny, nx=nx)
    occ = three_discs((nz, ny, nx), config.sample.sampling, thickness=80.0)
    frame, _ = simulate_frame(occ, config, seed=0, device=device)
    start = popout(frame, config).volume
    import torch

    volume = torch.as_tensor(start, device=device)
    model = ImagingModel.from_config(config)

    def forward():
        with torch.no_grad():
            return model.intensity(volume)

    t_forward = best_time(forward, device=device, repeat=5)

    def run(iterations: int) -> float:
        cfg = config.replace("refine", iterations=iterations, plateau_tolerance=0.0)
        clock = time.perf_counter()
        refine_volume(frame, start, cfg)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - clock

    short, long = min(run(5) for _ in range(2)), min(run(15) for _ in range(2))
    per_iteration = (long - short) / 10
    whole = min(run(config.refine.iterations) for _ in range(2))
    print(f"refinement speed, {nz}x{ny}x{nx}, device {device}")
    print(f"  forward pass                  {1e3 * t_forward:8.1f} ms")
    print(f"  one iteration                 {1e3 * per_iteration:8.1f} ms  "
          f"{per_iteration / t_forward:5.2f}x forward (target <= 4)")
    print(f"  a frame ({config.refine.iterations} iterations, evidence) {whole:8.2f} s  "
          f"{whole / t_forward:5.0f} forward passes (target <= 150)")


if __name__ == "__main__":
    main()
