"""The append path's whole-chunk writer: chunk files written directly, byte for byte as zarr
would write them, and atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr


class _ChunkFiles:
    """Whole-chunk writes straight to the chunk files of a local Zarr v3 array.

    Appending at detector rates, zarr's general write path costs about three times the
    compression and the file write themselves per chunk. A t = 1 chunk is a whole file, named
    by the v3 spec's default chunk-key encoding (``c.t.0.0`` here) and encoded by the array's own
    codec chain (``bytes`` little-endian, then ``blosc`` or nothing), so this writes exactly the
    bytes zarr would. :meth:`supports` says whether an array's metadata is of that form (zarr's
    own path is used otherwise). Each file is replaced atomically, like zarr's LocalStore.
    """

    def __init__(self, root: Path, array: zarr.Array) -> None:
        # Plain strings, not pathlib: pathlib interns every name it parses, and a name per
        # chunk (c.t.0.0) would grow the interpreter's interned-string table for ever.
        self.dir = os.path.join(os.fspath(root), array.path)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.sep = array.metadata.chunk_key_encoding.to_dict().get("configuration", {}).get(
            "separator", "/")
        self.zeros = f"{self.sep}0" * (array.ndim - 1)
        blosc = [c for c in array.metadata.codecs if c.to_dict()["name"] == "blosc"]
        self.blosc = _numcodecs_blosc(blosc[0].to_dict()["configuration"]) if blosc else None
        self._made = False

    @staticmethod
    def supports(array: zarr.Array) -> bool:
        meta = array.metadata
        if getattr(meta, "zarr_format", None) != 3 or meta.chunks[0] != 1 \
                or tuple(meta.chunks[1:]) != tuple(array.shape[1:]):
            return False
        enc = meta.chunk_key_encoding.to_dict()
        if enc.get("name") != "default":
            return False
        names = [c.to_dict() for c in meta.codecs]
        if not names or names[0]["name"] != "bytes" or \
                names[0].get("configuration", {}).get("endian", "little") != "little":
            return False
        return [n["name"] for n in names[1:]] in ([], ["blosc"])

    def write(self, t: int, chunk: np.ndarray) -> None:
        data = np.ascontiguousarray(chunk, dtype=self.dtype)
        payload = self.blosc.encode(data) if self.blosc is not None else data.tobytes()
        if not self._made:
            os.makedirs(self.dir, exist_ok=True)
            self._made = True
        _atomic_write(self._path(t), payload)

    def _path(self, t: int) -> str:
        return f"{self.dir}{os.sep}c{self.sep}{t}{self.zeros}"

    def read(self, t: int) -> np.ndarray | None:
        """Chunk t as written by :meth:`write` (None when it was never written: fill value)."""
        try:
            with open(self._path(t), "rb") as f:
                payload = f.read()
        except FileNotFoundError:
            return None
        raw = self.blosc.decode(payload) if self.blosc is not None else payload
        return np.frombuffer(raw, dtype=self.dtype)


def _atomic_write(path: str | Path, payload: bytes) -> None:
    """Replace ``path`` by ``payload`` atomically (a kill leaves the old file or the new one)."""
    tmp = f"{os.fspath(path)}.partial"
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)


def _numcodecs_blosc(config: Mapping[str, Any]):
    from numcodecs import Blosc

    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
               "bitshuffle": Blosc.BITSHUFFLE}[config.get("shuffle", "noshuffle")]
    return Blosc(cname=config["cname"], clevel=int(config["clevel"]), shuffle=shuffle,
                 blocksize=int(config.get("blocksize", 0)))
