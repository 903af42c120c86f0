"""Run stores and truth stores of known shapes for the analysis tests, made by the real writers
(stream3d.store.RunStore, stream3d.io.writers.TruthWriter)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream3d import config as config_mod
from stream3d.io.writers import TruthWriter
from stream3d.specimen import Disc, discs
from stream3d.store import RawFrame, RunStore, Status

NY = NX = 100
CFG = config_mod.load(None, ["sample.slices=32", "sample.slice_thickness=20",
                             "sample.pixel_size=1.0", "sample.potential=5.0"])
SHAPE = (CFG.sample.slices, NY, NX)
SAMPLING = CFG.sample.sampling
DT = 0.25  # s between frames


def growing_discs(t: int) -> list[Disc]:
    """Three discs at three heights whose radii grow every frame (Å)."""
    return [Disc(30.0, 28.0, 9.0 + 2.0 * t, 150.0, 60.0),
            Disc(31.0, 72.0, 11.0 + 1.5 * t, 330.0, 80.0),
            Disc(72.0, 50.0, 13.0 + 1.0 * t, 500.0, 100.0)]


def disc_volume_nm3(t: int) -> float:
    """Analytic material volume (nm³) of :func:`growing_discs` at frame t."""
    return sum(np.pi * d.radius**2 * d.thickness for d in growing_discs(t)) / 1000.0


def write_run(path: Path, statuses: Sequence[Status], *, close: bool = True,
              config: config_mod.Config = CFG) -> RunStore:
    """A run store whose frame t, when refined, holds the potential of growing_discs(t)."""
    store = RunStore.open(path, config)
    raw = np.full((NY, NX), 2000, np.uint16)
    store.append([RawFrame("series-1", 100 + t, 50.0 + DT * t, raw) for t in range(len(statuses))],
                 {"received": len(statuses)})
    for t, status in enumerate(statuses):
        if status == Status.REFINED:
            volume = discs(SHAPE, SAMPLING, growing_discs(t)) * config.sample.potential
            store.write_result(t, status=status, popout=volume, volume=volume, loss=0.01 * (t + 1))
        elif status != Status.PENDING:
            store.mark([t], status)
    counts = {"skipped": sum(s == Status.SKIPPED for s in statuses),
              "failed": sum(s == Status.FAILED for s in statuses)}
    store.set_counters(counts)
    if close:
        store.close()
    return store


def write_truth(path: Path, occupancies: Sequence[np.ndarray], *, frame_interval: float = DT,
                pixel_size: float = 1.0, written: int | None = None) -> Path:
    """A ground-truth store as ``stream3d simulate`` writes it; only the first ``written``
    frames are filled (a simulation still running)."""
    nz, ny, nx = occupancies[0].shape
    cfg = CFG.replace("simulate", frames=len(occupancies), ny=ny, nx=nx,
                      frame_interval=frame_interval).replace("sample", slices=nz,
                                                                   pixel_size=pixel_size)
    writer = TruthWriter(path, cfg)
    for t, occ in enumerate(occupancies[:written]):
        writer.write(t, occ, occ * cfg.sample.potential, (0.0, 0.0))
    return path
