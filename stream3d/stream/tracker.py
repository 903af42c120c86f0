"""Stateful checks of the incoming stream: series started, frame-number gaps and duplicates,
frame shape constant over a run, malformed messages counted and logged once per kind.

Counting rules (per series; frames are numbered from 0):

* ``received``: distinct valid frames accepted (each one is persisted raw, whatever the policy).
* ``gaps``: frame numbers missing from the sequence. A frame N above the highest so far adds
  the N - highest - 1 numbers skipped; a late frame that fills a counted hole takes one back;
  an ``end`` whose count exceeds the highest frame + 1 adds the lost tail (once per series).
* A frame number more than :data:`MAX_JUMP` above its series' highest (or beyond 2^63 - 1),
  an ``end`` count as far beyond it, and a frame of a dtype the store cannot hold are
  malformed: a hostile or broken sender cannot inflate ``gaps`` or stall a series.
* ``duplicates``: a frame number already accepted in its series (dropped, not persisted).
* ``malformed``: every message :func:`~stream3d.stream.protocol.decode` refuses, plus frames
  or ends of a series never started and frames whose shape/dtype differs from the run's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream3d.store import (
    INGEST_COUNTERS, MAX_FRAME_ID, STORABLE_DTYPES, RawFrame, native_dtype,
)
from stream3d.stream.meta import clean_meta
from stream3d.stream.protocol import End, FrameMessage, Kind, Malformed, Message, Start

log = logging.getLogger("stream3d.stream")

# Frame numbers further than this below a series' highest are taken as seen (duplicates): it
# bounds the memory of the missing-set on long runs (a frame later than this never arrives).
SEEN_WINDOW = 1 << 16
# A frame number (or end count) more than this above its series' highest is malformed: 2^24
# frames is 4.6 h at 1000 frames/s, far more than any real loss, far less than a wild value.
MAX_JUMP = 1 << 24


@dataclass
class SeriesState:
    """What has been accepted of one series: the highest frame number and the numbers below it
    not received yet (within :data:`SEEN_WINDOW`). Memory is O(holes), not O(frames)."""

    top: int = -1
    missing: set[int] = field(default_factory=set)
    ended: bool = False

    def seen(self, n: int) -> bool:
        if n > self.top:
            return False
        return n <= self.top - SEEN_WINDOW or n not in self.missing

    def add(self, n: int) -> None:
        if n > self.top:
            floor = max(self.top + 1, n - SEEN_WINDOW + 1)
            self.missing.update(range(floor, n))
            self.top = n
            if len(self.missing) > 2 * SEEN_WINDOW or (self.missing and
                                                        min(self.missing) <= n - SEEN_WINDOW):
                limit = n - SEEN_WINDOW
                self.missing = {k for k in self.missing if k > limit}
        else:
            self.missing.discard(n)

    @classmethod
    def from_seen(cls, ids: Iterable[int]) -> SeriesState:
        """The state after accepting ``ids`` (a resumed run's frames of this series)."""
        ids = set(int(n) for n in ids)
        state = cls()
        if ids:
            state.top = max(ids)
            lo = max(0, state.top - SEEN_WINDOW + 1)
            state.missing = set(range(lo, state.top)) - ids
        return state


class Tracker:
    """Turns decoded messages into accepted frames and counts everything else.

    ``seen`` (frame numbers per series) and ``counters`` seed a resumed run from its store; the
    series in ``seen`` count as started, so a detector still inside a series can go on.
    """

    def __init__(self, *, seen: Mapping[Any, Iterable[int]] | None = None,
                 counters: Mapping[str, int] | None = None,
                 frame_spec: tuple[tuple[int, int], np.dtype] | None = None) -> None:
        self.counters = {k: int((counters or {}).get(k, 0)) for k in INGEST_COUNTERS}
        self.by_kind: dict[str, int] = {}
        self.series: dict[Any, SeriesState] = {}
        for key, ids in (seen or {}).items():
            self.series[key] = SeriesState.from_seen(ids)
        self.frame_spec = frame_spec
        self.meta_dropped = 0  # start.meta entries refused (not counted as malformed)

    def malformed(self, exc: Malformed) -> None:
        """Count a refused message; the first of each kind is logged with its detail."""
        self.counters["malformed"] += 1
        first = exc.kind.value not in self.by_kind
        self.by_kind[exc.kind.value] = self.by_kind.get(exc.kind.value, 0) + 1
        if first:
            log.warning("malformed message (%s), skipped; later ones of this kind are only "
                        "counted: %s", exc.kind.value, exc.detail)

    def accept(self, message: Message) -> Start | RawFrame | End | None:
        """The message to act on, or None when it was counted and dropped."""
        try:
            if isinstance(message, Start):
                self.series.setdefault(message.series, SeriesState())
                meta, dropped = clean_meta(message.meta)
                if dropped:
                    self.meta_dropped += dropped
                    log.warning("series %r: %d start.meta entries dropped (not valid optics, "
                                "not finite, or beyond %d kB)", message.series, dropped, 64)
                return Start(message.series, meta, dropped)
            state = self.series.get(message.series)
            if state is None:
                what = "frame" if isinstance(message, FrameMessage) else "end"
                raise Malformed(Kind.BEFORE_START, f"{what} of series {message.series!r}, "
                                                   "which has not started")
            if isinstance(message, End):
                return self._end(state, message)
            return self._frame(state, message)
        except Malformed as exc:
            self.malformed(exc)
            return None

    def _frame(self, state: SeriesState, msg: FrameMessage) -> RawFrame | None:
        spec = (tuple(msg.data.shape), native_dtype(msg.data.dtype))
        if spec[1] not in STORABLE_DTYPES:
            raise Malformed(Kind.UNKNOWN_DTYPE, f"frame {msg.frame} is {msg.data.dtype}, which "
                                                "the run store cannot hold")
        n = msg.frame
        if not isinstance(n, int) or not 0 <= n <= MAX_FRAME_ID:
            raise Malformed(Kind.BAD_VALUE, f"frame number {str(n)[:40]} is not in 0..2^63-1")
        if n > state.top + MAX_JUMP:
            raise Malformed(Kind.BAD_VALUE, f"frame number {n} is more than {MAX_JUMP} above "
                                            f"the highest of series {msg.series!r} ({state.top})")
        if self.frame_spec is None:
            self.frame_spec = spec
        elif spec != self.frame_spec:
            raise Malformed(Kind.SHAPE_CHANGED,
                            f"frame {msg.frame} is {spec[1]} {spec[0]}, this run's frames are "
                            f"{self.frame_spec[1]} {self.frame_spec[0]}")
        if state.seen(n):
            self.counters["duplicates"] += 1
            if self.counters["duplicates"] == 1:
                log.warning("duplicate frame %s of series %r dropped (later ones only counted)",
                            n, msg.series)
            return None
        if n > state.top:
            self.counters["gaps"] += n - state.top - 1
        elif self.counters["gaps"] > 0:
            self.counters["gaps"] -= 1  # a late frame fills a hole counted before
        state.add(n)
        self.counters["received"] += 1
        return RawFrame(msg.series, n, msg.timestamp, msg.data, msg.masked)

    def _end(self, state: SeriesState, msg: End) -> End:
        if msg.frames > state.top + 1 + MAX_JUMP:
            raise Malformed(Kind.BAD_VALUE, f"end of series {msg.series!r} counts {msg.frames} "
                                            f"frames, more than {MAX_JUMP} beyond its highest "
                                            f"({state.top})")
        if msg.frames > state.top + 1 and not state.ended:
            self.counters["gaps"] += msg.frames - state.top - 1
            state.add(msg.frames - 1)
            state.missing.add(msg.frames - 1)  # counted lost; a late arrival takes it back
        state.ended = True
        return msg
