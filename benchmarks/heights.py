"""Heights against their physical limit (issue 21): the Cramér-Rao bound of each object's height.

    python benchmarks/heights.py [--cases discs,discs_500,...] [--seeds 3] [--doses ...]
                                 [--out out/heights_vs_dose.png] [--skip-cases | --skip-dose]

Each speckle of the amorphous texture gives one exponential sample of its object's local power
spectrum; the Fisher information of those samples about the object's height,

    I(h) = sum_bins n_b (d mu_b / dh)^2 / mu_b^2     (texture strength and noise projected out)

with mu the expected windowed periodogram (texture spectrum measured from the frame, lens,
the object's footprint, thickness and height, shot noise at the frame's dose) and n_b the
independent samples per radial bin, bounds any unbiased height estimate: sigma_h >= I^-1/2.
It is evaluated at the true volume (:func:`stream3d.refine.spectral.whittle`).

1. The accuracy suite's disc cases: per object, the true height, pop-out's and the refined
   height errors (mass centre over the object's true footprint), and the bound.
2. One disc (r = 44 Å, 60 Å thick, 330 Å above the exit plane, 128 x 128 px) from 100 to
   1e5 e/Å²: pop-out's and the refined height error over ``--seeds`` noise and texture draws,
   the bound as a line; a PNG (log dose axis).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy as acc  # noqa: E402

from stream3d.config import Config  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.refine import Refiner, spectral  # noqa: E402
from stream3d.refine.heights import REGION  # noqa: E402
from stream3d.refine.measurement import measured_intensity  # noqa: E402
from stream3d.refine.model import ImagingModel  # noqa: E402
from stream3d.simulate import simulate_frame  # noqa: E402
from stream3d.specimen.geometry import slice_centres  # noqa: E402
from stream3d.specimen.shapes import Disc, discs  # noqa: E402

DISC_CASES = ("discs", "discs_500", "discs_100", "df1500", "overfocus", "absorb")
DOSES = (100.0, 300.0, 1000.0, 3000.0, 1e4, 3e4, 1e5)


def object_heights(volume: np.ndarray, labels: np.ndarray, dz: float) -> np.ndarray:
    """Mass-centre height (Å) of ``volume``'s material over each labelled footprint."""
    h = slice_centres(volume.shape[0], dz)
    out = []
    for label in range(1, int(labels.max()) + 1):
        mass = np.clip(volume[:, labels == label], 0, None).sum(axis=1)
        out.append(float((h * mass).sum() / mass.sum()) if mass.sum() > 0 else np.nan)
    return np.asarray(out)


def bounds(frame: np.ndarray, occupancy: np.ndarray, labels: np.ndarray, config: Config,
           texture: tuple[float, ...]) -> np.ndarray:
    """Cramér-Rao bound (Å) of each labelled object's height, at the true volume."""
    s = config.sample
    model = ImagingModel.from_config(config)
    dev = torch.device("cpu")
    measured = measured_intensity(frame, model, dev).double()
    occ = torch.as_tensor(occupancy, dtype=torch.float64)
    with torch.no_grad():
        modelled = model.intensity(occ.float() * s.potential).double()
    seen = (s.slices - np.arange(s.slices)) * s.slice_thickness
    lens = spectral.lens_from_config(config, texture)
    grow = spectral.grow_px(lens, seen, spectral.band(config))
    size = spectral.crop_size(s.pixel_size, REGION, labels.shape, grow)
    ys, xs = np.nonzero(labels)
    extent = max(np.ptp(ys), np.ptp(xs)) + 2 * grow + 8
    while size < extent and size < min(labels.shape):
        size *= 2
    regions = spectral.build_regions(measured - modelled, measured, labels, int(labels.max()),
                                     occ, seen, lens,
                                     counts_per_unit=model.counts_per_unit,
                                     band=spectral.band(config), size=min(size, *labels.shape),
                                     potential=s.potential)
    _, info, _ = spectral.whittle(torch.zeros(regions.count, dtype=torch.float64), regions)
    return (1.0 / info.clamp_min(1e-30).sqrt()).numpy()


def run_cases(names: list[str], seed: int) -> list[tuple]:
    rows = []
    for name in names:
        case = next(c for c in acc.CASES if c.name == name)
        index = [c.name for c in acc.CASES].index(name)
        config = acc.case_config(case, [*acc.BASE, "refine.device=cpu", "popout.threads=1"])
        s = config.sample
        rng = acc.case_seed(seed, index)
        truth = acc.SPECIMENS[case.specimen]((s.slices, 256, 256), s.sampling, rng)
        frame = acc.make_frame(truth.occupancy, acc.simulated(config, "gaussian"),
                               seed=int(rng.integers(2**31)))
        pop = popout(frame, config)
        refined = Refiner(config, torch.device("cpu")).refine(frame, pop)
        labels, _ = ndimage.label(truth.occupancy.sum(axis=0) > 0)
        true = object_heights(truth.occupancy, labels, s.slice_thickness)
        p = object_heights(pop.volume, labels, s.slice_thickness) - true
        r = object_heights(refined.volume, labels, s.slice_thickness) - true
        crb = bounds(frame, truth.occupancy, labels, config, pop.texture)
        for k in range(len(true)):
            rows.append((name, k + 1, true[k], p[k], r[k], crb[k]))
            print(f"{name:<10}{k + 1:>4}{true[k]:>9.1f}{p[k]:>+10.1f}{r[k]:>+10.1f}"
                  f"{crb[k]:>9.1f}{abs(r[k]) / crb[k]:>8.1f}", flush=True)
    return rows


def one_disc(dose: float, seed: int) -> tuple[float, float, float]:
    """(pop-out error, refined error, bound) Å of the single disc at ``dose`` e/Å²."""
    cfg = acc.case_config(acc.CASES[0], [*acc.BASE, "refine.device=cpu", "popout.threads=1",
                                        "simulate.ny=128", "simulate.nx=128",
                                        f"detector.dose={dose:g}"])
    s = cfg.sample
    occ = discs((s.slices, 128, 128), s.sampling, [Disc(64.0, 64.0, 44.0, 330.0, 60.0)])
    frame, _ = simulate_frame(occ, cfg, seed=seed)
    pop = popout(frame, cfg)
    refined = Refiner(cfg, torch.device("cpu")).refine(frame, pop)
    labels = (occ.sum(axis=0) > 0).astype(int)
    true = object_heights(occ, labels, s.slice_thickness)[0]
    p = object_heights(pop.volume, labels, s.slice_thickness)[0] - true
    r = object_heights(refined.volume, labels, s.slice_thickness)[0] - true
    return p, r, float(bounds(frame, occ, labels, cfg, pop.texture)[0])


def plot(doses, pop, ref, crb, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    d = np.asarray(doses)
    jitter = 1.06
    for values, label, marker, shift in ((pop, "pop-out", "s", 1 / jitter),
                                         (ref, "refined (spectral heights)", "o", jitter)):
        a = np.abs(np.asarray(values))
        for j in range(a.shape[1]):
            ax.plot(d * shift, np.maximum(a[:, j], 0.3), marker, ms=4, alpha=0.5,
                    color="C0" if label == "pop-out" else "C1",
                    label=label if j == 0 else None)
        ax.plot(d, np.sqrt((a**2).mean(axis=1)), "-", color="C0" if label == "pop-out" else
                "C1", lw=1.5, label=f"{label}: rms")
    c = np.asarray(crb).mean(axis=1)
    ax.plot(d, c, "k-", lw=2, label="Cramér-Rao bound (1 sigma)")
    ax.plot(d, 2 * c, "k--", lw=1, label="2 x bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dose (e/Å²)")
    ax.set_ylabel("|height error| (Å)")
    ax.set_title("one disc (r 44 Å, 60 Å thick, 330 Å high), defocus 2000 Å")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(DISC_CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3, help="draws per dose in the figure")
    parser.add_argument("--doses", default=",".join(f"{d:g}" for d in DOSES))
    parser.add_argument("--out", default="out/heights_vs_dose.png")
    parser.add_argument("--skip-cases", action="store_true")
    parser.add_argument("--skip-dose", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if not args.skip_cases:
        print(f"{'case':<10}{'obj':>4}{'true Å':>9}{'pop-out':>10}{'refined':>10}{'CRB Å':>9}"
              f"{'|r|/CRB':>8}")
        rows = run_cases([c for c in args.cases.split(",") if c], args.seed)
        r = np.array([abs(x[4]) for x in rows])
        p = np.array([abs(x[3]) for x in rows])
        c = np.array([x[5] for x in rows])
        found = np.isfinite(r)
        print(f"objects found: {found.sum()} of {len(r)} (a missed object has no height)")
        print(f"median |error| over found objects: pop-out {np.median(p[found]):.1f} Å, refined "
              f"{np.median(r[found]):.1f} Å; median bound {np.median(c[found]):.1f} Å; median "
              f"|refined| / bound {np.median(r[found] / c[found]):.2f} (issue 21: <= 2)")
    if not args.skip_dose:
        doses = [float(x) for x in args.doses.split(",")]
        pop, ref, crb = [], [], []
        for dose in doses:
            got = [one_disc(dose, seed) for seed in range(args.seeds)]
            pop.append([g[0] for g in got])
            ref.append([g[1] for g in got])
            crb.append([g[2] for g in got])
            print(f"dose {dose:>8g}: pop-out " + " ".join(f"{g[0]:+6.1f}" for g in got)
                  + "  refined " + " ".join(f"{g[1]:+6.1f}" for g in got)
                  + f"  bound {np.mean(crb[-1]):5.1f} Å", flush=True)
        plot(doses, pop, ref, crb, Path(args.out))
        print(f"figure: {args.out}")
    print(f"(wall time {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
