"""The writer thread: the one owner of the run store; other threads send it messages.

Raw frames queue up in a bounded queue (``stream.queue``); a full queue blocks the ingest
thread, which is the backpressure a PUSH sender feels (a PUB sender drops, and the drops show
up as gaps). Consecutive raw frames are persisted in one batch of at most ``stream.write_batch``
(one resize and one multi-chunk write), which is what lets ingest keep up with fast detectors.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream3d.store import RawFrame, RunStore, Status

log = logging.getLogger("stream3d.stream")


class WriterError(RuntimeError):
    """The store could not be written (disk full, permissions...); the run must stop."""


@dataclass
class _Append:
    frame: RawFrame
    counters: Mapping[str, int]


@dataclass
class _Call:
    """Any other store operation, run in the writer thread; its result goes to ``future``."""

    fn: Callable[[RunStore], Any]
    future: Future | None = None


_STOP = object()


class Writer:
    """Owns ``store`` in its own thread. ``on_appended(ts, frames)`` runs in that thread after
    each batch of raw frames is committed (the pipeline uses it to hand frames to compute)."""

    def __init__(self, store: RunStore, *, queue_size: int, batch: int,
                 on_appended: Callable[[range, list[RawFrame]], None]) -> None:
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._batch = batch
        self._on_appended = on_appended
        self._thread = threading.Thread(target=self._run, name="stream3d-writer", daemon=True)
        self.error: BaseException | None = None
        self.stalls = 0  # times a producer found the queue full and had to wait
        self.persisted = len(store)
        self.last_append_at: float | None = None  # time.monotonic() after the latest batch

    def start(self) -> None:
        self._thread.start()

    # --------------------------------------------------------------------- called by producers
    def append(self, frame: RawFrame, counters: Mapping[str, int], *,
               should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Queue one raw frame (and the ingest counters that include it). Blocks while the
        queue is full; returns False when ``should_stop`` turned true first."""
        return self._put(_Append(frame, dict(counters)), should_stop)

    def begin_series(self, series: Any, meta: Mapping[str, Any], meta_dropped: int = 0) -> None:
        self._put(_Call(lambda s: s.begin_series(series, meta, meta_dropped)))

    def set_counters(self, counters: Mapping[str, int]) -> None:
        counters = dict(counters)
        self._put(_Call(lambda s: s.set_counters(counters)))

    def write_result(self, t: int, *, status: Status, popout: np.ndarray | None = None,
                     volume: np.ndarray | None = None, loss: float = math.nan,
                     counters: Mapping[str, int] | None = None,
                     shift: tuple[float, float] | None = None,
                     defocus: float | None = None) -> None:
        counters = dict(counters or {})
        self._put(_Call(lambda s: s.write_result(t, status=status, popout=popout, volume=volume,
                                                 loss=loss, counters=counters, shift=shift,
                                                 defocus=defocus)))

    def mark(self, ts: Sequence[int], status: Status, counters: Mapping[str, int]) -> None:
        ts, counters = list(ts), dict(counters)
        self._put(_Call(lambda s: s.mark(ts, status, counters)))

    def call(self, fn: Callable[[RunStore], Any]) -> None:
        """Run ``fn(store)`` in the writer thread after everything queued before it."""
        self._put(_Call(fn))

    def read_frame(self, t: int, timeout: float = 60.0) -> np.ndarray:
        """Raw frame t read back from the store (frames spilled out of RAM)."""
        future: Future = Future()
        self._put(_Call(lambda s: s.read_frame(t), future))
        return future.result(timeout=timeout)

    def close(self) -> None:
        """Persist everything queued, close the store (consolidated metadata), end the thread."""
        if self._thread.is_alive():
            self._put(_STOP)
            self._thread.join()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise WriterError(f"cannot write the run store {self.store.path}: {self.error}") \
                from self.error

    def _put(self, item: Any, should_stop: Callable[[], bool] = lambda: False) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.stalls += 1
            if self.stalls == 1:
                log.warning("the run store is not keeping up: ingest waits for it (a PUSH "
                            "sender is slowed down, a PUB sender drops frames: counted as gaps)")
        while True:
            self.raise_if_failed()
            if should_stop():
                return False
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue

    # --------------------------------------------------------------------- the writer thread
    def _run(self) -> None:
        held: Any = None
        try:
            while True:
                item = held if held is not None else self._queue.get()
                held = None
                if item is _STOP:
                    break
                if isinstance(item, _Append):
                    batch = [item]
                    while len(batch) < self._batch:
                        try:
                            nxt = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(nxt, _Append):
                            batch.append(nxt)
                        else:
                            held = nxt
                            break
                    self._append(batch)
                else:
                    self._call(item)
            self.store.close()
        except BaseException as exc:  # noqa: BLE001 - reported to every producer
            self.error = exc
            log.error("run store %s: writing failed: %s", self.store.path, exc)
            self._drain_after_failure()

    def _append(self, batch: list[_Append]) -> None:
        frames = [a.frame for a in batch]
        ts = self.store.append(frames, batch[-1].counters)
        self.persisted = len(self.store)
        self.last_append_at = time.monotonic()
        self._on_appended(ts, frames)

    def _call(self, item: _Call) -> None:
        try:
            value = item.fn(self.store)
        except BaseException as exc:
            if item.future is not None:
                item.future.set_exception(exc)
            raise
        if item.future is not None:
            item.future.set_result(value)

    def _drain_after_failure(self) -> None:
        """Unblock producers and fail pending reads after an error (nothing more is written)."""
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                return
            if isinstance(item, _Call) and item.future is not None:
                item.future.set_exception(WriterError(str(self.error)))
            if item is _STOP:
                return
