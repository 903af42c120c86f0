"""A DECTRIS detector emulator: plays a movie as SIMPLON stream v2 over a bound PUSH socket.

Like the native emulator (:mod:`stream3d.stream.camera`) it injects exact faults: dropped
images (gaps), duplicated images, one malformed message per listed :class:`DectrisKind`, and a
series restart. Images carry 1-3 channels: ``threshold_1`` is the movie frame itself,
``threshold_2`` its half (integer division) and ``difference`` = threshold_1 - threshold_2, as
an EIGER2 sends them; compression bslz4 (default), lz4 or none.
"""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream3d.errors import UserError
from stream3d.stream.camera import Camera, CameraReport, Faults
from stream3d.stream.dectris import DectrisKind, encode_end, encode_image, encode_start
from stream3d.stream.dectris_codec import encode_multidim

CHANNELS = ("threshold_1", "threshold_2", "difference")
COMPRESSIONS = ("bslz4", "lz4", "none")
CORRUPTIBLE = tuple(DectrisKind)


@dataclass(frozen=True)
class StreamFormat:
    """What the emulated detector sends: channel count (1-3), compression, pixel mask."""

    channels: int = 1
    compression: str = "bslz4"  # "bslz4" | "lz4" | "none"
    pixel_mask: np.ndarray | None = None  # uint32 (y, x), nonzero = masked; None: not sent
    saturation: int | None = None  # counts; None = 2^bits - 2 of the movie's dtype

    def check(self) -> None:
        if not 1 <= self.channels <= len(CHANNELS):
            raise UserError(f"--channels {self.channels} must be 1, 2 or 3")
        if self.compression not in COMPRESSIONS:
            raise UserError(f"--compression {self.compression!r} must be one of "
                            f"{', '.join(COMPRESSIONS)}")


def channel_data(frame: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """The channels of one image: the frame, its half, and their difference."""
    frame = np.asarray(frame)
    out = {CHANNELS[0]: frame}
    if count > 1:
        half = frame // 2 if frame.dtype.kind in "ui" else frame / 2
        out[CHANNELS[1]] = half.astype(frame.dtype)
        if count > 2:
            out[CHANNELS[2]] = (frame - out[CHANNELS[1]]).astype(frame.dtype)
    return out


def parse_kinds(text: str) -> tuple[DectrisKind, ...]:
    """``all`` or a comma list of DECTRIS malformed kinds (e.g. ``not_cbor,bad_array``)."""
    if text.strip() == "all":
        return CORRUPTIBLE
    kinds = []
    for name in filter(None, (p.strip() for p in text.split(","))):
        try:
            kinds.append(DectrisKind(name))
        except ValueError:
            raise UserError(f"--corrupt {name!r} is not a kind; use all or some of "
                            f"{', '.join(k.value for k in DectrisKind)}") from None
    return tuple(kinds)


def malformed_message(kind: DectrisKind, series_id: int, unique_id: str, image_id: int,
                      frame: np.ndarray) -> list[bytes]:
    """One message malformed in exactly the way ``kind`` names (for ``series``'s receiver)."""
    import cbor2

    date = _dt.datetime.now(_dt.timezone.utc)
    base = {"type": "image", "series_id": series_id, "series_unique_id": unique_id,
            "image_id": image_id, "start_time": [0, 1]}
    if kind is DectrisKind.NOT_CBOR:
        return [b"\x1c this is not CBOR"]
    if kind is DectrisKind.PART_COUNT:
        good = encode_image(series_id, unique_id, image_id, {CHANNELS[0]: frame},
                            start_time=0.0, frame_time=0.0, series_date=date)
        return [good, b"a second part"]
    if kind is DectrisKind.MISSING_KEYS:
        return [cbor2.dumps({"series_id": series_id, "image_id": image_id})]
    if kind is DectrisKind.BAD_VALUE:
        return [cbor2.dumps({**base, "image_id": "seven",
                             "data": {CHANNELS[0]: encode_multidim(frame, None)}})]
    if kind is DectrisKind.UNKNOWN_TYPE:
        return [cbor2.dumps({"type": "gossip", "series_id": series_id})]
    if kind is DectrisKind.BEFORE_START:
        return [encode_image(series_id, unique_id + "-never-started", image_id,
                             {CHANNELS[0]: frame}, start_time=0.0, frame_time=0.0,
                             series_date=date)]
    if kind is DectrisKind.BAD_ARRAY:
        from stream3d.stream.dectris_codec import TAG_COMPRESSED, compress, typed_array_tag

        algorithm, size, blob = compress(frame, "bslz4", frame.dtype.itemsize)
        cut = cbor2.CBORTag(TAG_COMPRESSED, [algorithm, size, blob[: max(13, len(blob) // 2)]])
        item = cbor2.CBORTag(40, [list(frame.shape),
                                  cbor2.CBORTag(typed_array_tag(frame.dtype), cut)])
        return [cbor2.dumps({**base, "data": {CHANNELS[0]: item}})]
    if kind is DectrisKind.NO_CHANNEL:
        return [cbor2.dumps({**base, "data": {"threshold_9": encode_multidim(frame, None)}})]
    if kind is DectrisKind.SHAPE_CHANGED:
        small = np.zeros((3, 5), frame.dtype)
        return [cbor2.dumps({**base, "data": {c: encode_multidim(small, None)
                                              for c in CHANNELS}})]
    raise ValueError(f"no malformed message for kind {kind!r}")


def play_dectris(movie: Sequence[np.ndarray], camera: Camera, *, fps: float = 0.0,
                 series: int = 1, faults: Faults = Faults(), fmt: StreamFormat = StreamFormat(),
                 frame_time: float | None = None, repeat: int = 1) -> CameraReport:
    """Send ``movie`` as stream v2 series ``series`` (``series + 1`` after a restart) at ``fps``
    images per second (0 = as fast as taken), ``repeat`` times over as one series. Fault
    indices count images of the whole sequence. frame_time (s) = 1 / fps, else 0.01."""
    fmt.check()
    report = CameraReport()
    started = time.monotonic()
    n = len(movie)
    total = n * repeat
    first = np.asarray(movie[0])
    frame_time = frame_time or (1.0 / fps if fps > 0 else 0.01)
    compression = None if fmt.compression == "none" else fmt.compression
    names = CHANNELS[:fmt.channels]
    saturation = fmt.saturation
    if saturation is None:
        saturation = int(np.iinfo(first.dtype).max - 1) if first.dtype.kind in "ui" else 2**31

    def begin(number: int, images: int) -> tuple[str, _dt.datetime]:
        unique = f"{number}-{uuid.uuid4().hex[:12]}"
        camera.send([encode_start(number, unique, channels=names, shape=first.shape,
                                  number_of_images=images, frame_time=frame_time,
                                  saturation=saturation, pixel_mask=fmt.pixel_mask)])
        report.series.append(number)
        return unique, _dt.datetime.now(_dt.timezone.utc)

    encoded: dict[int, dict] = {}  # movie index -> its channels, compressed once (repeats)

    def channels_of(index: int, frame: np.ndarray) -> dict:
        if index not in encoded:
            items = {name: encode_multidim(a, compression)
                     for name, a in channel_data(frame, fmt.channels).items()}
            if repeat == 1:
                return items
            encoded[index] = items
        return encoded[index]

    restart = faults.restart_after
    first_len = restart if restart is not None and restart < total else total
    unique, date = begin(series, first_len)
    numbered = 0
    pending_corrupt = list(faults.corrupt)
    for i in range(total):
        if restart is not None and i == restart:
            camera.send([encode_end(series, unique)])
            series += 1
            numbered = 0
            unique, date = begin(series, total - restart)
        if fps > 0:
            time.sleep(max(0.0, started + i / fps - time.monotonic()))
        frame = np.asarray(movie[i % n])
        if i in faults.drop:
            report.dropped += 1
        else:
            message = encode_image(series, unique, numbered, channels_of(i % n, frame),
                                   start_time=numbered * frame_time, frame_time=frame_time,
                                   series_date=date, compression=compression)
            copies = 2 if i in faults.duplicate else 1
            for _ in range(copies):
                camera.send([message])
                report.frames += 1
            report.duplicated += copies - 1
        numbered += 1
        if pending_corrupt and report.frames > 0:
            kind = pending_corrupt.pop(0)
            camera.send(malformed_message(kind, series, unique, numbered - 1, frame))
            report.corrupted[kind.value] = report.corrupted.get(kind.value, 0) + 1
    camera.send([encode_end(series, unique)])
    report.seconds = time.monotonic() - started
    return report
