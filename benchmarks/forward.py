"""Forward-model speed against its FFT bound, backward against forward, abTEM if installed.

    python benchmarks/forward.py [--device auto|cpu|cuda] [--shape 64 256 256]

Ratios are taken in one run, so they hold on a shared, noisy machine where absolute times drift.
Targets (2-core CPU): forward <= 1.5x FFT bound; forward+backward <= 3.5x forward;
stream3d >= 2x faster than abTEM on the same potential.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_time, pick_device  # noqa: E402

from stream3d.physics import image, multislice  # noqa: E402

ENERGY, SAMPLING = 300e3, (2.0, 0.5, 0.5)


def fft_bound(nz: int, ny: int, nx: int, device: torch.device) -> float:
    """The FFTs multislice cannot avoid, per slice 2 to band-limit the transmission and 2 to
    propagate, done the cheaper of two ways: slice by slice, or the transmission pair batched."""
    stack = torch.randn(nz, ny, nx, dtype=torch.complex64, device=device)

    def looped():
        for w in stack.unbind(0):
            torch.fft.ifft2(torch.fft.fft2(w))
            torch.fft.ifft2(torch.fft.fft2(w))

    def batched():
        torch.fft.ifft2(torch.fft.fft2(stack))
        w = stack[0]
        for _ in range(nz):
            w = torch.fft.ifft2(torch.fft.fft2(w))

    return min(best_time(looped, device=device), best_time(batched, device=device))


def abtem_run(potential: torch.Tensor) -> tuple[float, float] | None:
    """abTEM's multislice of the same potential: (best time s, relative L2 difference of the
    exit waves), or None when abTEM is not importable. abTEM shares DESIGN.md's conventions, so
    the difference is an external check of the physics as well as a speed reference."""
    try:
        import abtem
        import numpy as np
    except ImportError:
        return None
    import time

    dz, dy, dx = SAMPLING
    array = potential.cpu().numpy().astype(np.float32) * dz  # projected potential per slice, V·Å
    pot = abtem.PotentialArray(array, slice_thickness=dz, sampling=(dy, dx))
    wave = abtem.PlaneWave(energy=ENERGY, device="cpu")
    best, exit_wave = float("inf"), None
    for _ in range(3):
        t0 = time.perf_counter()
        exit_wave = np.asarray(wave.multislice(pot).compute().array)
        best = min(best, time.perf_counter() - t0)
    ours = multislice(potential.cpu(), sampling=SAMPLING, energy=ENERGY).numpy()
    return best, float(np.linalg.norm(exit_wave - ours) / np.linalg.norm(ours))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default). On a loaded machine use 1: "
                             "threads that wait for a busy core make small FFTs many times slower")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256), metavar=("NZ", "NY", "NX"))
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    nz, ny, nx = args.shape
    torch.manual_seed(0)
    potential = (torch.rand(nz, ny, nx, device=device) * 10.0)

    def fwd():
        return image(multislice(potential, sampling=SAMPLING, energy=ENERGY), sampling=SAMPLING,
                     energy=ENERGY, defocus=1000.0, cs=1e7, aperture=20.0, focal_spread=30.0)

    def fwd_bwd():
        p = potential.detach().requires_grad_()
        out = image(multislice(p, sampling=SAMPLING, energy=ENERGY), sampling=SAMPLING,
                    energy=ENERGY, defocus=1000.0, cs=1e7, aperture=20.0, focal_spread=30.0)
        out.square().mean().backward()

    t_fft = fft_bound(nz, ny, nx, device)
    t_fwd = best_time(fwd, device=device)
    t_fb = best_time(fwd_bwd, device=device)
    ab = abtem_run(potential)

    print(f"forward model, {nz}x{ny}x{nx} float32 on {device} ({torch.get_num_threads()} threads)")
    print(f"{'quantity':<34}{'time (ms)':>12}{'ratio':>10}{'target':>10}")
    print(f"{'FFT bound (4 FFTs per slice)':<34}{t_fft * 1e3:>12.1f}{'':>10}{'':>10}")
    print(f"{'forward':<34}{t_fwd * 1e3:>12.1f}{t_fwd / t_fft:>9.2f}x{'<= 1.5x':>10}")
    print(f"{'forward + backward':<34}{t_fb * 1e3:>12.1f}{t_fb / t_fwd:>9.2f}x{'<= 3.5x':>10}")
    if ab is None:
        print(f"{'abTEM (not installed)':<34}{'-':>12}{'-':>10}{'>= 2x':>10}")
    else:
        t_ab, diff = ab
        print(f"{'abTEM multislice, same potential':<34}{t_ab * 1e3:>12.1f}{t_ab / t_fwd:>9.2f}x{'>= 2x':>10}")
        print(f"exit wave vs abTEM: relative L2 difference {diff:.2e}")


if __name__ == "__main__":
    main()
