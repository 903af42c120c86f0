"""Wire protocol and stream tracking: round trips, every malformed kind, gap/duplicate arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream3d.store import RawFrame
from stream3d.stream.camera import malformed_message, parse_kinds
from stream3d.stream.protocol import (
    End, FrameMessage, Kind, Malformed, Start, decode, encode_end, encode_frame, encode_start,
)
from stream3d.stream.tracker import Tracker


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<f4", "|u1", "<i4", "<f8"])
def test_frame_round_trip_keeps_bytes_and_dtype(dtype):
    data = (np.arange(12 * 7).reshape(12, 7) * 3).astype(dtype)
    parts = encode_frame("s", 5, 12.5, data)
    head = json.loads(parts[0])
    assert head == {"htype": "frame", "series": "s", "frame": 5, "shape": [12, 7],
                    "dtype": np.dtype(dtype).str, "timestamp": 12.5}
    msg = decode(parts)
    assert isinstance(msg, FrameMessage) and msg.frame == 5 and msg.timestamp == 12.5
    assert msg.data.dtype == np.dtype(dtype) and msg.data.tobytes() == data.tobytes()


def test_start_and_end_round_trip():
    assert decode(encode_start(3, {"microscope": {"defocus": 1500.0}})) == \
        Start(3, {"microscope": {"defocus": 1500.0}})
    assert decode(encode_end(3, 10)) == End(3, 10)
    assert decode([b'{"htype":"start","series":"a"}']) == Start("a", {})


DECODE_KINDS = [k for k in Kind if k not in (Kind.BEFORE_START, Kind.SHAPE_CHANGED)]


@pytest.mark.parametrize("kind", DECODE_KINDS, ids=lambda k: k.value)
def test_each_malformed_message_is_refused_with_its_kind(kind):
    data = np.ones((4, 6), np.uint16)
    with pytest.raises(Malformed) as info:
        decode(malformed_message(kind, 1, 0, data))
    assert info.value.kind is kind


@pytest.mark.parametrize("parts, kind", [
    ([b"[1, 2]"], Kind.MISSING_KEYS),
    ([b'{"htype": 7}'], Kind.UNKNOWN_HTYPE),
    ([b'{"htype":"start","series":"a"}', b"extra"], Kind.PART_COUNT),
    ([b'{"htype":"end","series":"a"}'], Kind.MISSING_KEYS),
    ([b'{"htype":"end","series":"a","frames":-1}'], Kind.BAD_VALUE),
    ([b'{"htype":"start","series":[1],"meta":{}}'], Kind.BAD_VALUE),
    ([b'{"htype":"start","series":1,"meta":[]}'], Kind.BAD_VALUE),
    ([b'{"htype":"frame","series":1,"frame":true,"shape":[1,1],"dtype":"<u2","timestamp":0}',
      b"\0\0"], Kind.BAD_VALUE),
    ([b'{"htype":"frame","series":1,"frame":0,"shape":[1,1],"dtype":"<u2","timestamp":NaN}',
      b"\0\0"], Kind.BAD_VALUE),
    ([b'{"htype":"frame","series":1,"frame":0,"shape":[1,0],"dtype":"<u2","timestamp":0}',
      b""], Kind.BAD_VALUE),
    ([b'{"htype":"frame","series":1,"frame":0,"shape":[1,1],"dtype":"O","timestamp":0}',
      b"\0" * 8], Kind.UNKNOWN_DTYPE),
    ([b'{"htype":"frame","series":1,"frame":0,"shape":[1,1],"dtype":"u2,u2","timestamp":0}',
      b"\0" * 4], Kind.UNKNOWN_DTYPE),
    ([b'{"htype":"frame","series":1,"frame":0,"shape":[2,2],"dtype":"<u2","timestamp":0}',
      b"\0" * 9], Kind.BYTE_COUNT),
])
def test_more_malformed_shapes(parts, kind):
    with pytest.raises(Malformed) as info:
        decode(parts)
    assert info.value.kind is kind


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=3))
def test_decode_never_raises_anything_but_malformed_on_garbage(parts):
    try:
        decode(parts)
    except Malformed:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["htype", "series", "frame", "shape", "dtype",
                                        "timestamp", "frames", "meta"]),
                       st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                                 st.floats(allow_nan=False), st.text(max_size=4),
                                 st.sampled_from(["frame", "start", "end", "<u2", "<f4"]),
                                 st.lists(st.integers(-1, 3), max_size=3))),
       st.binary(max_size=40))
def test_decode_never_raises_anything_but_malformed_on_odd_headers(head, payload):
    try:
        msg = decode([json.dumps(head).encode(), payload])
    except Malformed:
        return
    assert isinstance(msg, FrameMessage)  # only a frame has two parts
    assert msg.data.nbytes == len(payload)


def _frame(series, n, shape=(4, 6), dtype=np.uint16):
    return decode(encode_frame(series, n, float(n), np.full(shape, n, dtype)))


def test_gaps_duplicates_and_late_frames_are_counted_exactly():
    tr = Tracker()
    assert tr.accept(Start("a")) == Start("a")
    accepted = [tr.accept(_frame("a", n)) for n in (0, 1, 3, 3, 2, 6)]
    assert [a.frame_id if a else None for a in accepted] == [0, 1, 3, None, 2, 6]
    assert isinstance(accepted[0], RawFrame)
    # 3 skips 2 (+1), duplicate 3, late 2 fills the hole (-1), 6 skips 4, 5 (+2)
    assert tr.counters == {"received": 5, "malformed": 0, "gaps": 2, "duplicates": 1}
    tr.accept(End("a", 8))  # frame 7 never came: +1
    assert tr.counters["gaps"] == 3


def test_first_frame_late_counts_the_frames_before_it_and_series_restart_starts_over():
    tr = Tracker()
    tr.accept(Start(1))
    tr.accept(_frame(1, 2))  # frames 0 and 1 lost before we joined
    tr.accept(Start(2))
    for n in range(3):
        assert tr.accept(_frame(2, n)) is not None
    assert tr.counters == {"received": 4, "malformed": 0, "gaps": 2, "duplicates": 0}


def test_stateful_malformed_kinds_before_start_and_shape_changed():
    tr = Tracker()
    assert tr.accept(_frame("x", 0)) is None  # no start yet
    assert tr.accept(End("x", 1)) is None
    tr.accept(Start("x"))
    assert tr.accept(_frame("x", 0)) is not None
    assert tr.accept(_frame("x", 1, shape=(5, 6))) is None
    assert tr.accept(_frame("x", 2, dtype=np.float32)) is None
    assert tr.accept(_frame("x", 3)) is not None
    assert tr.by_kind == {"before_start": 2, "shape_changed": 2}
    assert tr.counters == {"received": 2, "malformed": 4, "gaps": 2, "duplicates": 0}


def test_resumed_tracker_drops_what_the_store_has_and_knows_its_series():
    tr = Tracker(seen={"a": {0, 1, 2}}, counters={"received": 3, "gaps": 0})
    assert tr.accept(_frame("a", 2)) is None  # no start needed: the series is known
    assert tr.accept(_frame("a", 3)) is not None
    assert tr.counters == {"received": 4, "malformed": 0, "gaps": 0, "duplicates": 1}


def test_camera_kind_names_parse():
    assert parse_kinds("all") == tuple(Kind)
    assert parse_kinds("not_json, byte_count") == (Kind.NOT_JSON, Kind.BYTE_COUNT)
    with pytest.raises(ValueError, match="not a kind"):
        parse_kinds("gibberish")
