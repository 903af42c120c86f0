"""The README's main job, for now: one simulated HRTEM frame saved as PNG and MRC."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import torch

from stream3d.config import Config, to_toml
from stream3d.physics import detect, forward
from stream3d.specimen import occupancy_to_potential


def three_discs(shape: tuple[int, int, int], radius_px: float) -> np.ndarray:
    """Occupancy (z, y, x) of three discs, each 4 slices thick, at three different heights."""
    nz, ny, nx = shape
    occ = np.zeros(shape, dtype=np.float32)
    yy, xx = np.mgrid[:ny, :nx]
    centres = [(ny * 0.3, nx * 0.3), (ny * 0.3, nx * 0.7), (ny * 0.72, nx * 0.5)]
    tops = [nz // 8, nz // 2 - 2, nz - 6]
    for (cy, cx), top in zip(centres, tops):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2
        occ[top:top + 4, disc] = 1.0
    return occ


def run_demo(config: Config, out: str | Path, *, shape_yx: tuple[int, int] = (256, 256),
             seed: int = 0) -> list[Path]:
    """Simulate one frame at the config's optics and dose; write frame.png, frame.mrc, config.toml."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s, m = config.sample, config.microscope
    rng = np.random.default_rng(seed)
    occ = three_discs((s.slices, *shape_yx), radius_px=min(shape_yx) * 0.14)
    potential = torch.from_numpy(occupancy_to_potential(occ, s, rng=rng))
    intensity = forward(potential, sampling=s.sampling, energy=m.energy, defocus=m.defocus,
                        cs=m.cs, aperture=m.aperture, focal_spread=m.focal_spread,
                        astigmatism=m.astigmatism, astigmatism_angle=m.astigmatism_angle)
    gen = torch.Generator().manual_seed(seed)
    counts = detect(intensity, dose=config.detector.dose, pixel_size=s.pixel_size, generator=gen)
    frame = counts.numpy().astype(np.float32)

    mrc_path = out / "frame.mrc"
    with mrcfile.new(mrc_path, overwrite=True) as mrc:
        mrc.set_data(frame)
        mrc.voxel_size = s.pixel_size
    png_path = out / "frame.png"
    fig, ax = plt.subplots(figsize=(5.5, 5))
    extent = (0, shape_yx[1] * s.pixel_size / 10, shape_yx[0] * s.pixel_size / 10, 0)
    im = ax.imshow(frame, cmap="gray", extent=extent)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(f"{m.energy / 1e3:.0f} kV, defocus {m.defocus:.0f} Å, "
                 f"{config.detector.dose:.0f} e/Å²")
    fig.colorbar(im, ax=ax, label="counts / pixel")
    fig.savefig(png_path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    toml_path = out / "config.toml"
    toml_path.write_text(to_toml(config), encoding="utf-8")
    return [png_path, mrc_path, toml_path]
