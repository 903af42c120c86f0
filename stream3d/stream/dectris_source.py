"""The live source for a DECTRIS detector (SIMPLON stream v2) and the routing of its series.

The detector binds PUSH on port 31001; we connect PULL (several receivers share the images
round-robin). Each message is parsed by :mod:`stream3d.stream.dectris` and handed to the
pipeline as the native protocol's Start / FrameMessage / End, so the tracker counts malformed
messages, duplicates and gaps exactly as for the native protocol:

* frame number = image_id; timestamp = start_time (s from series_date);
* the stored pixels are those of ``stream.channel`` (default: the start's first channel), as sent;
* ``End.frames`` = the start's number_of_images, so images lost at the end are gaps;
* the start's scalar fields go to the series' ``meta["dectris"]`` in the run's attributes;
* masked, NODATA and saturated pixels are counted per frame (``masked``) and the series'
  :class:`~stream3d.stream.pixel_mask.PixelRule` is published to compute.

A series whose image size or dtype differs from the run's (an EIGER changes its bit depth with
the count time) is never dropped: its images go, raw, to a run store of its own beside the run,
``RUN.series-<series_id>.zarr`` (see :func:`side_store_path`), with its own counters; reconstruct
it later with ``stream3d reconstruct RUN.series-<id>.zarr --out RUN.series-<id>.zarr``.
The start of a series is passed on only with its first image (or its end), once its route is known.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.store import RawFrame, RunStore, native_dtype, open_run
from stream3d.stream.dectris import (
    DectrisKind, EndInfo, ImageInfo, StartInfo, _bad, parse,
)
from stream3d.stream.pixel_mask import PixelRule, RuleHolder, pack_mask
from stream3d.stream.protocol import End, FrameMessage, Malformed, Message, Start
from stream3d.stream.sources import MAX_MESSAGE_BYTES, endpoint
from stream3d.stream.tracker import Tracker
from stream3d.stream.writer import Writer, WriterError

log = logging.getLogger("stream3d.stream")

DEFAULT_PORT = 31001


def side_store_path(out: Path, start: StartInfo | None, series: Any) -> Path:
    """Where a series of another frame size / dtype is stored: beside ``out``, named after the
    series number (``RUN.series-3.zarr``), or its unique id when it has no number."""
    name = start.series_id if start is not None and start.series_id is not None else series
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:80]
    return out.with_name(f"{out.stem}.series-{safe}.zarr")


@dataclass
class _Series:
    start: StartInfo | None
    route: str = ""  # "" until the first image: "main" or "side"
    rule: PixelRule | None = None
    announced: bool = False  # its Start went to the pipeline
    spec: tuple | None = None  # (shape, dtype) of its first image


@dataclass
class _Side:
    """A run store of its own for a series whose frames differ from the run's."""

    path: Path
    store: RunStore
    writer: Writer
    tracker: Tracker
    stored: int = 0
    spec: tuple = field(default_factory=tuple)


class DectrisSource:
    """Reads stream v2 from ``address`` (PULL; connects, or binds with ``bind``)."""

    def __init__(self, address: str, config: Config, *, out: str | Path, bind: bool = False,
                 holder: RuleHolder | None = None) -> None:
        self.address = endpoint(address)
        self.config, self.out, self.bind = config, Path(out), bind
        self.channel = config_channel(config)
        self.holder = holder or RuleHolder()
        self.hwm = config.stream.hwm
        self._series: dict[Any, _Series] = {}
        self._pending: deque[Message | Malformed] = deque()
        self._spec: tuple[tuple[int, ...], np.dtype] | None = None
        self._sides: dict[Any, _Side] = {}
        self.side_paths: list[Path] = []
        self._ctx = None
        self._sock = None

    # ------------------------------------------------------------------------ Source protocol
    def resume(self, seen: Mapping[Any, set[int]]) -> None:
        """The run's frame size and dtype come from its store when it has frames."""
        if (self.out / "zarr.json").exists():
            group = open_run(self.out)
            if "frames" in group.array_keys():
                frames = group["frames"]
                self._spec = (tuple(frames.shape[1:]), native_dtype(frames.dtype))

    def open(self) -> None:
        import zmq

        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            (sock.bind if self.bind else sock.connect)(self.address)
        except zmq.ZMQError as exc:
            sock.close()
            self._ctx.term()
            raise UserError(f"cannot {'bind to' if self.bind else 'connect to'} "
                            f"{self.address}: {exc}") from None
        self._sock = sock

    def next(self, timeout: float) -> Message | Malformed | None:
        if self._pending:
            return self._pending.popleft()
        if not self._sock.poll(int(timeout * 1000)):
            return None
        parts = self._sock.recv_multipart(copy=False)
        self.handle(parts[0].buffer if len(parts) == 1 else None, len(parts))
        return self._pending.popleft() if self._pending else None

    def close(self) -> None:
        for side in self._sides.values():
            self._close_side(side)
        self._sides.clear()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._ctx.term()
            self._sock = None

    # ------------------------------------------------------------------------ one message
    def handle(self, message: bytes | memoryview | None, parts: int = 1) -> None:
        """Parse one ZeroMQ message; what the pipeline must see goes to the pending queue."""
        try:
            if message is None:
                raise _bad(DectrisKind.PART_COUNT, f"a message of {parts} parts (stream v2 "
                                                   "sends one CBOR part)")
            info = parse(message)
            if isinstance(info, StartInfo):
                self._on_start(info)
            elif isinstance(info, ImageInfo):
                self._on_image(info)
            else:
                self._on_end(info)
        except Malformed as exc:
            self._pending.append(exc)

    def _on_start(self, info: StartInfo) -> None:
        previous = self._series.get(info.series)
        if previous is not None and previous.route == "side":
            return  # a repeated start of a series already in its own store
        self._series[info.series] = _Series(info, route=previous.route if previous else "",
                                            announced=previous.announced if previous else False)

    def _on_image(self, info: ImageInfo) -> None:
        state = self._series.get(info.series)
        if state is None:  # no start seen (joined mid-series, a resumed run, or a stray image):
            # pass it on; the tracker knows whether its series started (else: before_start).
            data = info.channel(self.channel or next(iter(info.data)))
            masked = PixelRule.for_dtype(data.dtype).count(data)
            self._pending.append(FrameMessage(info.series, info.image_id, info.timestamp, data,
                                              masked))
            return
        channel = self.channel or (state.start.channels[0] if state.start and
                                   state.start.channels else next(iter(info.data)))
        data = info.channel(channel)
        start = state.start
        if not state.route:
            if start is not None and start.shape is not None and data.shape != start.shape:
                # The images are what is stored: follow them, and say so once.
                log.warning("series %r: images are %s, its start says %s; storing the images "
                            "as they are", info.series, data.shape, start.shape)
            self._route(state, info.series, data, channel)
        elif state.spec is not None and tuple(data.shape) != state.spec[0]:
            raise _bad(DectrisKind.SHAPE_CHANGED, f"image {info.image_id} is {data.shape}, the "
                                                  f"series' images are {state.spec[0]}")
        rule = state.rule or PixelRule.for_dtype(data.dtype)
        masked = rule.count(data)
        stamp = info.timestamp
        if not np.isfinite(stamp) and start is not None and start.frame_time:
            stamp = info.image_id * start.frame_time
        message = FrameMessage(info.series, info.image_id, float(stamp), data, masked)
        if state.route == "side":
            self._to_side(info.series, state, message)
        else:
            self.holder.rule = rule
            self._pending.append(message)

    def _route(self, state: _Series, series: Any, data: np.ndarray, channel: str) -> None:
        spec = state.spec = (tuple(data.shape), native_dtype(data.dtype))
        start = state.start
        mask = start.masks.get(channel) if start is not None else None
        state.rule = PixelRule.for_dtype(data.dtype, mask=mask,
                                         saturation=start.saturation if start else None)
        if self._spec is None:
            self._spec = spec
        state.route = "main" if spec == self._spec else "side"
        if state.route == "main" and not state.announced:
            state.announced = True
            self._pending.append(Start(series, self._meta(start, channel, state.rule)))
        elif state.route == "side":
            log.warning("series %r has %s %s frames, this run stores %s %s: it goes to %s",
                        series, spec[1], spec[0], self._spec[1], self._spec[0],
                        side_store_path(self.out, start, series))

    def _on_end(self, info: EndInfo) -> None:
        state = self._series.get(info.series)
        if state is None:
            self._pending.append(End(info.series, 0))  # the tracker counts it: before start
            return
        count = state.start.number_of_images if state.start is not None else None
        if state.route == "side":
            side = self._sides.get(info.series)
            if side is not None:
                side.tracker.accept(End(info.series, count or 0))
                self._close_side(side)
                del self._sides[info.series]
            return
        if not state.announced:  # a series without images: record that it happened
            state.announced = True
            state.route = "main"
            self._pending.append(Start(info.series, self._meta(state.start, self.channel, None)))
        self._pending.append(End(info.series, count or 0))

    # ------------------------------------------------------------------------ series meta
    def _meta(self, start: StartInfo | None, channel: str, rule: PixelRule | None
              ) -> dict[str, Any]:
        dectris: dict[str, Any] = dict(start.scalars) if start is not None else {}
        dectris["stored_channel"] = channel
        if rule is not None:
            dectris["masked_by_detector"] = int(rule.mask.sum()) if rule.mask is not None else 0
            dectris["excluded_above"] = rule.limit
            if rule.mask is not None:  # kept so that a later reconstruction excludes it too
                packed = pack_mask(rule.mask)
                if packed is not None:
                    dectris["pixel_mask_packed"] = packed
        return {"dectris": dectris}

    # ------------------------------------------------------------------------ side stores
    def _to_side(self, series: Any, state: _Series, message: FrameMessage) -> None:
        side = self._sides.get(series)
        try:
            if side is None:
                side = self._open_side(series, state)
            out = side.tracker.accept(message)
            if isinstance(out, RawFrame):
                side.writer.append(out, side.tracker.counters)
                side.stored += 1
        except (UserError, WriterError, OSError) as exc:
            # The main run goes on; the image is counted there, with the reason logged once.
            raise _bad(DectrisKind.SHAPE_CHANGED, f"image {message.frame} of series {series!r} "
                                                  f"({message.data.dtype} "
                                                  f"{message.data.shape}) cannot be stored "
                                                  f"in its own run store: {exc}") from None

    def _open_side(self, series: Any, state: _Series) -> _Side:
        path = side_store_path(self.out, state.start, series)
        store = RunStore.open(path, self.config)
        spec = (store.frame_shape, store.frame_dtype) if store.frame_shape else None
        tracker = Tracker(seen=store.seen(), counters=store.counters, frame_spec=spec)
        writer = Writer(store, queue_size=self.config.stream.queue,
                        batch=self.config.stream.write_batch, on_appended=lambda ts, f: None)
        writer.start()
        start = tracker.accept(Start(series, self._meta(state.start, self.channel or "",
                                                        state.rule)))
        writer.begin_series(series, start.meta)
        side = self._sides[series] = _Side(path, store, writer, tracker)
        if path not in self.side_paths:
            self.side_paths.append(path)
        return side

    def _close_side(self, side: _Side) -> None:
        """Final counters, then close; never raises (the main run must end cleanly)."""
        try:
            side.writer.set_counters(side.tracker.counters)
            side.writer.close()
        except (WriterError, OSError) as exc:
            log.error("run store %s of another series could not be finished: %s", side.path, exc)


def config_channel(config: Config) -> str:
    """``stream.channel`` ("" = the start message's first channel)."""
    return getattr(config.stream, "channel", "") or ""


def dectris_endpoint(text: str) -> str:
    """A DCU address: ``tcp://HOST:PORT``, a bare port, or a bare host (port 31001)."""
    text = text.strip()
    if re.fullmatch(r"[A-Za-z0-9_.-]+", text) and not text.isdigit():
        text = f"tcp://{text}:{DEFAULT_PORT}"
    return endpoint(text)
