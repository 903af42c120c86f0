"""``live --protocol dectris`` and ``camera --protocol dectris``: the library behind the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.io.movies import open_movie
from stream3d.stream.camera import Camera, CameraReport, Faults
from stream3d.stream.commands import check_live_options, interrupts_as_stop
from stream3d.stream.compute import Stages
from stream3d.stream.dectris_camera import StreamFormat, play_dectris
from stream3d.stream.dectris_source import DectrisSource, dectris_endpoint
from stream3d.stream.pipeline import RunOptions, Summary, _load_default_stages, run_pipeline
from stream3d.stream.pixel_mask import RuleHolder, masked_stages
from stream3d.stream.sources import check_host_resolves
from stream3d.stream.status import live_status


@dataclass
class DectrisSummary:
    """The run's summary, and the run stores of series with other frames (raw, pending)."""

    summary: Summary
    side_stores: list[Path] = field(default_factory=list)


def live(out: str | Path, config: Config, *, connect: str | None = None, bind: str | None = None,
         scheduler: str | None = None, max_frames: int | None = None,
         idle_timeout: float | None = None, record_only: bool = False, show_status: bool = True,
         stages: Stages | None = None) -> DectrisSummary:
    """Receive SIMPLON stream v2 from a DECTRIS detector into the run store ``out``.

    A detector arms series after series, so the run goes on across series ends: it stops on
    Ctrl-C, ``max_frames`` or ``idle_timeout`` s without a message."""
    check_live_options(connect, bind, max_frames, idle_timeout)
    if connect is not None:
        check_host_resolves(dectris_endpoint(connect))
    holder = RuleHolder()
    source = DectrisSource(dectris_endpoint(connect or bind), config, out=out,
                           bind=bind is not None, holder=holder)
    if not record_only:
        stages = masked_stages(stages or _load_default_stages(), holder)
    options = RunOptions(scheduler=scheduler, max_frames=max_frames, idle_timeout=idle_timeout,
                         reconstruct=not record_only, stop_on_end=False)
    monitor = (lambda snap: live_status(snap)) if show_status else None
    with interrupts_as_stop() as stop:
        summary = run_pipeline(source, out, config, options=options, stages=stages,
                               monitor=monitor, interrupt=stop)
    return DectrisSummary(summary, list(source.side_paths))


def camera(movie: str | Path, config: Config, *, address: str, fps: float = 10.0,
           series: int = 1, faults: Faults = Faults(), fmt: StreamFormat = StreamFormat(),
           wait: float = 10.0, repeat: int = 1, bind: bool = True) -> CameraReport:
    """Play ``movie`` as a DECTRIS detector would: PUSH, bound (like a DCU) unless ``bind``
    is False."""
    if fps < 0:
        raise UserError("--fps must be >= 0 (0 = as fast as the receiver takes frames)")
    if repeat < 1:
        raise UserError("--repeat must be >= 1")
    fmt.check()
    frames = open_movie(movie)
    cam = Camera(dectris_endpoint(address), pattern="push", bind=bind, wait=wait,
                 hwm=config.stream.hwm)
    try:
        return play_dectris(frames, cam, fps=fps, series=series, faults=faults, fmt=fmt,
                            repeat=repeat)
    finally:
        cam.close()
        frames.close()
