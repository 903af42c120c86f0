"""DECTRIS stream v2 decoding: the real EIGER2 R 500K captures, decoded exactly, every channel.

"Exactly" is checked against an independent decoder written here from the format's definition
(LZ4 blocks by the lz4 library, the bit transposition by numpy), not against our own output;
the message fields are checked against the values the capture's bytes spell out.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cbor2
import lz4.block
import numpy as np
import pytest

from stream3d.stream.dectris import (
    DectrisKind, EndInfo, ImageInfo, StartInfo, encode_end, encode_image, encode_start, parse,
)
from stream3d.stream.dectris_codec import (
    CodecError, compress, decompress, encode_multidim, multidim_array, typed_array_dtype,
    typed_array_tag,
)
from stream3d.stream.protocol import Malformed

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dectris-stream2" \
    / "r500k_bm_bslz4_8bit"
needs_captures = pytest.mark.skipif(not CAPTURES.exists(), reason="DECTRIS captures not present")
CHANNELS = ("threshold_1", "threshold_2", "difference")


def reference_bslz4(blob: bytes, dtype: np.dtype) -> np.ndarray:
    """bitshuffle/LZ4 with HDF5 framing, decoded from its definition (slow, independent)."""
    total, block = struct.unpack(">QI", blob[:12])
    size = dtype.itemsize
    n, per = total // size, block // size
    counts = [per] * (n // per) + ([n % per - n % 8] if n % per - n % 8 else [])
    pos, parts = 12, []
    for count in counts:
        (csize,) = struct.unpack(">I", blob[pos:pos + 4])
        raw = lz4.block.decompress(blob[pos + 4:pos + 4 + csize], uncompressed_size=count * size)
        pos += 4 + csize
        # Transposed bit matrix: row r = bit (r % 8) of byte (r // 8) of every element.
        bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
        bits = bits.reshape(8 * size, count).T  # (element, byte * 8 + bit)
        parts.append(np.packbits(bits, axis=1, bitorder="little").reshape(-1))
    parts.append(np.frombuffer(blob[pos:], np.uint8))
    return np.concatenate(parts).view(dtype)


def raw_items(path: Path) -> dict:
    return cbor2.loads(path.read_bytes())


@needs_captures
@pytest.mark.parametrize("name, image_id", [("000001", 0), ("000002", 1)])
def test_real_eiger_images_decode_exactly_in_every_channel(name, image_id):
    message = (CAPTURES / f"{name}.cbor").read_bytes()
    info = parse(message)
    assert isinstance(info, ImageInfo)
    assert info.series == "01GRXWS1MWTNK0GJYNYKDWCNBY" and info.image_id == image_id
    assert info.timestamp == image_id * 0.01  # start_time [image_id * 500000, 50 MHz]
    assert sorted(info.data) == sorted(CHANNELS)
    items = raw_items(CAPTURES / f"{name}.cbor")
    for channel in CHANNELS:
        ours = info.channel(channel)
        dims, typed = items["data"][channel].value
        assert typed.tag == 64  # uint8
        algorithm, elem, blob = typed.value.value
        assert (algorithm, elem) == ("bslz4", 1)
        expected = reference_bslz4(bytes(blob), np.dtype(np.uint8)).reshape(dims)
        assert ours.shape == (514, 1030) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, expected)


@needs_captures
def test_capture_statistics_are_those_of_a_real_low_count_exposure():
    """Independent facts about the capture: counts 0..4 in the thresholds, the difference
    channel keeps 255 (NODATA) where threshold_2 exceeds threshold_1."""
    info = parse((CAPTURES / "000001.cbor").read_bytes())
    t1, t2, diff = (info.channel(c) for c in CHANNELS)
    assert int(t1.sum()) == 908237 and int(t2.sum()) == 909435
    assert t1.max() == 4 and t2.max() == 4
    under = t2.astype(int) > t1.astype(int)
    assert (diff[under] == 255).all()
    ok = ~under & (diff != 255)
    np.testing.assert_array_equal(diff[ok], (t1.astype(int) - t2)[ok])


@needs_captures
def test_real_end_message():
    info = parse((CAPTURES / "000011.cbor").read_bytes())
    assert info == EndInfo("01GRXWS1MWTNK0GJYNYKDWCNBY")


@needs_captures
def test_our_bslz4_encoder_reproduces_the_detectors_bytes():
    items = raw_items(CAPTURES / "000001.cbor")
    info = parse((CAPTURES / "000001.cbor").read_bytes())
    for channel in CHANNELS:
        sent = items["data"][channel].value[1].value.value
        assert compress(info.channel(channel), "bslz4", 1) == ["bslz4", 1, bytes(sent[2])]


@pytest.mark.parametrize("dtype", ["<u1", "<u2", "<u4", ">u2", "<i2", ">i4", "<f4", ">f8"])
@pytest.mark.parametrize("compression", ["bslz4", "lz4", None])
def test_every_bit_depth_and_compression_round_trips(dtype, compression):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 3000, (37, 53)).astype(dtype)
    item = cbor2.loads(cbor2.dumps(encode_multidim(frame, compression)))
    out = multidim_array(item)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, frame)


def test_typed_array_tags_follow_rfc_8746():
    assert typed_array_dtype(64) == np.uint8 and typed_array_dtype(69) == np.dtype("<u2")
    assert typed_array_dtype(70) == np.dtype("<u4") and typed_array_dtype(65) == np.dtype(">u2")
    assert typed_array_dtype(85) == np.dtype("<f4") and typed_array_dtype(78) == np.dtype("<i4")
    for tag in (64, 65, 66, 67, 69, 70, 71, 72, 73, 74, 75, 77, 78, 79, 80, 81, 82, 84, 85, 86):
        assert typed_array_tag(typed_array_dtype(tag)) == tag
    with pytest.raises(CodecError):
        typed_array_dtype(76)


def test_column_major_arrays_are_transposed_back():
    frame = np.arange(12, dtype="<u2").reshape(3, 4)
    tag = cbor2.CBORTag(1040, [[3, 4], cbor2.CBORTag(69, frame.T.copy().tobytes())])
    np.testing.assert_array_equal(multidim_array(tag), frame)


def test_lz4_blocks_that_do_not_shrink_are_stored_raw():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 5000, dtype=np.uint8)  # incompressible
    algorithm, _, blob = compress(noise, "lz4")
    assert struct.unpack(">I", blob[12:16])[0] == 5000  # stored as it is
    assert decompress(algorithm, 0, blob) == noise.tobytes()


def test_corrupt_compressed_data_is_refused_never_a_crash():
    frame = np.random.default_rng(1).integers(0, 60, (64, 80)).astype(np.uint16)
    _, _, blob = compress(frame, "bslz4", 2)
    rng = np.random.default_rng(2)
    refused = 0
    for _ in range(200):  # bitshuffle's own decoder would crash the process on some of these
        damaged = bytearray(blob)
        for _ in range(4):
            damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
        cut = bytes(damaged[: rng.integers(0, len(damaged) + 1)])
        try:
            out = decompress("bslz4", 2, cut)
            assert len(out) == struct.unpack(">Q", cut[:8])[0]
        except CodecError:
            refused += 1
    assert refused > 150
    with pytest.raises(CodecError, match="claims"):
        decompress("bslz4", 2, struct.pack(">QI", 1 << 40, 8192))
    with pytest.raises(CodecError, match="not bslz4 or lz4"):
        decompress("zstd", 0, blob)


def test_start_message_fields_are_read_and_bounded():
    mask = np.zeros((4, 6), np.uint32)
    mask[1, 2] = 1
    mask[3, :] = 4
    message = encode_start(7, "abc", channels=("threshold_1", "threshold_2"), shape=(4, 6),
                           number_of_images=9, frame_time=0.002, saturation=1000,
                           pixel_mask=mask, extra={"user_data": {"note": "x" * 1000},
                                                   "flatfield": {"threshold_1": b"raw"}})
    info = parse(message)
    assert isinstance(info, StartInfo)
    assert (info.series, info.series_id, info.shape, info.number_of_images) == ("abc", 7, (4, 6), 9)
    assert info.frame_time == 0.002 and info.saturation == 1000.0
    assert info.channels == ("threshold_1", "threshold_2")
    np.testing.assert_array_equal(info.masks["threshold_2"], mask)
    s = info.scalars
    assert s["pixel_size_x"] == 75e-6 and s["image_size_x"] == 6
    assert s["pixel_mask"] == "<threshold_1, threshold_2>" and s["flatfield"] == "<threshold_1>"
    assert len(s["user_data"]["note"]) == 256  # text is cut
    assert isinstance(s["arm_date"], str)
    wrong = encode_start(7, "abc", channels=("t",), shape=(5, 6), number_of_images=1,
                         frame_time=0.1, saturation=10, pixel_mask=mask)
    info = parse(wrong)  # a mask of another shape is left out, the series is kept
    assert info.masks == {} and "has shape (4, 6)" in info.scalars["pixel_mask_unused"]


@pytest.mark.parametrize("message, kind", [
    (b"\x1c not cbor", DectrisKind.NOT_CBOR),
    (cbor2.dumps([1, 2]), DectrisKind.NOT_CBOR),
    (cbor2.dumps({"series_id": 1}), DectrisKind.MISSING_KEYS),
    (cbor2.dumps({"type": "image", "image_id": 0, "data": {}}), DectrisKind.MISSING_KEYS),
    (cbor2.dumps({"type": "image", "series_id": 1, "image_id": -1, "data": {"a": 1}}),
     DectrisKind.BAD_VALUE),
    (cbor2.dumps({"type": "gossip"}), DectrisKind.UNKNOWN_TYPE),
])
def test_malformed_messages_name_their_kind(message, kind):
    with pytest.raises(Malformed) as err:
        parse(message)
    assert err.value.kind is kind


def test_an_image_with_a_broken_array_is_malformed_when_its_channel_is_read():
    import datetime as dt

    good = encode_image(1, "u", 0, {"threshold_1": np.zeros((2, 3), np.uint16)},
                        start_time=0.5, frame_time=0.1,
                        series_date=dt.datetime.now(dt.timezone.utc))
    info = parse(good)
    assert info.timestamp == 0.5
    with pytest.raises(Malformed) as err:
        info.channel("threshold_2")
    assert err.value.kind is DectrisKind.NO_CHANNEL
    bad = parse(cbor2.dumps({"type": "image", "series_id": 1, "image_id": 0,
                             "data": {"t": cbor2.CBORTag(40, [[2, 3], cbor2.CBORTag(69, b"x")])}}))
    with pytest.raises(Malformed) as err:
        bad.channel("t")
    assert err.value.kind is DectrisKind.BAD_ARRAY
    assert parse(encode_end(3, "")).series == 3  # no unique id: the series number
