"""Where frames come from: a ZeroMQ socket speaking the native protocol, or a recorded movie.

A source is opened, read and closed by the ingest thread only (ZeroMQ sockets are not
thread-safe). ``next(timeout)`` returns a decoded message, a :class:`Malformed` (counted by the
tracker), or None when nothing arrived within ``timeout`` seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stream3d.errors import UserError
from stream3d.io.movies import open_movie
from stream3d.stream.curve import CurveServer, ServerGuard, warn_if_exposed
from stream3d.stream.protocol import End, FrameMessage, Malformed, Message, Start, decode

# A part larger than this is refused by ZeroMQ itself (the connection is dropped): no sender
# can make the receiver allocate without bound. 1 GiB = an 16k x 16k float32 frame. The JSON
# header (part 0) is bounded much lower by the protocol (protocol.MAX_HEADER_BYTES).
MAX_MESSAGE_BYTES = 1 << 30
_ENDPOINT = re.compile(r"^(tcp://[^\s:]+:\d+|ipc://\S+|inproc://\S+)$")


class Exhausted:
    """Returned by ``next`` when a finite source has nothing more (the ingest stops)."""

    def __repr__(self) -> str:
        return "EXHAUSTED"


EXHAUSTED = Exhausted()


class Source(Protocol):
    """What the ingest thread reads from."""

    def resume(self, seen: Mapping[Any, set[int]]) -> None: ...
    def open(self) -> None: ...
    def next(self, timeout: float) -> Message | Malformed | None: ...
    def close(self) -> None: ...


def endpoint(text: str) -> str:
    """A ZeroMQ endpoint; a bare port ``5555`` or ``:5555`` means tcp://127.0.0.1:5555 (loopback
    unless an interface is named)."""
    text = text.strip()
    if re.fullmatch(r":?\d+", text):
        text = f"tcp://127.0.0.1:{text.lstrip(':')}"
    if not _ENDPOINT.match(text):
        raise UserError(f"endpoint {text!r} must look like tcp://127.0.0.1:5555 (or a port number)")
    return text


def check_host_resolves(address: str, *, option: str = "--connect",
                        timeout: float = 5.0) -> None:
    """:class:`UserError` (one line) when the host of ``tcp://HOST:PORT`` does not resolve
    within ``timeout`` s. ZeroMQ resolves in the background and retries for ever, so a
    mistyped detector name would otherwise wait silently until --idle-timeout."""
    import socket
    import threading

    match = re.fullmatch(r"tcp://\[?([^\]\s]+?)\]?:(\d+)", address)
    if match is None or match.group(1) == "*":
        return  # ipc://, inproc://, or a wildcard
    host, port = match.group(1), int(match.group(2))
    outcome: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except (OSError, UnicodeError) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, name="stream3d-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise UserError(f"{option} {address}: the host {host!r} did not resolve within "
                        f"{timeout:g} s (is the name right, and the network up?)")
    if outcome[0] is not None:
        raise UserError(f"{option} {address}: the host {host!r} does not resolve (a typo in "
                        "the detector's name or address?)")


class ZmqSource:
    """A SUB (subscribed to everything) or PULL socket that connects or binds to ``address``."""

    live = True  # a detector: silence means the sender is quiet

    def __init__(self, address: str, *, pattern: str = "sub", bind: bool = False,
                 hwm: int = 1000, curve: CurveServer | None = None) -> None:
        if pattern not in ("sub", "pull"):
            raise UserError(f"--pattern {pattern!r} must be sub or pull")
        self.address = endpoint(address)
        self.pattern, self.bind, self.hwm, self.curve = pattern, bind, hwm, curve
        self._ctx = None
        self._sock = None
        self._guard: ServerGuard | None = None

    def resume(self, seen: Mapping[Any, set[int]]) -> None:
        """Nothing to do: a live detector decides what it sends (the tracker drops repeats)."""

    def open(self) -> None:
        import zmq

        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.SUB if self.pattern == "sub" else zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.LINGER, 0)
        if self.pattern == "sub":
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        if self.curve is not None:
            self._guard = ServerGuard(self._ctx, sock, self.curve)
        warn_if_exposed(self.address, bind=self.bind, secured=self.curve is not None,
                        who="the receiver")
        try:
            (sock.bind if self.bind else sock.connect)(self.address)
        except zmq.ZMQError as exc:
            sock.close()
            if self._guard is not None:
                self._guard.stop()
            self._ctx.term()
            verb = "bind to" if self.bind else "connect to"
            raise UserError(f"cannot {verb} {self.address}: {exc}") from None
        self._sock = sock

    def next(self, timeout: float) -> Message | Malformed | None:
        if not self._sock.poll(int(timeout * 1000)):
            return None
        # copy=False: the pixels stay in ZeroMQ's buffer (no 2nd copy); the array keeps it alive.
        parts = [frame.buffer for frame in self._sock.recv_multipart(copy=False)]
        try:
            return decode(parts)
        except Malformed as exc:
            return exc

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            if self._guard is not None:
                self._guard.stop()
                self._guard = None
            self._ctx.term()
            self._sock = None


class FileSource:
    """Replays a recorded movie as one series: ``start``, its frames, ``end``.

    Frame i has frame number i and timestamp i x ``frame_interval`` s. Frame numbers in
    ``skip`` (already in the run store of a resumed run) are not read again.
    """

    live = False  # a recording: a pause is the pipeline's backpressure, not a quiet sender

    def __init__(self, path: str | Path, *, frame_interval: float, series: str | None = None,
                 skip: Iterable[int] = ()) -> None:
        self.path = Path(path)
        self.series = series if series is not None else self.path.name
        self.frame_interval = frame_interval
        self.skip = set(skip)
        self._movie = None
        self._events: Iterator[Message] | None = None
        self.total = 0

    def resume(self, seen: Mapping[Any, set[int]]) -> None:
        """Skip the frames of this movie already in the run store."""
        self.skip |= set(seen.get(self.series, ()))

    def open(self) -> None:
        self._movie = open_movie(self.path)
        self.total = len(self._movie)
        self._events = self._replay()

    def __len__(self) -> int:
        """Frames in the movie (known once opened; opens it to find out)."""
        if self._movie is None:
            movie = open_movie(self.path)
            self.total = len(movie)
            movie.close()
        return self.total

    def _replay(self) -> Iterator[Message]:
        yield Start(self.series, {})
        for i in range(len(self._movie)):
            if i in self.skip:
                continue
            # Copy: the memory map closes with the movie, the frame may live on in the backlog.
            data = np.array(self._movie[i])
            yield FrameMessage(self.series, i, i * self.frame_interval, data)
        yield End(self.series, len(self._movie))

    def next(self, timeout: float) -> Message | Malformed | Exhausted | None:
        return next(self._events, EXHAUSTED)

    def close(self) -> None:
        if self._movie is not None:
            self._movie.close()
            self._movie = None


class NoSource:
    """No new frames: reconstruct what a run store already holds (``reconstruct RUN --out RUN``)."""

    live = False

    def resume(self, seen: Mapping[Any, set[int]]) -> None:
        pass

    def open(self) -> None:
        pass

    def next(self, timeout: float) -> Exhausted:
        return EXHAUSTED

    def close(self) -> None:
        pass
