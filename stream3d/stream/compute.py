"""Compute: pop-out on dask (a bounded window of frames in flight), then refinement of each
frame in order on the torch device, warm-started from the previous volume.

Policies (``stream.policy``):

* ``all``: every frame, oldest first. Up to ``stream.window`` pop-out tasks run ahead of the
  refiner; frames beyond the backlog's RAM share are read back from the store.
* ``latest``: after each frame, jump to the newest persisted frame; the frames passed over are
  marked skipped (status 2). One pop-out runs ahead, so pop-out and refinement still overlap.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stream3d.config import Config
from stream3d.errors import UserError, reason
from stream3d.store import COMPUTE_COUNTERS, Status
from stream3d.stream.backlog import Backlog
from stream3d.stream.cluster import gpu_workers
from stream3d.stream.insitu import FramePlan, InSitu
from stream3d.stream.writer import Writer

log = logging.getLogger("stream3d.stream")

SECONDS_KEPT = 4096  # per-frame times kept for the summary (the latest ones)
# Pop-out task keys cycle through this many names (at least 4 x the frames in flight): dask
# caches key_split() for 100,000 distinct keys (~0.3 kB each), so a key per frame grew a live
# run by ~30 MB before that cache filled (the soak by ~3 kB per 1,000 frames). A name comes
# back only after at least 63 more pop-outs were submitted and waited on, long after its
# future was released and the scheduler forgot it; the uuid keeps runs sharing a scheduler
# apart.
POPOUT_KEYS = 64
# Frames waiting (backlog + pop-outs in flight) at which a live run under policy "all" is
# warned, once, that it falls behind (at least 4 x stream.window).
BEHIND_FRAMES = 20


class RefinerLike(Protocol):
    def refine(self, frame: np.ndarray, popout: Any) -> Any: ...


@dataclass(frozen=True)
class Stages:
    """The two compute stages: ``popout(frame, config)`` (a picklable top-level function, run
    as a dask task) and ``refiner(config, device)`` building the sequential warm-started refiner
    (called with ``tiles=`` as well when the cluster has GPU workers for its tiles)."""

    popout: Callable[..., Any]
    refiner: Callable[..., RefinerLike]


def default_stages() -> Stages:
    """The real stages, stream3d.popout.popout and stream3d.refine.Refiner, fed the view of
    each frame that ``stream.roi`` and ``stream.bin`` ask for."""
    from stream3d.popout import popout
    from stream3d.refine import Refiner
    from stream3d.stream.view_stages import ViewPopout, ViewRefinerFactory

    return Stages(popout=ViewPopout(popout), refiner=ViewRefinerFactory(Refiner))


def _build_refiner(stages: Stages, config: Config, client: Any) -> RefinerLike:
    """The stream's refiner; its tiles run as dask tasks when the cluster has GPU workers
    (``dask worker --resources GPU=1``), else in this thread (the embedded local cluster)."""
    workers = gpu_workers(client) if client is not None else []
    if workers:
        from stream3d.refine.distributed import DaskTiles

        log.info("refinement tiles run on the cluster's %d GPU worker(s)", len(workers))
        return stages.refiner(config, None, tiles=DaskTiles(client))
    return stages.refiner(config, None)


def check_frames_fit(shape: Sequence[int], config: Config) -> None:
    """One clear error, before any compute, when the ROI does not fit the frames or what
    compute sees (ROI, binned) is too small for pop-out's patches."""
    from stream3d.view import view_for

    view = view_for(config, shape)
    patch = config.popout.patch
    if min(view.shape) < patch:
        what = "frames are" if view.whole else "stream.roi / stream.bin leave"
        raise UserError(f"{what} {view.shape[0]} x {view.shape[1]} px, smaller than "
                        f"popout.patch = {patch} px: set popout.patch <= {min(view.shape)} (and "
                        "popout.step <= it), or record with --record-only")


class Reconstructor:
    """Runs in the pipeline's main thread; results and status marks go through the writer."""

    def __init__(self, config: Config, stages: Stages, client: Any, writer: Writer,
                 backlog: Backlog, counters: dict[str, int], *, live: bool = False) -> None:
        self.config, self.stages, self.client = config, stages, client
        # A detector source under policy "all": warn once when the lag passes this many frames.
        self._behind_at = max(BEHIND_FRAMES, 4 * config.stream.window) \
            if live and config.stream.policy == "all" else None
        self.writer, self.backlog = writer, backlog
        self.counters = {k: int(counters.get(k, 0)) for k in COMPUTE_COUNTERS}
        self.latest = config.stream.policy == "latest"
        self.capacity = min(config.stream.window, 2) if self.latest else config.stream.window
        self._inflight: OrderedDict[int, tuple[Any, np.ndarray, FramePlan]] = OrderedDict()
        # Registration and lens tracking (stream.register, microscope.track_defocus).
        self.insitu = InSitu(config, client, lambda: writer.read_frame(0),
                             key=lambda: self._next_key())
        # Built now, before any frame arrives: a bad device or config fails the run at once.
        self._refiner: RefinerLike = _build_refiner(stages, config, client)
        self.refined = 0  # this session
        self.first_failure = ""  # "frame t: why", the first frame that failed this session
        self.current: int | None = None  # store index being refined
        # Wall time of the latest refined frames (pop-out wait + refine), s; bounded so that
        # a day-long run does not grow with it.
        self.seconds: deque[float] = deque(maxlen=SECONDS_KEPT)
        self._checked = False  # frame size checked against popout.patch
        self._key_base = f"popout-{uuid.uuid4().hex}"
        self._key_cycle = max(POPOUT_KEYS, 8 * self.capacity)  # two tasks per frame (registration)
        self._submitted = 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def run(self, *, keep_going: Callable[[], bool]) -> None:
        """Reconstruct until the backlog is finished (closed and empty) or ``keep_going`` is false."""
        while keep_going():
            # latest: no prefetch before the wait, so the frame waited on is the newest one.
            self._fill(1 if self.latest else self.capacity)
            if not self._inflight:
                if self.backlog.finished:
                    return
                self.backlog.wait(0.1)
                continue
            t, (future, frame, plan) = next(iter(self._inflight.items()))
            started = time.perf_counter()
            if not self._wait(future, keep_going):
                return
            del self._inflight[t]
            self._fill(self.capacity)  # the next pop-out overlaps this refinement
            self.current = t
            self._finish(t, future, frame, plan)
            self.current = None
            self.seconds.append(time.perf_counter() - started)
            self._warn_if_behind()

    def _warn_if_behind(self) -> None:
        """Once per run: a live run under policy "all" whose lag passed ``_behind_at`` frames
        is told that it falls behind and how to stay live (stream.policy = "latest")."""
        if self._behind_at is None:
            return
        lag = len(self.backlog) + self.inflight
        if lag < self._behind_at:
            return
        self._behind_at = None
        recent = list(self.seconds)[-10:]
        rate = len(recent) / sum(recent) if sum(recent) > 0 else 0.0
        log.warning('falling behind the detector: %d frames wait (%.2f frames/s reconstructed). '
                    'stream.policy = "all" reconstructs every frame, later; to stay live, '
                    'run with --set stream.policy=latest (frames passed over are kept raw and '
                    'marked skipped: `stream3d reconstruct RUN --out RUN` does them afterwards)',
                    lag, rate)

    def cancel(self) -> None:
        """Drop the pop-outs in flight; their frames stay pending (status 0) in the store."""
        for future, _, plan in self._inflight.values():
            future.cancel()
            if plan.shift is not None:
                plan.shift.cancel()
        self._inflight.clear()

    def _fill(self, limit: int) -> None:
        while len(self._inflight) < limit:
            if self.latest:
                got = self.backlog.pop_newest()
                if got is None:
                    return
                (t, data), passed = got
                if passed:
                    self.counters["skipped"] += len(passed)
                    self.writer.mark(passed, Status.SKIPPED, self._all_counters())
            else:
                got = self.backlog.pop_oldest()
                if got is None:
                    return
                t, data = got
            if data is None:
                data = self.writer.read_frame(t)
            if not self._checked:
                check_frames_fit(np.shape(data), self.config)  # live: once, at the first frame
                self._checked = True
            frame = np.asarray(data, dtype=np.float32)
            plan = self.insitu.plan(t, frame) if self.insitu.active else FramePlan(self.config)
            future = self.client.submit(self.stages.popout, frame, plan.config,
                                        key=self._next_key())
            self._inflight[t] = (future, frame, plan)

    def _next_key(self) -> str:
        """The next pop-out task key, reused every ``_key_cycle`` submissions (POPOUT_KEYS)."""
        key = f"{self._key_base}-{self._submitted % self._key_cycle}"
        self._submitted += 1
        return key

    def _wait(self, future: Any, keep_going: Callable[[], bool]) -> bool:
        while not future.done():
            if not keep_going():
                return False
            time.sleep(0.01)
        return True

    def _finish(self, t: int, future: Any, frame: np.ndarray, plan: FramePlan) -> None:
        popout = shift = None
        try:
            if self.insitu.active:
                shift = self.insitu.before_refine(t, plan, self._refiner)
            popout = future.result()
            result = self._refiner.refine(frame, popout)
            volume, loss = np.asarray(result.volume, np.float32), float(result.loss)
            status = Status.REFINED
            if not np.isfinite(volume).all():  # a refinement that kept no usable volume
                status, volume = Status.FAILED, None
                if not self.first_failure:
                    self.first_failure = f"frame {t}: no finite refined volume"
                    log.warning("frame %d: refinement ended %r without a finite volume; later "
                                "failures are only counted", t, getattr(result, "status", ""))
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end a live run
            status, volume, loss = Status.FAILED, None, math.nan
            if not self.first_failure:  # one line for the user; the trace for debugging
                self.first_failure = f"frame {t}: {_reason(exc)}"
                log.warning("frame %d failed: %s; later failures are only counted", t,
                            _reason(exc))
                log.debug("frame %d failed", t, exc_info=True)
        if status == Status.FAILED:
            self.counters["failed"] += 1
        else:
            self.refined += 1
        self.writer.write_result(t, status=status,
                                 popout=None if popout is None else popout.volume,
                                 volume=volume, loss=loss, counters=self._all_counters(),
                                 shift=shift, defocus=plan.defocus)

    def _all_counters(self) -> dict[str, int]:
        return dict(self.counters)


def _reason(exc: BaseException) -> str:
    """One line saying why a frame failed: the message of bad input, else the error's type
    and message (the trace is logged at debug level)."""
    text = " ".join(reason(exc).split()) or "no message"
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"
