"""One pipeline, whatever the source (docs/architecture.md data flow)::

    source -> ingest thread (validate, count) -> writer thread (raw frame persisted, always)
                                                     |  backlog (indices; pixels up to stream.queue)
                          main thread: dask pop-out window -> refine on the torch device
                                                     |
                                       writer thread: volumes, status, counters -> run store

The writer thread is the store's only owner. The run stops on the source's end, --max-frames,
--idle-timeout or Ctrl-C; every way out closes the store consistently (raw frames queued are
persisted, consolidated metadata written). Frames not reconstructed stay pending (status 0) and
are reconstructed when the same command runs again on the same store.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.store import COUNTERS, RunStore, Status
from stream3d.stream.backlog import Backlog
from stream3d.stream.cluster import dask_client
from stream3d.stream.compute import Reconstructor, Stages, default_stages
from stream3d.stream.ingest import Ingest
from stream3d.stream.sources import Source
from stream3d.stream.tracker import Tracker
from stream3d.stream.writer import Writer, WriterError

log = logging.getLogger("stream3d.stream")


@dataclass(frozen=True)
class RunOptions:
    """How a run starts and stops (the config says how frames are reconstructed)."""

    scheduler: str | None = None  # tcp://host:port of a dask scheduler; None = embedded
    max_frames: int | None = None  # stop receiving after this many frames (this session)
    idle_timeout: float | None = None  # s without a valid message -> stop receiving
    stop_on_end: bool = True  # stop on the `end` of the latest started series
    redo: tuple[Status, ...] = (Status.PENDING,)  # stored frames to reconstruct at start
    reconstruct: bool = True  # False: record raw frames only (all stay pending)


@dataclass(frozen=True)
class Snapshot:
    """What the status line shows, taken at one instant."""

    received: int
    malformed: int
    gaps: int
    duplicates: int
    reconstructed: int
    skipped: int
    failed: int
    lag: int  # frames persisted but not reconstructed yet (backlog + pop-outs in flight)
    ingest_fps: float
    recon_fps: float
    idle_s: float
    elapsed_s: float
    stored: int
    reconstructing: bool = True  # False when recording raw frames only
    live: bool = True  # a detector source: silence means the sender is quiet (not a replay)
    shift: tuple[float, float] | None = None  # Å (y, x), latest refined frame's drift
    defocus: float | None = None  # Å, latest refined frame's tracked lens defocus


@dataclass
class Summary:
    """The end of a run: the store's content and what this session did."""

    path: Path
    stored: int
    counters: dict[str, int]
    statuses: dict[str, int]
    malformed_kinds: dict[str, int]
    session_received: int
    session_reconstructed: int
    elapsed_s: float
    reason: str
    interrupted: bool
    seconds_per_frame: list[float] = field(default_factory=list)  # s, the latest 4096 frames
    stalls: int = 0
    spilled: int = 0
    ingest_seconds: float = 0.0  # first frame received -> last frame persisted (this session)
    shape: tuple[int, ...] | None = None  # (t, z, y, x) of the volume array
    first_failure: str = ""  # "frame t: why" of the first frame that failed this session

    @property
    def ingest_fps(self) -> float:
        """Frames received and persisted raw per second in this session."""
        return self.session_received / self.ingest_seconds if self.ingest_seconds > 0 else 0.0


class Pipeline:
    """A run of ``source`` into the run store at ``out`` (created, or resumed)."""

    def __init__(self, source: Source, out: str | Path, config: Config, *,
                 options: RunOptions = RunOptions(), stages: Stages | None = None,
                 interrupt: threading.Event | None = None) -> None:
        self.source, self.out, self.config, self.options = source, Path(out), config, options
        self.stages = stages
        # Set by a signal handler (Ctrl-C, SIGTERM): the run stops at its next check.
        self.interrupt = interrupt or threading.Event()
        self._started = time.monotonic()
        self._ingest: Ingest | None = None
        self._recon: Reconstructor | None = None
        self._backlog: Backlog | None = None
        self._writer: Writer | None = None
        self._refined_before = 0
        self._closing = False

    def run(self, monitor: Callable[[Callable[[], Snapshot]], AbstractContextManager] | None = None
            ) -> Summary:
        """Run to the end; ``monitor(snapshot)`` is entered for the duration (a status line).

        A start refused after this run created the store (a bad device, a tile too small for
        the optics, an unreachable scheduler) removes the still empty store, so that the
        corrected command is not refused as a resume with other optics (docs/architecture.md: exit 2,
        nothing written)."""
        created = not (self.out / "zarr.json").exists()
        store = RunStore.open(self.out, self.config)
        try:
            return self._run(store, monitor)
        except BaseException:
            if created and len(store) == 0:
                store.release()
                shutil.rmtree(self.out, ignore_errors=True)
            raise

    def _run(self, store: RunStore,
             monitor: Callable[[Callable[[], Snapshot]], AbstractContextManager] | None
             ) -> Summary:
        stages = self.stages or (_load_default_stages() if self.options.reconstruct else None)
        self._refined_before = store.status_counts()[Status.REFINED]
        spec = (store.frame_shape, store.frame_dtype) if store.frame_shape else None
        tracker = Tracker(seen=store.seen(), counters=store.counters, frame_spec=spec)
        self.source.resume(store.seen())
        backlog = self._backlog = Backlog(self.config.stream.queue)
        if self.options.reconstruct:
            backlog.extend(store.indices(*self.options.redo))

        def hand_over(ts, frames):
            if self.options.reconstruct:
                for t, f in zip(ts, frames):
                    backlog.add(t, f.data)

        s = self.config.stream
        writer = self._writer = Writer(store, queue_size=s.queue, batch=s.write_batch,
                                       on_appended=hand_over)
        ingest = self._ingest = Ingest(self.source, tracker, writer, self.config,
                                       stop_on_end=self.options.stop_on_end,
                                       max_frames=self.options.max_frames,
                                       idle_timeout=self.options.idle_timeout)
        writer.start()
        try:
            with (dask_client(self.options.scheduler, threads=s.window)
                  if self.options.reconstruct else nullcontext()) as client, \
                    torch_threads(self._refine_threads()):
                if self.options.reconstruct:
                    self._recon = Reconstructor(self.config, stages, client, writer, backlog,
                                                store.counters,
                                                live=bool(getattr(self.source, "live", True)))
                ingest.start()
                with (monitor(self.snapshot) if monitor else nullcontext()):
                    try:
                        self._compute()
                    except KeyboardInterrupt:
                        self.interrupt.set()
                    finally:
                        ingest.stop("interrupted")
                        if self._recon is not None:
                            self._recon.cancel()
                        ingest.join()
        finally:
            ingest.stop("stopped")
            ingest.join()
            try:
                writer.close()  # persists every queued raw frame, then consolidates
            finally:
                store.release()  # the writer lock, also when writing failed
        if ingest.error is not None:
            raise ingest.error if isinstance(ingest.error, (UserError, OSError)) else \
                UserError(f"ingest failed: {ingest.error}")
        interrupted = self.interrupt.is_set()
        if interrupted:
            log.warning("interrupted: stopped; frames not reconstructed stay pending in the store")
        return self._summary(store, tracker, interrupted)

    def _refine_threads(self) -> int | None:
        """CPU threads for torch: oversubscribed cores make torch's parallel regions wait on
        descheduled threads (measured 10x slower refinement beside pop-out on 2 cores)."""
        if not self.options.reconstruct:
            return None
        return refine_threads(self.config)

    def _compute(self) -> None:
        if self._recon is not None:
            self._recon.run(keep_going=self._keep_going)
            return
        while self._keep_going() and not self._backlog.finished:  # record only
            if self._ingest.done.is_set():
                # The writer is draining: poll gently. A wait on the already-set event would
                # spin, holding the GIL the writer needs (measured 5x slower ingest).
                time.sleep(0.02)
            else:
                self._ingest.done.wait(0.1)

    def _keep_going(self) -> bool:
        """Checked by compute between steps: closes the backlog once ingest is done."""
        writer, ingest, backlog = self._writer, self._ingest, self._backlog
        writer.raise_if_failed()
        if self.interrupt.is_set():
            return False
        if ingest.done.is_set() and not self._closing:
            self._closing = True
            # Queued after every raw frame ingest sent: the backlog closes once they are in it.
            writer.call(lambda _store: backlog.close())
        if ingest.error is not None:
            return False
        return True

    def snapshot(self) -> Snapshot:
        ingest, recon, backlog, writer = self._ingest, self._recon, self._backlog, self._writer
        c = dict(ingest.tracker.counters) if ingest else {}
        rc = recon.counters if recon else {"skipped": 0, "failed": 0}
        elapsed = time.monotonic() - self._started
        refined = recon.refined if recon else 0
        recent = list(recon.seconds)[-10:] if recon else []
        return Snapshot(
            received=c.get("received", 0), malformed=c.get("malformed", 0),
            gaps=c.get("gaps", 0), duplicates=c.get("duplicates", 0),
            reconstructed=self._refined_before + refined, skipped=rc["skipped"],
            failed=rc["failed"],
            lag=(len(backlog) if backlog else 0) + (recon.inflight if recon else 0),
            ingest_fps=(ingest.frames / elapsed) if ingest and elapsed > 0 else 0.0,
            recon_fps=(len(recent) / sum(recent)) if recent and sum(recent) > 0 else 0.0,
            idle_s=ingest.idle_seconds if ingest else 0.0, elapsed_s=elapsed,
            stored=writer.persisted if writer else 0, reconstructing=self.options.reconstruct,
            live=bool(getattr(self.source, "live", True)),
            shift=recon.insitu.latest_shift if recon else None,
            defocus=recon.insitu.latest_defocus if recon else None)

    def _summary(self, store: RunStore, tracker: Tracker, interrupted: bool) -> Summary:
        statuses = {s.name.lower(): n for s, n in store.status_counts().items()}
        return Summary(
            path=self.out, stored=len(store), counters={k: store.counters[k] for k in COUNTERS},
            statuses=statuses, malformed_kinds=dict(tracker.by_kind),
            session_received=self._ingest.frames,
            session_reconstructed=self._recon.refined if self._recon else 0,
            elapsed_s=time.monotonic() - self._started,
            reason="interrupted (Ctrl-C)" if interrupted else (self._ingest.reason or "done"),
            interrupted=interrupted,
            seconds_per_frame=list(self._recon.seconds) if self._recon else [],
            stalls=self._writer.stalls, spilled=self._backlog.spilled,
            ingest_seconds=_span(self._ingest.first_at, self._writer.last_append_at),
            shape=(len(store), *store.volume_shape) if store.volume_shape else None,
            first_failure=self._recon.first_failure if self._recon else "")


def refine_threads(config: Config) -> int:
    """torch CPU threads for refinement: ``stream.torch_threads``, or all cores but one (left
    to ingest, the writer and pop-out)."""
    if config.stream.torch_threads:
        return config.stream.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``n`` for the duration (None: unchanged)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _span(start: float | None, end: float | None) -> float:
    return end - start if start is not None and end is not None and end > start else 0.0


def _load_default_stages() -> Stages:
    try:
        return default_stages()
    except ImportError as exc:
        raise UserError(f"the reconstruction stages are not available: {exc}") from None


def run_pipeline(source: Source, out: str | Path, config: Config, *,
                 options: RunOptions = RunOptions(), stages: Stages | None = None,
                 monitor: Callable[[Callable[[], Snapshot]], AbstractContextManager] | None = None,
                 interrupt: threading.Event | None = None) -> Summary:
    """Run ``source`` through pop-out and refinement into the run store ``out``; setting
    ``interrupt`` stops it (as Ctrl-C does) with a consistent store and a summary."""
    try:
        return Pipeline(source, out, config, options=options, stages=stages,
                        interrupt=interrupt).run(monitor)
    except WriterError as exc:
        raise UserError(str(exc)) from None
