"""The ingest thread, kept thin: receive, validate, persist the raw frame through the writer.

Compute never runs here, so a slow reconstruction cannot make the receiver miss frames: every
valid frame is persisted raw whatever the policy (compute learns of it from the writer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from stream3d.config import Config
from stream3d.store import RawFrame
from stream3d.stream.protocol import End, Malformed, Start
from stream3d.stream.sources import Exhausted, Source
from stream3d.stream.tracker import Tracker
from stream3d.stream.writer import Writer, WriterError

log = logging.getLogger("stream3d.stream")

_COUNTER_FLUSH_S = 0.25  # s, how often counters changed by dropped messages reach the store
_SILENT_S = 10.0  # s without a message after frames came: the sender is reported silent


class Ingest:
    """Runs ``source`` -> ``tracker`` -> ``writer`` in its own thread until a stop condition.

    Stops on: the ``end`` of the latest started series (when ``stop_on_end``), ``max_frames``
    frames accepted in this session, ``idle_timeout`` seconds without a valid message, or
    :meth:`stop`. ``reason`` says which.
    """

    def __init__(self, source: Source, tracker: Tracker, writer: Writer, config: Config, *,
                 stop_on_end: bool = True, max_frames: int | None = None,
                 idle_timeout: float | None = None) -> None:
        self.source, self.tracker, self.writer, self.config = source, tracker, writer, config
        self.stop_on_end, self.max_frames, self.idle_timeout = stop_on_end, max_frames, idle_timeout
        self.frames = 0  # accepted in this session
        self.first_at: float | None = None  # time.monotonic() of the first accepted frame
        self.reason = ""
        self.error: BaseException | None = None
        self.last_message = time.monotonic()
        self.current_series: Any = None
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream3d-ingest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, reason: str = "stopped") -> None:
        if not self.reason:
            self.reason = reason
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    @property
    def idle_seconds(self) -> float:
        return time.monotonic() - self.last_message

    def _run(self) -> None:
        try:
            self.source.open()
        except BaseException as exc:  # noqa: BLE001 - reported by the pipeline
            self.error = exc
            self.reason = "source failed"
            self.done.set()
            return
        self.last_message = time.monotonic()  # idle counts from here, not from start-up
        try:
            self._loop()
        except WriterError as exc:
            self.error = exc
            self.reason = "store failed"
        except BaseException as exc:  # noqa: BLE001 - a bug, but never a silent hang
            log.exception("ingest stopped by an unexpected error")
            self.error = exc
            self.reason = "ingest failed"
        finally:
            try:
                self.writer.set_counters(self.tracker.counters)
            except WriterError:
                pass
            self.source.close()
            self.done.set()

    def _loop(self) -> None:
        dirty, flushed, silent = False, time.monotonic(), False
        while not self._stop.is_set():
            item = self.source.next(0.1)
            now = time.monotonic()
            if dirty and now - flushed > _COUNTER_FLUSH_S:
                self.writer.set_counters(self.tracker.counters)
                dirty, flushed = False, now
            if item is None:
                if self.idle_timeout is not None and now - self.last_message > self.idle_timeout:
                    self.reason = f"idle for {self.idle_timeout:g} s"
                    return
                if self.frames and not silent and now - self.last_message > _SILENT_S:
                    silent = True
                    log.warning("nothing received for %.0f s; still waiting (Ctrl-C or "
                                "--idle-timeout stops)", _SILENT_S)
                continue
            if silent:
                silent = False
                log.warning("the sender is back after %.0f s", now - self.last_message)
            if isinstance(item, Exhausted):
                self.reason = "end of the movie"
                return
            if isinstance(item, Malformed):
                self.tracker.malformed(item)
                dirty = True
                continue
            self.last_message = now
            out = self.tracker.accept(item)
            if out is None:
                dirty = True
            elif isinstance(out, RawFrame):
                if not self.writer.append(out, self.tracker.counters, should_stop=self._stop.is_set):
                    return
                dirty = False
                self.frames += 1
                if self.first_at is None:
                    self.first_at = now
                if self.max_frames is not None and self.frames >= self.max_frames:
                    self.reason = f"{self.max_frames} frames received"
                    return
            elif isinstance(out, Start):
                self.current_series = out.series
                self.writer.begin_series(out.series, out.meta, out.meta_dropped)
                _warn_meta_differs(out.series, out.meta, self.config)
            elif isinstance(out, End) and self.stop_on_end and out.series == self.current_series:
                self.reason = f"end of series {out.series!r}"
                return


def _warn_meta_differs(series: Any, meta: Mapping[str, Any], config: Config) -> None:
    """The detector's optics are recorded with the series; the config is what reconstructs."""
    ours = config.to_dict()
    differ = []
    for section, values in meta.items():
        if isinstance(values, Mapping) and section in ours:
            for key, value in values.items():
                if key in ours[section] and ours[section][key] != value:
                    differ.append(f"{section}.{key}={value!r} (config: {ours[section][key]!r})")
    if differ:
        log.warning("series %r: the detector reports %s; reconstructing with the config "
                    "(pass --set to follow the detector)", series, ", ".join(differ))
