"""One refinement iteration (forward + backward + Adam step + projection) against one forward.

    python benchmarks/refine_speed.py [--device auto|cpu|cuda] [--shape 32 256 256]

Target (issue 5): one iteration on 256x256x32 costs <= 4x one forward pass of the multislice
model, for both parameterisations. Ratios are taken in one run, so they hold on a shared,
noisy machine where absolute times drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import best_time, pick_device  # noqa: E402

from stream3d.config import Config  # noqa: E402
from stream3d.refine.model import ImagingModel  # noqa: E402
from stream3d.refine.parameterisations import BoundedVoxels, SlabColumns  # noqa: E402
from stream3d.refine.regions import tile  # noqa: E402
from stream3d.refine.regularisers import total_variation  # noqa: E402


def iteration_timer(param, groups, model: ImagingModel, measured: torch.Tensor, settings):
    """A closure doing exactly what one optimiser iteration of stream3d.refine does."""
    optimiser = torch.optim.Adam(groups)

    def step():
        optimiser.zero_grad(set_to_none=True)
        volume = param.volume()
        data = (model.intensity(volume) - measured).square().mean()
        total = data + total_variation(volume, lateral=settings.tv_lateral, axial=settings.tv_axial)
        total.backward()
        optimiser.step()
        param.project()
        return float(data.detach())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 256, 256),
                        metavar=("NZ", "NY", "NX"))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; 1 on a loaded machine)")
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    nz, ny, nx = args.shape
    config = Config().replace("sample", slices=nz)
    model = ImagingModel.from_config(config)
    settings = config.refine
    rng = np.random.default_rng(0)
    height = torch.as_tensor(rng.uniform(150, 450, (ny, nx)), dtype=torch.float32, device=device)
    thickness = torch.as_tensor(rng.uniform(0, 80, (ny, nx)), dtype=torch.float32, device=device)
    slabs = SlabColumns(height, thickness, potential=5.0, nz=nz, dz=model.dz)
    slabs.attach_regions(tile(np.ones((ny, nx), np.int32), settings.region_size))
    voxels = BoundedVoxels(slabs.volume().detach(), potential=5.0, dz=model.dz, max_potential=1.5)
    with torch.no_grad():
        measured = model.intensity(slabs.volume()) + 0.01 * torch.randn(ny, nx, device=device)
        start = slabs.volume().detach()

    def forward():
        with torch.no_grad():
            return model.intensity(start)

    t_fwd = best_time(forward, device=device)
    t_slab = best_time(iteration_timer(slabs, slabs.fit_groups(settings.learning_rate), model,
                                       measured, settings), device=device)
    t_vox = best_time(iteration_timer(voxels, voxels.fit_groups(settings.voxel_learning_rate),
                                      model, measured, settings), device=device)
    print(f"refinement iteration, {nz}x{ny}x{nx} float32 on {device} "
          f"({torch.get_num_threads()} threads)")
    print(f"{'quantity':<44}{'time (ms)':>11}{'ratio':>9}{'target':>9}")
    print(f"{'forward (multislice + lens)':<44}{t_fwd * 1e3:>11.1f}{'':>9}{'':>9}")
    for name, t in (("iteration, slabs + region shifts", t_slab),
                    ("iteration, bounded voxels", t_vox)):
        print(f"{name:<44}{t * 1e3:>11.1f}{t / t_fwd:>8.2f}x{'<= 4x':>9}")


if __name__ == "__main__":
    main()
