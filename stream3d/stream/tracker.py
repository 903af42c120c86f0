"""Stateful checks of the incoming stream: series started, frame-number gaps and duplicates,
frame shape constant over a run, malformed messages counted and logged once per kind.

Counting rules (per series; frames are numbered from 0):

* ``received``: distinct valid frames accepted (each one is persisted raw, whatever the policy).
* ``gaps``: frame numbers missing from the sequence. A frame N above the highest so far adds
  the N - highest - 1 numbers skipped; a late frame that fills a counted hole takes one back;
  an ``end`` whose count exceeds the highest frame + 1 adds the lost tail.
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

from stream3d.store import RawFrame, native_dtype
from stream3d.stream.protocol import End, FrameMessage, Kind, Malformed, Message, Start

log = logging.getLogger("stream3d.stream")

INGEST_COUNTERS = ("received", "malformed", "gaps", "duplicates")
# Frame numbers further than this below a series' highest are taken as seen (duplicates): it
# bounds the memory of the seen-set on long runs (a frame later than this never arrives).
SEEN_WINDOW = 1 << 16


@dataclass
class SeriesState:
    """What has been accepted of one series: the highest frame number and a window of the rest."""

    top: int = -1
    recent: set[int] = field(default_factory=set)
    ended: bool = False

    def seen(self, n: int) -> bool:
        return n in self.recent or n <= self.top - SEEN_WINDOW

    def add(self, n: int) -> None:
        self.recent.add(n)
        self.top = max(self.top, n)
        if len(self.recent) > 2 * SEEN_WINDOW:
            floor = self.top - SEEN_WINDOW
            self.recent = {k for k in self.recent if k > floor}


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
            state = self.series[key] = SeriesState()
            for n in ids:
                state.add(int(n))
        self.frame_spec = frame_spec

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
                return message
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
        if self.frame_spec is None:
            self.frame_spec = spec
        elif spec != self.frame_spec:
            raise Malformed(Kind.SHAPE_CHANGED,
                            f"frame {msg.frame} is {spec[1]} {spec[0]}, this run's frames are "
                            f"{self.frame_spec[1]} {self.frame_spec[0]}")
        n = msg.frame
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
        if msg.frames > state.top + 1:
            self.counters["gaps"] += msg.frames - state.top - 1
            state.top = msg.frames - 1
        state.ended = True
        return msg
