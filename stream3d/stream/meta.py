"""The optics a detector sends with a series start (``start.meta``): validated and bounded.

Kept: config sections and keys whose values the config itself accepts (types, finite, in
range: e.g. microscope.energy > 0 eV), and other small scalar entries a detector may add
(finite numbers, booleans, strings up to :data:`MAX_STRING` characters, short lists of
those), at most one level of
sections deep, at most :data:`MAX_META_BYTES` of JSON in all. Everything else is dropped and
counted; what is kept is stored once, with its series' segment in the run store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from stream3d import config as config_mod

MAX_META_BYTES = 64 * 1024  # bytes of JSON kept per series start
MAX_STRING = 1024  # characters of one string value
MAX_KEY = 128  # characters of one key
MAX_LIST = 64  # items of one list value


def _scalar(value: Any) -> bool:
    """A finite number, a boolean, a short string, or a short list of those (a detector's
    channel names, say)."""
    if isinstance(value, list):
        return len(value) <= MAX_LIST and all(_scalar(v) and not isinstance(v, list)
                                              for v in value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_STRING


def _valid_config_value(section: str, key: str, value: Any) -> bool:
    try:
        config_mod.from_dict({section: {key: value}})
    except config_mod.ConfigError:
        return False
    return True


def clean_meta(meta: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """(what is kept of ``meta``, how many entries were dropped). Never raises."""
    sections = config_mod.Config().to_dict()
    kept: dict[str, Any] = {}
    dropped = 0
    budget = MAX_META_BYTES - 2
    for name, value in meta.items():
        if not isinstance(name, str) or len(name) > MAX_KEY:
            dropped += _count(value)
            continue
        if isinstance(value, Mapping):
            table: dict[str, Any] = {}
            overhead = len(json.dumps(name)) + 3  # "name":{} and a comma
            budget -= overhead
            for key, v in value.items():
                ok = isinstance(key, str) and len(key) <= MAX_KEY and (_scalar(v)
                                                                      or _packed_mask(key, v))
                if ok and name in sections and key in sections[name]:
                    ok = _valid_config_value(name, key, v)
                if not ok:
                    dropped += 1
                    continue
                cost = len(json.dumps({key: v})) + 1
                if cost > budget:
                    dropped += 1
                    continue
                budget -= cost
                table[key] = v
            if table:
                kept[name] = table
            else:
                budget += overhead
        elif _scalar(value) and name not in sections:
            cost = len(json.dumps({name: value})) + 1
            if cost > budget:
                dropped += 1
                continue
            budget -= cost
            kept[name] = value
        else:
            dropped += _count(value)
    return kept, dropped


def _packed_mask(key: str, value: Any) -> bool:
    """A detector's pixel mask as :func:`stream3d.stream.pixel_mask.pack_mask` writes it
    (bit-packed, zlib, base64; within the budget like everything else)."""
    if key != "pixel_mask_packed" or not isinstance(value, Mapping):
        return False
    from stream3d.stream.pixel_mask import unpack_mask

    return set(value) == {"shape", "zlib_base64"} and unpack_mask(value) is not None


def _count(value: Any) -> int:
    return len(value) if isinstance(value, Mapping) else 1
