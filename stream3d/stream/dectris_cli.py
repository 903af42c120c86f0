"""The DECTRIS halves of the ``live`` and ``camera`` commands (cli.py only dispatches here)."""

from __future__ import annotations

from pathlib import Path

import typer

from stream3d.config import Config
from stream3d.errors import UserError


def _check(protocol: str) -> None:
    if protocol not in ("native", "dectris"):
        raise UserError(f"--protocol {protocol!r} must be native or dectris")


def run_live(out: Path, config: Config, protocol: str, *, connect: str | None,
             bind: str | None, scheduler: str | None, max_frames: int | None,
             idle_timeout: float | None, record_only: bool, quiet: bool) -> None:
    """``live --protocol dectris``: run, print the summary and where other series went."""
    from stream3d.stream.dectris_commands import live
    from stream3d.stream.status import exit_code, render_summary

    _check(protocol)
    result = live(out, config, connect=connect, bind=bind, scheduler=scheduler,
                  max_frames=max_frames, idle_timeout=idle_timeout, record_only=record_only,
                  show_status=not quiet)
    typer.echo(render_summary(result.summary))
    for path in result.side_stores:
        typer.echo(f"a series with other frame size or dtype went to {path} (raw frames; "
                   f"reconstruct with: stream3d reconstruct {path} --out {path})")
    raise typer.Exit(exit_code(result.summary))


def run_camera(movie: Path, config: Config, protocol: str, *, endpoint: str, fps: float,
               connect: bool, series: int, drop: str, duplicate: str, corrupt: str,
               restart_after: int | None, wait: float, repeat: int, channels: int,
               compression: str) -> None:
    """``camera --protocol dectris``: play the movie as stream v2 and report what was sent."""
    from stream3d.stream.camera import Faults, parse_frames
    from stream3d.stream.dectris_camera import StreamFormat, parse_kinds
    from stream3d.stream.dectris_commands import camera

    _check(protocol)
    faults = Faults(drop=parse_frames(drop), duplicate=parse_frames(duplicate),
                    corrupt=parse_kinds(corrupt), restart_after=restart_after)
    report = camera(movie, config, address=endpoint, fps=fps, series=series, faults=faults,
                    fmt=StreamFormat(channels=channels, compression=compression), wait=wait,
                    repeat=repeat, bind=not connect)
    corrupted = sum(report.corrupted.values())
    typer.echo(f"sent {report.frames} images of series {report.series} as DECTRIS stream v2 "
               f"({compression}, {channels} channel{'s' if channels > 1 else ''}) in "
               f"{report.seconds:.1f} s ({report.dropped} dropped, {report.duplicated} "
               f"duplicated, {corrupted} malformed)")
