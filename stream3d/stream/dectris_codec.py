"""CBOR building blocks of DECTRIS SIMPLON stream v2: typed arrays, multi-dimensional arrays and
the DECTRIS compression tag (https://github.com/dectris/documentation, stream_v2 and cbor/).

* RFC 8746 typed arrays: tag 64..87 + byte string; the tag number encodes the element type
  (``0b010_f_s_e_ll``: float, signed, little-endian, log2 of the size).
* RFC 8746 multi-dimensional arrays: tag 40 = [dims, typed array], row-major; tag 1040 the same
  column-major.
* DECTRIS tag 56500 = [algorithm, modifier, bytes] stands wherever a byte string may: ``"bslz4"``
  (bitshuffle + LZ4, HDF5 filter framing, modifier = element size in bytes) or ``"lz4"`` (LZ4,
  HDF5 filter framing, modifier unused, 0).

The HDF5 framing of both: 8 bytes big-endian uncompressed size, 4 bytes big-endian block size
(bytes), then per block a 4-byte big-endian compressed size and the LZ4 block. Decoding uses
well-kept libraries: cbor2 for CBOR, bitshuffle (its LZ4 + bit-unshuffle kernels) and lz4.

:func:`decode_value` turns the tags of a decoded CBOR tree into numpy arrays / bytes after
``cbor2.loads`` without a tag hook, which works the same on every cbor2 major version (the
hook's signature changed between 5 and 6). Every problem raises :class:`CodecError`.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

TAG_MULTIDIM = 40
TAG_MULTIDIM_COLUMN_MAJOR = 1040
TAG_COMPRESSED = 56500
# The largest decompressed byte string accepted (a malicious size header cannot exhaust RAM):
# 1 GiB, the receiver's largest message.
MAX_DECOMPRESSED = 1 << 30
_LZ4_HDF5_BLOCK = 1 << 30  # the HDF5 LZ4 filter's default block size (bytes)
_BSLZ4_BLOCK = 8192  # bytes per bitshuffle block, as DECTRIS detectors send it


class CodecError(ValueError):
    """A CBOR item that is not a valid typed array, multi-dimensional array or compressed string."""


# ----------------------------------------------------------------------------- typed arrays
def typed_array_dtype(tag: int) -> np.dtype:
    """The numpy dtype of RFC 8746 typed-array tag ``tag`` (64..87; 68 = clamped uint8)."""
    if not 64 <= tag <= 87 or tag == 76:
        raise CodecError(f"tag {tag} is not an RFC 8746 typed array")
    low = tag - 64
    is_float, signed, little, size = low >> 4 & 1, low >> 3 & 1, low >> 2 & 1, low & 3
    order = "<" if little else ">"
    if is_float:
        if signed:
            raise CodecError(f"tag {tag} is not an RFC 8746 typed array")
        if size == 3:
            raise CodecError("128-bit float typed arrays are not supported")
        return np.dtype(f"{order}f{2 << size}")
    return np.dtype(f"{order}{'i' if signed else 'u'}{1 << size}")


def typed_array_tag(dtype: np.dtype) -> int:
    """The RFC 8746 tag of ``dtype`` (its byte order kept; 1-byte types are tag 64 / 72)."""
    dtype = np.dtype(dtype)
    size = {1: 0, 2: 1, 4: 2, 8: 3}.get(dtype.itemsize)
    if dtype.kind not in "uif" or size is None or (dtype.kind == "f" and dtype.itemsize == 1):
        raise CodecError(f"dtype {dtype} has no RFC 8746 typed array tag")
    little = dtype.byteorder == "<" or (dtype.byteorder == "=" and np.little_endian) \
        or dtype.itemsize == 1
    if dtype.kind == "f":
        return 64 + 16 + (4 if little else 0) + size - 1
    return 64 + (8 if dtype.kind == "i" else 0) + (4 if little and dtype.itemsize > 1 else 0) + size


# ----------------------------------------------------------------------------- compression
def _header(blob: bytes | memoryview) -> tuple[int, int]:
    if len(blob) < 12:
        raise CodecError(f"compressed data of {len(blob)} bytes has no 12-byte header")
    total, block = struct.unpack(">QI", bytes(blob[:12]))
    if total > MAX_DECOMPRESSED:
        raise CodecError(f"compressed data claims {total} bytes (more than {MAX_DECOMPRESSED})")
    return total, block


def decompress(algorithm: Any, modifier: Any, blob: Any) -> bytes:
    """The byte string that a DECTRIS compression tag stands for."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CodecError("compressed data must be a byte string")
    if algorithm == "bslz4":
        if not isinstance(modifier, int) or modifier not in (1, 2, 4, 8):
            raise CodecError(f"bslz4 element size must be 1, 2, 4 or 8, got {modifier!r}")
        return _bslz4_decompress(blob, modifier)
    if algorithm == "lz4":
        return _lz4_decompress(blob)
    raise CodecError(f"compression {str(algorithm)[:20]!r} is not bslz4 or lz4")


def _bslz4_decompress(blob: bytes | memoryview, elem_size: int) -> bytes:
    import bitshuffle

    total, block = _header(blob)
    if total % elem_size or (block and block % elem_size):
        raise CodecError(f"bslz4: {total} bytes / block {block} do not fit element size "
                         f"{elem_size}")
    import lz4.block

    # bitshuffle's own decompress_lz4 trusts its input (a corrupt block crashes the process),
    # so the LZ4 blocks are checked and decompressed by lz4's safe decoder, and bitshuffle
    # only undoes the bit transposition (a pure permutation of bytes we have checked).
    elems, per_block = total // elem_size, block // elem_size
    if per_block == 0 or per_block % 8:
        raise CodecError(f"bslz4 block of {block} bytes is not a multiple of 8 elements")
    sizes = [per_block] * (elems // per_block)
    last = elems % per_block - elems % 8
    if last:
        sizes.append(last)
    view = memoryview(blob)[12:]
    end = len(view)
    parts, pos, done = [], 0, 0
    unpack, decompress_block = struct.Struct(">I").unpack_from, lz4.block.decompress
    for count in sizes:
        want = count * elem_size
        if pos + 4 > end:
            raise CodecError(f"bslz4 data ends after {done} of {total} bytes")
        (size,) = unpack(view, pos)
        if pos + 4 + size > end:
            raise CodecError(f"bslz4 block of {size} bytes is cut short")
        try:
            chunk = decompress_block(view[pos + 4:pos + 4 + size], uncompressed_size=want)
        except Exception as exc:  # noqa: BLE001 - lz4 raises LZ4BlockError
            raise CodecError(f"bslz4 data is corrupt: {exc}") from None
        if len(chunk) != want:
            raise CodecError(f"bslz4 block gave {len(chunk)} bytes, expected {want}")
        parts.append(chunk)
        pos, done = pos + 4 + size, done + want
    tail = total - done  # the last elems % 8 elements are stored as they are
    if end - pos != tail:
        raise CodecError(f"bslz4 data has {end - pos} bytes after its blocks, expected {tail}")
    parts.append(view[pos:])
    shuffled = np.frombuffer(b"".join(parts), dtype=np.dtype(f"u{elem_size}"))
    return bitshuffle.bitunshuffle(shuffled, per_block).view(np.uint8).data


def _lz4_decompress(blob: bytes | memoryview) -> bytes:
    import lz4.block

    total, block = _header(blob)
    if block == 0 and total:
        raise CodecError("lz4: block size 0")
    view = memoryview(blob)[12:]
    out = bytearray()
    pos = 0
    while len(out) < total:
        want = min(block, total - len(out))
        if pos + 4 > len(view):
            raise CodecError(f"lz4 data ends after {len(out)} of {total} bytes")
        (size,) = struct.unpack(">I", view[pos:pos + 4])
        chunk = view[pos + 4:pos + 4 + size]
        pos += 4 + size
        if len(chunk) != size:
            raise CodecError(f"lz4 block of {size} bytes is cut short")
        if size == want:  # the HDF5 filter stores a block that does not shrink as it is
            out += chunk
            continue
        try:
            out += lz4.block.decompress(bytes(chunk), uncompressed_size=want)
        except Exception as exc:  # noqa: BLE001 - lz4 raises LZ4BlockError
            raise CodecError(f"lz4 data is corrupt: {exc}") from None
    return bytes(out)


def compress(data: bytes | np.ndarray, algorithm: str, elem_size: int = 1) -> list[Any]:
    """``[algorithm, modifier, bytes]``, the content of a DECTRIS compression tag."""
    raw = np.ascontiguousarray(data).view(np.uint8).ravel() if isinstance(data, np.ndarray) \
        else np.frombuffer(data, np.uint8)
    if algorithm == "bslz4":
        import bitshuffle

        if raw.size % elem_size:
            raise CodecError(f"{raw.size} bytes are not whole {elem_size}-byte elements")
        elems = raw.view(np.dtype(f"u{elem_size}"))
        block = _BSLZ4_BLOCK // elem_size
        body = bitshuffle.compress_lz4(elems, block)
        head = struct.pack(">QI", raw.size, block * elem_size)
        return ["bslz4", elem_size, head + body.tobytes()]
    if algorithm == "lz4":
        import lz4.block

        parts = [struct.pack(">QI", raw.size, _LZ4_HDF5_BLOCK)]
        for lo in range(0, raw.size, _LZ4_HDF5_BLOCK):
            block = raw[lo:lo + _LZ4_HDF5_BLOCK].tobytes()
            packed = lz4.block.compress(block, store_size=False)
            if len(packed) >= len(block):
                packed = block
            parts += [struct.pack(">I", len(packed)), packed]
        return ["lz4", 0, b"".join(parts)]
    raise CodecError(f"compression {algorithm!r} is not bslz4 or lz4")


# ----------------------------------------------------------------------------- tree decoding
def byte_string(item: Any) -> bytes | memoryview:
    """A byte string, or what a compression tag stands for."""
    import cbor2

    if isinstance(item, (bytes, bytearray, memoryview)):
        return item
    if isinstance(item, cbor2.CBORTag) and item.tag == TAG_COMPRESSED:
        value = item.value
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise CodecError("compression tag must hold [algorithm, modifier, bytes]")
        return decompress(*value)
    raise CodecError(f"expected a byte string, got {type(item).__name__}")


def typed_array(item: Any) -> np.ndarray:
    """A 1D numpy array (read-only) from an RFC 8746 typed-array tag."""
    import cbor2

    if not isinstance(item, cbor2.CBORTag):
        raise CodecError(f"expected a typed array tag, got {type(item).__name__}")
    dtype = typed_array_dtype(item.tag)
    raw = byte_string(item.value)
    if len(raw) % dtype.itemsize:
        raise CodecError(f"typed array of {len(raw)} bytes is not whole {dtype} elements")
    return np.frombuffer(raw, dtype=dtype)


def multidim_array(item: Any) -> np.ndarray:
    """An N-D numpy array from tag 40 (row-major) or 1040 (column-major) [dims, typed array]."""
    import cbor2

    if not isinstance(item, cbor2.CBORTag) or item.tag not in (TAG_MULTIDIM,
                                                               TAG_MULTIDIM_COLUMN_MAJOR):
        raise CodecError("expected a multi-dimensional array (tag 40 or 1040)")
    value = item.value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise CodecError("multi-dimensional array must hold [dims, typed array]")
    dims, data = value
    if not isinstance(dims, (list, tuple)) or not dims or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in dims):
        raise CodecError(f"multi-dimensional array dims must be integers >= 0, got "
                         f"{str(dims)[:40]}")
    flat = typed_array(data)
    count = int(np.prod(dims, dtype=np.int64))
    if flat.size != count:
        raise CodecError(f"multi-dimensional array {list(dims)} needs {count} elements, "
                         f"got {flat.size}")
    order = "C" if item.tag == TAG_MULTIDIM else "F"
    return flat.reshape(tuple(dims), order=order)


def encode_multidim(array: np.ndarray, compression: str | None = "bslz4") -> Any:
    """Tag 40 [dims, typed array] of ``array`` (row-major), its bytes compressed when asked."""
    import cbor2

    array = np.ascontiguousarray(array)
    raw: Any = array.tobytes()
    if compression:
        raw = cbor2.CBORTag(TAG_COMPRESSED, compress(array, compression, array.dtype.itemsize))
    return cbor2.CBORTag(TAG_MULTIDIM, [list(array.shape),
                                        cbor2.CBORTag(typed_array_tag(array.dtype), raw)])
