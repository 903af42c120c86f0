"""Tracking against the simulated truth: objects, birth frames, volumes, tip speeds.

For each folder written by ``stream3d simulate`` (movie.mrc, truth.zarr, config.toml), and
optionally reconstructed into run.zarr beside it, this analyses the truth store and the run
(``stream3d analyze``) and prints, per truth track, its birth frame and the matching run
track's, and per frame the volumes of truth, run and (growing discs) the analytic disc; for a
dendrite, each tip's speed against the simulated growth (Å per frame) from the dendrite model.

    python benchmarks/tracking.py SIMDIR [SIMDIR ...] [--out FOLDER]

Run it with `nice -n 10`; a 12-frame 128² movie takes about a minute on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from stream3d import config as config_mod
from stream3d.analysis.analyze import analyze
from stream3d.specimen.catalog import build_specimen
from stream3d.specimen.growing import GrowingDiscs, disc_volume


def _match(truth_rows, run_rows):
    """Run track of each truth track: the one whose first object lies nearest (laterally)."""
    out = {}
    for tid in sorted({r.track for r in truth_rows}):
        first = next(r for r in truth_rows if r.track == tid)
        cands = [r for r in run_rows if r.frame >= first.frame]
        if not cands:
            out[tid] = None
            continue
        best = min(cands, key=lambda r: (math.hypot(r.centroid_y_nm - first.centroid_y_nm,
                                                    r.centroid_x_nm - first.centroid_x_nm),
                                         r.frame))
        out[tid] = best.track
    return out


def _volumes(rows, track):
    return {r.frame: r.volume_nm3 for r in rows if r.track == track}


def _nearest_volumes(truth_rows, track, run_objects):
    """Per frame, the volume of the run object nearest (3D centroid) to the truth track's."""
    out = {}
    for r in truth_rows:
        if r.track != track:
            continue
        same = [o for o in run_objects if o.frame == r.frame]
        if same:
            o = min(same, key=lambda o: math.dist((o.centroid_z_nm, o.centroid_y_nm, o.centroid_x_nm),
                                                  (r.centroid_z_nm, r.centroid_y_nm, r.centroid_x_nm)))
            out[r.frame] = o.volume_nm3
    return out


def report_tracks(name: str, truth, run, specimen) -> None:
    print(f"\n## {name}: objects and tracks")
    print(f"truth: {len(truth.tracks)} tracks; run: "
          + (f"{len(run.tracks)} tracks" if run else "no run"))
    match = _match(truth.track_rows, run.track_rows) if run else {}
    print("| truth track | born (truth) | run track | born (run) | frames (truth / run) |")
    print("|---|---|---|---|---|")
    for tr in truth.tracks:
        rt = next((t for t in run.tracks if t.id == match.get(tr.id)), None) if run else None
        print(f"| {tr.id} | {tr.frames[0]} | {rt.id if rt else '-'} | "
              f"{rt.frames[0] if rt else '-'} | {len(tr.frames)} / {len(rt.frames) if rt else '-'} |")
    print("\nrun nm³: the run's object nearest the truth track's centroid in that frame")
    print("| frame | track | truth nm³ | analytic nm³ | run nm³ | run / truth |")
    print("|---|---|---|---|---|---|")
    for tr in truth.tracks:
        tv = _volumes(truth.track_rows, tr.id)
        rv = _nearest_volumes(truth.track_rows, tr.id, run.objects) if run else {}
        for f in sorted(tv):
            exact = ""
            if isinstance(specimen, GrowingDiscs):
                k = tr.id - 1
                exact = f"{disc_volume(specimen.radius(k, f), specimen.items[k].thickness) / 1e3:.1f}"
            ratio = f"{rv[f] / tv[f]:.3f}" if f in rv else ""
            print(f"| {f} | {tr.id} | {tv[f]:.1f} | {exact} | "
                  f"{rv.get(f, float('nan')):.1f} | {ratio} |")


def report_tips(name: str, analysis, specimen, label: str) -> None:
    """Measured tip speeds against the model's growing tips (Å per frame)."""
    if not hasattr(specimen, "branches"):
        return
    growth = specimen.params.growth
    print(f"\n## {name} ({label}): tips, simulated growth {growth:g} Å per frame while a branch grows")
    print("| tip | frames | fitted speed Å/frame | median step Å/frame | nearest model tip growing? |")
    print("|---|---|---|---|---|")
    for v in analysis.tip_velocities:
        if v.frames < 3:
            continue
        rows = [r for r in analysis.tips if r.tip == v.tip]
        last = rows[-1]
        p = np.array([last.z_nm, last.y_nm, last.x_nm]) * 10
        clock = specimen.clock(last.frame)
        best, grow = math.inf, ""
        for b in specimen.branches:
            pts = b.grown(clock)
            if len(pts) == 0:
                continue
            d = float(np.linalg.norm(pts[-1] - p))
            if d < best:
                growing = b.birth < clock - growth and clock - growth - b.birth < b.arc[-1]
                best, grow = d, f"{'yes' if growing else 'no (finished)'} ({d:.0f} Å away)"
        print(f"| {v.tip} | {v.first_frame}-{v.last_frame} | {v.speed_A_per_frame:.1f} | "
              f"{v.step_A_per_frame:.1f} | {grow} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sims", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/tracking"))
    args = parser.parse_args()
    for sim in args.sims:
        cfg = config_mod.load(sim / "config.toml")
        specimen = build_specimen(cfg)
        name = f"{sim.name} ({cfg.simulate.specimen})"
        truth = analyze(sim / "truth.zarr", args.out / sim.name / "truth")
        run = None
        if (sim / "run.zarr").exists():
            run = analyze(sim / "run.zarr", args.out / sim.name / "run",
                          like=args.out / sim.name / "truth", truth=sim / "truth.zarr")
        report_tracks(name, truth, run, specimen)
        report_tips(name, truth, specimen, "truth store")
        if run:
            report_tips(name, run, specimen, "reconstruction")


if __name__ == "__main__":
    main()
