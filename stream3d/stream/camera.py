"""A detector emulator: plays a movie in the native protocol over ZeroMQ, with faults on demand.

Faults, for tests and demos (each is exact, so a receiver's counters can be checked):

* ``drop``: frame numbers never sent (the receiver must count them as gaps);
* ``duplicate``: frame numbers sent twice (counted as duplicates, stored once);
* ``corrupt``: one malformed message of each listed :class:`Kind`, sent between valid frames
  (the valid frames all still arrive);
* ``restart_after``: after that many frames the series restarts, as a detector does when an
  acquisition is restarted: a new ``start`` with the next series number, frames from 0 again.

A PUB camera waits (up to ``wait`` s) for a subscriber before the first message (ZeroMQ's
"slow joiner": messages sent before a subscription are silently lost); a PUSH camera waits at
most ``wait`` s for a receiver to take each message.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream3d.errors import UserError
from stream3d.stream.curve import CurveClient, secure_client, warn_if_exposed
from stream3d.stream.protocol import Kind, encode_end, encode_frame, encode_start
from stream3d.stream.sources import endpoint

CORRUPTIBLE = tuple(Kind)


@dataclass(frozen=True)
class Faults:
    drop: frozenset[int] = frozenset()  # movie frame indices never sent
    duplicate: frozenset[int] = frozenset()  # movie frame indices sent twice
    corrupt: tuple[Kind, ...] = ()  # malformed messages to inject, one per kind listed
    restart_after: int | None = None  # frames sent before the series restarts


@dataclass
class CameraReport:
    """What the camera actually sent (for checking a receiver's counters)."""

    frames: int = 0  # valid frame messages, duplicates included
    dropped: int = 0
    duplicated: int = 0
    corrupted: dict[str, int] = field(default_factory=dict)
    series: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM before the end of the movie


def malformed_message(kind: Kind, series: Any, frame: int, data: np.ndarray) -> list[bytes]:
    """One message that is malformed in exactly the way ``kind`` names."""
    good_head, payload = encode_frame(series, frame, 0.0, data)
    head = json.loads(good_head)

    def dump(obj: Mapping[str, Any]) -> bytes:
        return json.dumps(obj).encode()

    if kind is Kind.NOT_JSON:
        return [b"\xff\xfe this is not JSON {", payload]
    if kind is Kind.MISSING_KEYS:
        return [dump({k: v for k, v in head.items() if k != "dtype"}), payload]
    if kind is Kind.BAD_VALUE:
        return [dump({**head, "shape": "wide"}), payload]
    if kind is Kind.UNKNOWN_HTYPE:
        return [dump({"htype": "gossip", "series": series})]
    if kind is Kind.UNKNOWN_DTYPE:
        return [dump({**head, "dtype": "<c8"}), payload + payload]  # complex: right size, wrong type
    if kind is Kind.BYTE_COUNT:
        return [good_head, payload[:-1]]
    if kind is Kind.PART_COUNT:
        return [good_head]
    if kind is Kind.BEFORE_START:
        return [dump({**head, "series": f"{series}-never-started"}), payload]
    if kind is Kind.SHAPE_CHANGED:
        return encode_frame(series, frame, 0.0, np.zeros((3, 5), data.dtype))
    raise ValueError(f"no malformed message for kind {kind!r}")


def parse_kinds(text: str) -> tuple[Kind, ...]:
    """``all`` or a comma list of kind names (e.g. ``not_json,byte_count``)."""
    if text.strip() == "all":
        return CORRUPTIBLE
    kinds = []
    for name in filter(None, (p.strip() for p in text.split(","))):
        try:
            kinds.append(Kind(name))
        except ValueError:
            raise UserError(f"--corrupt {name!r} is not a kind; use all or some of "
                            f"{', '.join(k.value for k in Kind)}") from None
    return tuple(kinds)


def parse_frames(text: str) -> frozenset[int]:
    """A comma list of frame indices, e.g. ``3,7``."""
    try:
        return frozenset(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UserError(f"{text!r} must be frame numbers separated by commas, e.g. 3,7") from None


class Camera:
    """A PUB or PUSH socket that binds (the default, like a detector) or connects."""

    def __init__(self, address: str, *, pattern: str = "pub", bind: bool = True,
                 wait: float = 10.0, hwm: int = 1000, curve: CurveClient | None = None) -> None:
        import zmq

        if pattern not in ("pub", "push"):
            raise UserError(f"--pattern {pattern!r} must be pub or push")
        self.address, self.pattern, self.wait = endpoint(address), pattern, wait
        self._ctx = zmq.Context()
        # XPUB: a PUB that also hears subscriptions, so the camera knows someone listens.
        self._sock = self._ctx.socket(zmq.XPUB if pattern == "pub" else zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, int(wait * 1000))
        if pattern == "push":
            self._sock.setsockopt(zmq.SNDTIMEO, int(wait * 1000))
        if curve is not None:
            secure_client(self._sock, curve)
        warn_if_exposed(self.address, bind=bind, secured=curve is not None, who="the camera")
        try:
            (self._sock.bind if bind else self._sock.connect)(self.address)
        except zmq.ZMQError as exc:
            self.close()
            raise UserError(f"camera cannot {'bind' if bind else 'connect'} {self.address}: "
                            f"{exc}") from None
        self._subscribed = pattern != "pub"

    def send(self, parts: Sequence[bytes]) -> None:
        import zmq

        if not self._subscribed:
            if not self._sock.poll(int(self.wait * 1000), zmq.POLLIN):
                raise UserError(f"no subscriber on {self.address} within {self.wait:g} s")
            self._sock.recv()  # the subscription message
            self._subscribed = True
        try:
            self._sock.send_multipart(list(parts), copy=False)
        except zmq.Again:
            raise UserError(f"no receiver took a message on {self.address} for "
                            f"{self.wait:g} s") from None

    def close(self, *, linger: float | None = None) -> None:
        """Close the socket, waiting at most ``linger`` s (default: ``wait``) to deliver what
        is queued; an interrupted camera should not wait a minute for a slow receiver."""
        if linger is not None:
            import zmq

            self._sock.setsockopt(zmq.LINGER, int(linger * 1000))
        self._sock.close()
        self._ctx.term()


def play(movie: Sequence[np.ndarray], camera: Camera, *, fps: float = 0.0, series: int = 1,
         faults: Faults = Faults(), meta: Mapping[str, Any] | None = None,
         clock: float | None = None, repeat: int = 1,
         stop: threading.Event | None = None) -> CameraReport:
    """Send ``movie`` as series ``series`` (then ``series + 1`` after a restart) at ``fps``
    frames per second (0 = as fast as the receiver takes them), ``repeat`` times over as one
    longer series. Timestamps are ``clock + i / fps`` s (wall-clock send time when ``fps`` is
    0). Fault indices count frames of the whole (repeated) sequence. When ``stop`` is set the
    series ends early (its ``end`` still sent) and the report says it was interrupted."""
    report = CameraReport()
    start = time.monotonic()
    clock = time.time() if clock is None else clock
    camera.send(encode_start(series, meta))
    report.series.append(series)
    numbered = 0  # frame number within the current series
    pending_corrupt = list(faults.corrupt)
    n = len(movie)
    for i in range(n * repeat):
        if stop is not None and stop.is_set():
            report.interrupted = True
            break
        if faults.restart_after is not None and i == faults.restart_after:
            series += 1
            numbered = 0
            camera.send(encode_start(series, meta))
            report.series.append(series)
        if fps > 0:
            pause = max(0.0, start + i / fps - time.monotonic())
            if stop is None:
                time.sleep(pause)
            elif stop.wait(pause):
                report.interrupted = True
                break
        data = np.asarray(movie[i % n])
        stamp = clock + i / fps if fps > 0 else time.time()
        if i in faults.drop:
            report.dropped += 1
        else:
            copies = 2 if i in faults.duplicate else 1
            for _ in range(copies):
                camera.send(encode_frame(series, numbered, stamp, data))
                report.frames += 1
            report.duplicated += copies - 1
        numbered += 1
        if pending_corrupt and report.frames > 0:  # after a valid frame: the run's shape is set
            kind = pending_corrupt.pop(0)
            camera.send(malformed_message(kind, series, numbered - 1, data))
            report.corrupted[kind.value] = report.corrupted.get(kind.value, 0) + 1
    camera.send(encode_end(series, numbered))
    report.seconds = time.monotonic() - start
    return report
