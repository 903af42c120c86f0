"""The library behind the ``reconstruct``, ``live`` and ``camera`` commands (cli.py stays thin)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.io.dose import is_auto
from stream3d.io.movies import open_movie
from stream3d.io.replay import prepare_replay
from stream3d.store import Status, check_out_path, native_dtype, open_run
from stream3d.stream.camera import Camera, CameraReport, Faults, play
from stream3d.stream.compute import Stages, check_frames_fit
from stream3d.stream.curve import client_from_config, server_from_config
from stream3d.stream.pipeline import RunOptions, Summary, run_pipeline
from stream3d.stream.pixel_mask import stages_for_store
from stream3d.stream.sources import (FileSource, NoSource, ZmqSource, check_host_resolves,
                                     endpoint)
from stream3d.stream.status import live_status
from stream3d.view import view_for

log = logging.getLogger("stream3d.stream")


@contextlib.contextmanager
def interrupts_as_stop() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) and SIGTERM set the yielded event instead of raising wherever the main
    thread happens to be (start-up included): the run notices it, stops like at its end
    (consistent store, summary) and reports itself interrupted. A second signal forces
    KeyboardInterrupt for a run that does not stop."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (e.g. called from a test thread): leave them
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_config(out: str | Path, path: str | Path | None, overrides: Sequence[str]) -> Config:
    """The config a run uses: resuming an existing run store, the store's own config (keys
    this version knows) amended by ``--set``; with ``--config FILE`` or a new store, the file
    (or the defaults) amended by ``--set``."""
    from stream3d import config as config_mod

    stored = _stored_config(Path(out))
    if path is not None or stored is None:
        return config_mod.load(path, overrides)
    known = config_mod.Config().to_dict()
    data = {section: {k: v for k, v in (stored.get(section) or {}).items() if k in keys}
            for section, keys in known.items()}
    for text in overrides:
        section, key, value = config_mod.parse_override(text)
        data.setdefault(section, {})[key] = value
    return config_mod.from_dict(data)


def _stored_config(out: Path) -> dict | None:
    try:
        meta = json.loads((out / "zarr.json").read_text(encoding="utf-8"))
        stored = meta["attributes"]["stream3d"]["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stored if isinstance(stored, dict) else None


def reconstruct(movie: str | Path, out: str | Path, config: Config, *,
                scheduler: str | None = None, max_frames: int | None = None,
                show_status: bool = True, stages: Stages | None = None,
                record_only: bool = False) -> Summary:
    """Replay ``movie`` into the run store ``out`` (resuming it when it exists).

    When ``movie`` is the store ``out`` itself, no frame is added: its pending, skipped and
    failed frames are reconstructed in place. ``record_only``: import the raw frames only.
    """
    movie, out = Path(movie), Path(out)
    in_place = out.exists() and movie.resolve() == out.resolve()
    if in_place:
        stored = open_run(out)
        if "frames" in stored.array_keys():
            check_frames_fit(stored["frames"].shape[1:], config)
        # A DECTRIS run's masked pixels stay excluded; dose "auto" is taken from the frames.
        stages = stages_for_store(out, stages, auto_dose=is_auto(config))
        source, total = NoSource(), None
        options = RunOptions(scheduler=scheduler,
                             redo=(Status.PENDING, Status.SKIPPED, Status.FAILED))
    else:
        config = prepare_replay(movie, config)  # the file's calibrations; dose checked
        _check_movie_fits(movie, out, config, reconstruct=not record_only)
        source = FileSource(movie, frame_interval=config.stream.frame_interval)
        total = len(source)
        options = RunOptions(scheduler=scheduler, max_frames=max_frames,
                             reconstruct=not record_only)
    monitor = (lambda snap: live_status(snap, total=total)) if show_status else None
    with interrupts_as_stop() as stop:
        return run_pipeline(source, out, config, options=options, stages=stages, monitor=monitor,
                            interrupt=stop)


def check_live_options(connect: str | None, bind: str | None, max_frames: int | None,
                       idle_timeout: float | None) -> None:
    """One clear error for live options that cannot work (any wire protocol)."""
    if (connect is None) == (bind is None):
        raise UserError("give exactly one of --connect ADDRESS or --bind ADDRESS")
    if max_frames is not None and max_frames < 1:
        raise UserError("--max-frames must be >= 1")
    if idle_timeout is not None and idle_timeout <= 0:
        raise UserError("--idle-timeout must be > 0 s")


def live(out: str | Path, config: Config, *, connect: str | None = None, bind: str | None = None,
         pattern: str = "sub", scheduler: str | None = None, max_frames: int | None = None,
         idle_timeout: float | None = None, record_only: bool = False, show_status: bool = True,
         stages: Stages | None = None) -> Summary:
    """Receive frames from a detector (native protocol) into the run store ``out``.

    ``record_only``: persist raw frames only (status pending), to reconstruct later with
    ``reconstruct RUN --out RUN``."""
    check_live_options(connect, bind, max_frames, idle_timeout)
    if connect is not None:
        check_host_resolves(endpoint(connect))
    source = ZmqSource(connect or bind, pattern=pattern, bind=bind is not None,
                       hwm=config.stream.hwm, curve=server_from_config(config.stream))
    options = RunOptions(scheduler=scheduler, max_frames=max_frames, idle_timeout=idle_timeout,
                         reconstruct=not record_only)
    monitor = (lambda snap: live_status(snap)) if show_status else None
    with interrupts_as_stop() as stop:
        return run_pipeline(source, out, config, options=options, stages=stages, monitor=monitor,
                            interrupt=stop)


def camera(movie: str | Path, config: Config, *, address: str, pattern: str = "pub",
           bind: bool = True, fps: float = 10.0, series: int = 1, faults: Faults = Faults(),
           wait: float = 10.0, repeat: int = 1) -> CameraReport:
    """Play ``movie`` as a detector would; the start message carries the config's optics."""
    if fps < 0:
        raise UserError("--fps must be >= 0 (0 = as fast as the receiver takes frames)")
    if repeat < 1:
        raise UserError("--repeat must be >= 1")
    frames = open_movie(movie)
    meta = {k: v for k, v in config.to_dict().items() if k in ("microscope", "sample", "detector")}
    with interrupts_as_stop() as stop:
        cam = Camera(address, pattern=pattern, bind=bind, wait=wait, hwm=config.stream.hwm,
                     curve=client_from_config(config.stream))
        try:
            return play(frames, cam, fps=fps, series=series, faults=faults, meta=meta,
                        repeat=repeat, stop=stop)
        finally:
            cam.close(linger=1.0 if stop.is_set() else None)
            frames.close()


def _check_movie_fits(movie: Path, out: Path, config: Config, *, reconstruct: bool = True) -> None:
    """One clear error when the movie's frames cannot go into an existing store; a warning
    when its recorded pixel size differs from the config's."""
    frames = open_movie(movie)
    try:
        size = frames.pixel_size
        first = frames[0] if len(frames) else None
    finally:
        frames.close()
    check_out_path(out)
    if first is not None and (out / "zarr.json").exists():
        stored = open_run(out)
        if "frames" in stored.array_keys():
            shape, dtype = stored["frames"].shape[1:], stored["frames"].dtype
            if first.shape != shape or native_dtype(first.dtype) != native_dtype(dtype):
                raise UserError(f"movie {movie} has {first.dtype} {first.shape} frames, the run "
                                f"store {out} holds {dtype} {shape}: use a new --out")
    if first is not None:
        view_for(config, first.shape)  # the ROI lies inside the frame (the store's volumes)
    if first is not None and reconstruct:  # raw frames alone fit whatever popout.patch is
        check_frames_fit(first.shape, config)
    if size is not None and abs(size - config.sample.pixel_size) > 0.01 * config.sample.pixel_size:
        log.warning("movie %s records %.4g Å/pixel, the config says sample.pixel_size = %.4g Å; "
                    "reconstructing with the config", movie, size, config.sample.pixel_size)
