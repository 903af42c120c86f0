"""DECTRIS SIMPLON stream v2 (https://github.com/dectris/documentation, stream_v2/README.md).

One CBOR map per ZeroMQ message, its first key ``type``:

* ``start`` (at arm): channels, image_size_x/y, number_of_images, frame_time (s),
  saturation_value, series_id / series_unique_id, pixel_mask {channel: uint32 (y, x)} when
  header_detail = all, and many detector scalars (pixel_size_x/y is the *sensor's* pixel in
  metres, never the specimen's pixel size);
* ``image`` (per exposure): data {channel: tag-40 array}, image_id, start_time [num, den] s
  from series_date;
* ``end`` (at disarm): series_id, series_unique_id.

:func:`parse` turns one message into :class:`StartInfo`, :class:`ImageInfo` or :class:`EndInfo`
(pixels not yet decompressed) or raises :class:`~stream3d.stream.protocol.Malformed`;
:func:`encode_start` / :func:`encode_image` / :func:`encode_end` write them (the camera
emulator). A series is identified by series_unique_id (series_id when that is absent), so a
detector whose series numbers restart after a reboot never collides with an earlier series.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream3d.stream.dectris_codec import CodecError, encode_multidim, multidim_array
from stream3d.stream.protocol import Malformed

# Bounds of what a start message may put in the run's attributes (they are rewritten with
# every frame): scalar fields only, strings cut, small lists and maps of scalars.
MAX_FIELDS = 64
MAX_TEXT = 256
MAX_LIST = 16
_ARRAY_FIELDS = ("pixel_mask", "flatfield", "countrate_correction_lookup_table")


class DectrisKind(str, enum.Enum):
    """Every way a stream v2 message can be malformed (counted like the native kinds)."""

    NOT_CBOR = "not_cbor"  # not decodable CBOR, or not a map
    PART_COUNT = "part_count"  # a ZeroMQ message of more than one part
    MISSING_KEYS = "missing_keys"  # no type, or a field the type needs is absent
    BAD_VALUE = "bad_value"  # a field of the wrong type or an impossible value
    UNKNOWN_TYPE = "unknown_htype"  # type is not start / image / end
    BEFORE_START = "before_start"  # an image or end of a series never started (the tracker)
    BAD_ARRAY = "bad_array"  # a typed / multi-dimensional array or compression that is invalid
    NO_CHANNEL = "no_channel"  # the image lacks the chosen channel
    SHAPE_CHANGED = "shape_changed"  # an image whose size differs from its series' first


def _bad(kind: DectrisKind, detail: str) -> Malformed:
    return Malformed(kind, detail)  # type: ignore[arg-type] - Malformed only reads .value


@dataclass(frozen=True)
class StartInfo:
    series: Any  # the series key: series_unique_id, else series_id
    series_id: int | None
    channels: tuple[str, ...]
    shape: tuple[int, int] | None  # (image_size_y, image_size_x)
    number_of_images: int | None
    frame_time: float | None  # s
    saturation: float | None  # counts, the largest valid value
    masks: Mapping[str, np.ndarray] = field(default_factory=dict)  # channel -> uint32 (y, x)
    scalars: Mapping[str, Any] = field(default_factory=dict)  # bounded, JSON-safe


@dataclass(frozen=True)
class ImageInfo:
    series: Any
    image_id: int
    timestamp: float  # s, start_time from series_date
    data: Mapping[str, Any]  # channel -> undecoded tag-40 item

    def channel(self, name: str) -> np.ndarray:
        """The pixels of channel ``name`` (decompressed now), exactly as sent."""
        if name not in self.data:
            raise _bad(DectrisKind.NO_CHANNEL, f"image {self.image_id} has no channel {name!r} "
                                               f"(it has {', '.join(map(str, self.data))})")
        try:
            array = multidim_array(self.data[name])
        except CodecError as exc:
            raise _bad(DectrisKind.BAD_ARRAY, f"image {self.image_id} channel {name}: {exc}") \
                from None
        if array.ndim != 2 or 0 in array.shape:
            raise _bad(DectrisKind.BAD_ARRAY, f"image {self.image_id} channel {name} has shape "
                                              f"{array.shape}, not (y, x)")
        return array


@dataclass(frozen=True)
class EndInfo:
    series: Any


Info = StartInfo | ImageInfo | EndInfo


# ----------------------------------------------------------------------------- decoding
def parse(message: bytes | memoryview) -> Info:
    """One stream v2 message -> StartInfo | ImageInfo | EndInfo; Malformed for anything else."""
    import cbor2

    try:
        head = cbor2.loads(message)
    except Exception:  # noqa: BLE001 - cbor2 raises several kinds on hostile input
        raise _bad(DectrisKind.NOT_CBOR, f"{len(message)} bytes that are not CBOR") from None
    if not isinstance(head, Mapping):
        raise _bad(DectrisKind.NOT_CBOR, f"CBOR {type(head).__name__}, not a map")
    kind = head.get("type")
    if kind is None:
        raise _bad(DectrisKind.MISSING_KEYS, "a map without type")
    if kind == "start":
        return _start(head)
    if kind == "image":
        return _image(head)
    if kind == "end":
        return EndInfo(_series_key(head))
    raise _bad(DectrisKind.UNKNOWN_TYPE, f"type {str(kind)[:40]!r}")


def _series_key(head: Mapping[str, Any]) -> Any:
    unique, number = head.get("series_unique_id"), head.get("series_id")
    if isinstance(unique, str) and unique:
        return unique
    if _is_int(number):
        return number
    raise _bad(DectrisKind.MISSING_KEYS,
               f"{head.get('type')} without series_unique_id or an integer series_id")


def _image(head: Mapping[str, Any]) -> ImageInfo:
    series = _series_key(head)
    for key in ("image_id", "data"):
        if key not in head:
            raise _bad(DectrisKind.MISSING_KEYS, f"image without {key}")
    image_id, data = head["image_id"], head["data"]
    if not _is_int(image_id) or image_id < 0:
        raise _bad(DectrisKind.BAD_VALUE, "image.image_id must be an integer >= 0")
    if not isinstance(data, Mapping) or not data:
        raise _bad(DectrisKind.BAD_VALUE, "image.data must be a map of channels")
    stamp = rational(head.get("start_time"))
    return ImageInfo(series, image_id, stamp if stamp is not None else math.nan, data)


def _start(head: Mapping[str, Any]) -> StartInfo:
    series = _series_key(head)
    channels = head.get("channels", ())
    if not isinstance(channels, (list, tuple)) or not all(isinstance(c, str) for c in channels):
        raise _bad(DectrisKind.BAD_VALUE, "start.channels must be a list of names")
    sy, sx = head.get("image_size_y"), head.get("image_size_x")
    shape = (sy, sx) if _is_int(sy) and _is_int(sx) and sy > 0 and sx > 0 else None
    count = head.get("number_of_images")
    frame_time = head.get("frame_time")
    # A mask that cannot be used is noted and left out: the series itself is never refused.
    masks: dict[str, np.ndarray] = {}
    problems = []
    raw_masks = head.get("pixel_mask")
    if isinstance(raw_masks, Mapping):
        for name, item in raw_masks.items():
            try:
                mask = multidim_array(item)
            except CodecError as exc:
                problems.append(f"pixel_mask[{name}]: {exc}")
                continue
            if mask.ndim != 2 or (shape is not None and mask.shape != shape):
                problems.append(f"pixel_mask[{name}] has shape {mask.shape}, the images "
                                f"{shape}")
                continue
            masks[str(name)] = mask
    scalars = start_scalars(head)
    if problems:
        scalars["pixel_mask_unused"] = "; ".join(problems)[:MAX_TEXT]
    sat = head.get("saturation_value")
    return StartInfo(
        series=series,
        series_id=head.get("series_id") if _is_int(head.get("series_id")) else None,
        channels=tuple(channels), shape=shape,
        number_of_images=count if _is_int(count) and count >= 0 else None,
        frame_time=float(frame_time) if _is_number(frame_time) and frame_time > 0 else None,
        saturation=float(sat) if _is_number(sat) else None,
        masks=masks, scalars=scalars)


def start_scalars(head: Mapping[str, Any]) -> dict[str, Any]:
    """The start message's scalar fields, JSON-safe and bounded: numbers, booleans, text (cut
    to MAX_TEXT), dates (ISO text), short lists and maps of those; arrays are named, not kept."""
    out: dict[str, Any] = {}
    for key, value in head.items():
        if len(out) >= MAX_FIELDS:
            out["truncated"] = True
            break
        if not isinstance(key, str) or key == "type":
            continue
        if key in _ARRAY_FIELDS:
            out[key] = f"<{', '.join(map(str, value)) if isinstance(value, Mapping) else 'array'}>"
            continue
        kept = _scalar(value, depth=0)
        if kept is not _SKIP:
            out[key[:MAX_TEXT]] = kept
    return out


_SKIP = object()


def _scalar(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if depth < 2 and isinstance(value, (list, tuple)) and len(value) <= MAX_LIST:
        items = [_scalar(v, depth + 1) for v in value]
        return _SKIP if any(i is _SKIP for i in items) else items
    if depth < 2 and isinstance(value, Mapping) and len(value) <= MAX_LIST:
        items = {str(k)[:MAX_TEXT]: _scalar(v, depth + 1) for k, v in value.items()}
        return _SKIP if any(i is _SKIP for i in items.values()) else items
    return _SKIP


def rational(value: Any) -> float | None:
    """A stream v2 Rational [numerator, denominator] as a float (None when not one)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value) \
            and value[1] > 0:
        return value[0] / value[1]
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


# ----------------------------------------------------------------------------- encoding
# Time base of start_time / stop_time: ticks per second, constant for a series (an EIGER2 uses
# 50 MHz; the captures in the public test data say 50000000).
TIME_BASE = 50_000_000


def encode_start(series_id: int, unique_id: str, *, channels: tuple[str, ...],
                 shape: tuple[int, int], number_of_images: int, frame_time: float,
                 saturation: int, pixel_mask: np.ndarray | None = None,
                 extra: Mapping[str, Any] | None = None) -> bytes:
    """A start message; ``pixel_mask`` (uint32 (y, x)) is sent for every channel."""
    import cbor2

    head: dict[str, Any] = {
        "type": "start", "series_id": series_id, "series_unique_id": unique_id,
        "arm_date": _dt.datetime.now(_dt.timezone.utc), "channels": list(channels),
        "count_time": frame_time, "frame_time": frame_time,
        "image_size_x": int(shape[1]), "image_size_y": int(shape[0]),
        "number_of_images": int(number_of_images), "saturation_value": int(saturation),
        "pixel_size_x": 75e-6, "pixel_size_y": 75e-6, "sensor_material": "Si",
        "detector_description": "stream3d DECTRIS stream v2 emulator",
        "pixel_mask_enabled": pixel_mask is not None,
    }
    if pixel_mask is not None:
        mask = np.ascontiguousarray(pixel_mask, dtype="<u4")
        head["pixel_mask"] = {c: encode_multidim(mask, "bslz4") for c in channels}
    head.update(extra or {})
    return cbor2.dumps(head)


def encode_image(series_id: int, unique_id: str, image_id: int, channels: Mapping[str, np.ndarray],
                 *, start_time: float, frame_time: float, series_date: _dt.datetime,
                 compression: str | None = "bslz4") -> bytes:
    """An image message carrying ``channels`` (name -> (y, x) array, compressed as asked, or
    an already encoded tag-40 item)."""
    import cbor2

    start = int(round(start_time * TIME_BASE))
    stop = start + int(round(frame_time * TIME_BASE))
    head = {
        "type": "image", "series_id": series_id, "series_unique_id": unique_id,
        "image_id": int(image_id), "real_time": [stop - start, TIME_BASE],
        "series_date": series_date, "start_time": [start, TIME_BASE],
        "stop_time": [stop, TIME_BASE],
        "data": {name: a if isinstance(a, cbor2.CBORTag) else encode_multidim(a, compression)
                 for name, a in channels.items()},
    }
    return cbor2.dumps(head)


def encode_end(series_id: int, unique_id: str) -> bytes:
    import cbor2

    return cbor2.dumps({"type": "end", "series_id": series_id, "series_unique_id": unique_id})
