"""Pop-out on discs above a support membrane (issue 23, part 4): per-disc heights and IoU,
with the membrane handled (the reconstruction's config names it) and without (it does not),
beside the same discs imaged with no membrane at all ("no membrane").

    python benchmarks/membrane.py [--seeds 0,1,2] [--size 256] [--membrane 100]
                                  [--simulator ours|abtem] [--texture FAMILY]
                                  [--membrane-texture FAMILY] [--mtf] [--refine]
                                  [--json FILE]

The accuracy suite's optics (benchmarks/accuracy.py BASE: 300 kV, Cs 1 mm, 10 mrad, defocus
2000 Å, 2000 e/Å², no absorption, 32 x 20 Å slices); three discs at ~0.3 / 0.55 / 0.8 of the
cell depth (scattered laterally, seeded), an amorphous membrane (--material: carbon, 9 V, or a
potential in V; the discs are 5 V) of --membrane Å
whose bottom face is the exit plane. Both runs see the same frame; only the reconstruction's
``sample.membranes`` differs. Objects are scored without the membrane. For each disc: the
median pop-out height over its true footprint (where pop-out found material) minus the truth;
the share of the field outside the discs that pop-out calls material (the membrane read as an
object shows here).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import BASE, FAMILIES, INSITU_MTF, SIMULATORS, make_frame, simulated  # noqa: E402

from stream3d.config import Config, load  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.refine import Refiner  # noqa: E402
from stream3d.scoring.accuracy import accuracy  # noqa: E402
from stream3d.specimen import column_height, discs  # noqa: E402
from stream3d.specimen.suite_shapes import disc_items  # noqa: E402

#: Disc centre heights as fractions of the cell depth: all above a membrane up to ~130 Å.
HEIGHTS = (0.3, 0.55, 0.8)


def membrane_sets(thickness: float, family: str | None = None,
                  material: str = '"carbon"') -> list[str]:
    """--set of one membrane of ``thickness`` Å lying on the exit plane (``material``: a TOML
    literal, a name or V)."""
    extra = ""
    if family is not None:
        strength, length, spectrum = FAMILIES[family]
        extra = (f", texture = {strength}, texture_length = {length}, "
                 f'texture_spectrum = "{spectrum}"')
    return [f'sample.membranes=[{{material = {material}, height = {thickness / 2}, '
            f"thickness = {thickness}{extra}}}]"]


def per_disc(volume: np.ndarray, items, config: Config) -> tuple[list[float], list[float]]:
    """Each disc's median reconstructed column height over its true footprint minus its true
    height (Å; NaN where nothing was found there), and the share of its footprint found."""
    s = config.sample
    shape = volume.shape
    column = column_height(np.real(volume) / s.potential, s.slice_thickness)
    errors, shares = [], []
    for d in items:
        own = discs(shape, s.sampling, [d]).sum(axis=0) > 0
        found = column[own]
        shares.append(float(np.isfinite(found).mean()))
        found = found[np.isfinite(found)]
        errors.append(float(np.median(found)) - d.height if found.size else float("nan"))
    return errors, shares


def one_seed(seed: int, args) -> dict:
    sets = [*BASE, f"simulate.ny={args.size}", f"simulate.nx={args.size}", "popout.threads=1",
            "refine.device=cpu"]
    if args.mtf:  # the in situ suite's camera, known to the reconstruction too
        sets += [f"detector.{key}={value!r}".replace("'", '"')
                 for key, value in INSITU_MTF.items()]
    plain = load(None, sets)
    handled = load(None, [*sets, *membrane_sets(args.membrane, material=args.material)])
    truth_config = simulated(load(None, [*sets, *membrane_sets(
        args.membrane, args.membrane_texture, args.material)]), args.texture)
    s = plain.sample
    shape = (s.slices, args.size, args.size)
    rng = np.random.default_rng([seed, 23])
    items = disc_items(shape, s.sampling, rng, heights=HEIGHTS, jitter=0.02)
    occupancy = discs(shape, s.sampling, items)
    frame_seed = int(rng.integers(2**31))
    frame = make_frame(occupancy, truth_config, seed=frame_seed, simulator=args.simulator)
    # The same discs, texture and noise draw without a membrane: what handling should reach.
    bare = make_frame(occupancy, simulated(plain, args.texture), seed=frame_seed,
                      simulator=args.simulator)
    row = {"seed": seed, "truth": [d.height for d in items]}
    outside = occupancy.sum(axis=0) == 0
    for name, config, frame in (("no membrane", plain, bare), ("without", plain, frame),
                                ("with", handled, frame)):
        pop = popout(frame, config)
        volumes = {"popout": pop.volume}
        if args.refine:
            volumes["refined"] = Refiner(config, "cpu").refine(frame, pop).volume
        for kind, volume in volumes.items():
            m = accuracy(volume, occupancy, potential=s.potential, dz=s.slice_thickness)
            material = np.real(volume).sum(axis=0) > 0
            errors, shares = per_disc(volume, items, config)
            row[f"{kind} {name}"] = {
                "disc_errors": errors, "disc_found": shares, "iou": m.iou,
                "height_error": m.height_error, "false_material": float(material[outside].mean())}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--size", type=int, default=256, help="frame edge, px")
    parser.add_argument("--membrane", type=float, default=100.0, help="membrane thickness, Å")
    parser.add_argument("--material", default='"carbon"',
                        help='the membrane\'s material: a name ("carbon") or its potential in V')
    parser.add_argument("--simulator", choices=tuple(SIMULATORS), default="ours")
    parser.add_argument("--texture", choices=tuple(FAMILIES), default="gaussian",
                        help="the discs' texture family (simulator only)")
    parser.add_argument("--membrane-texture", choices=tuple(FAMILIES), default=None,
                        help="the membrane's texture family (default: the discs')")
    parser.add_argument("--mtf", action="store_true",
                        help="image with the in situ suite's scintillator MTF (and tell pop-out)")
    parser.add_argument("--refine", action="store_true", help="also refine (slow on a CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = []
    for seed in (int(v) for v in args.seeds.split(",")):
        row = one_seed(seed, args)
        rows.append(row)
        print(f"seed {seed}: truth " + " / ".join(f"{h:.0f}" for h in row["truth"]) + " Å")
        for key, r in row.items():
            if isinstance(r, dict):
                print(f"  {key:<16} disc errors " + " / ".join(f"{e:+6.0f}" for e in
                                                               r["disc_errors"])
                      + " Å (found " + "/".join(f"{100 * f:.0f}" for f in r["disc_found"])
                      + f" %)  IoU {r['iou']:.3f}  column height {r['height_error']:6.1f} Å"
                      f"  material outside the discs {100 * r['false_material']:.1f} %",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
