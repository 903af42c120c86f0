"""Pixels that carry no counts: a detector's pixel mask, NODATA and saturated values.

The raw frame is always stored untouched; compute (pop-out and refinement) gets the frame with
those pixels replaced by the median of their valid neighbours, so a dead column or a module gap
(NODATA = 2^bits - 1 on DECTRIS detectors) is never read as a bright line of counts.

:class:`PixelRule` says which pixels of a series are excluded; :class:`MaskedStages` wraps the
compute stages so that each frame is cleaned by the rule of the latest series before pop-out
and refinement (the rule is a snapshot when a task is shipped to another process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream3d.io.dose import FirstFrameDose, is_auto
from stream3d.stream.compute import Stages


@dataclass(frozen=True)
class PixelRule:
    """Excluded pixels: ``mask`` (y, x) True where the detector flags a pixel, and every value
    above ``limit`` (counts; the detector's saturation value, else 2^bits - 2 so that NODATA
    2^bits - 1 is out). Float frames: NaN and infinities are out."""

    mask: np.ndarray | None = None
    limit: float | None = None

    @classmethod
    def for_dtype(cls, dtype: np.dtype, *, mask: np.ndarray | None = None,
                  saturation: int | float | None = None) -> PixelRule:
        """The rule of a detector series: mask bits nonzero -> excluded; values above the
        saturation value (or NODATA of an integer ``dtype``) excluded."""
        dtype = np.dtype(dtype)
        limit: float | None = None
        if dtype.kind in "ui":
            nodata = np.iinfo(dtype).max
            limit = float(nodata - 1)
            if saturation is not None and 0 <= saturation < nodata:
                limit = float(saturation)
        flags = None if mask is None else np.asarray(mask) != 0
        if flags is not None and not flags.any():
            flags = None
        return cls(flags, limit)

    def invalid(self, frame: np.ndarray) -> np.ndarray:
        """Boolean (y, x): True where ``frame`` holds no usable count."""
        frame = np.asarray(frame)
        bad = ~np.isfinite(frame) if frame.dtype.kind == "f" else np.zeros(frame.shape, bool)
        if self.limit is not None:
            bad |= frame > self.limit
        if self.mask is not None and self.mask.shape == frame.shape:
            bad |= self.mask
        return bad

    def count(self, frame: np.ndarray) -> int:
        """How many pixels of ``frame`` are excluded."""
        frame = np.asarray(frame)
        if frame.dtype.kind in "ui" and self.limit is not None and frame.max() <= self.limit:
            return int(np.count_nonzero(self.mask)) if self.mask is not None and \
                self.mask.shape == frame.shape else 0  # the common case: one fast pass
        return int(np.count_nonzero(self.invalid(frame)))

    def clean(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` as float32 with every excluded pixel replaced by a local median."""
        frame = np.asarray(frame, dtype=np.float32)
        bad = self.invalid(frame)
        return fill_invalid(frame, bad) if bad.any() else frame


def fill_invalid(frame: np.ndarray, invalid: np.ndarray, radius: int = 2) -> np.ndarray:
    """A float32 copy of ``frame`` where each invalid pixel is the median of the valid pixels
    in its (2 radius + 1)² neighbourhood; wide gaps fill from their edges inwards, layer by
    layer. A frame with no valid pixel becomes zeros."""
    out = np.array(frame, dtype=np.float32, copy=True)
    bad = np.array(invalid, dtype=bool, copy=True)
    if bad.all():
        out[:] = 0.0
        return out
    ny, nx = out.shape
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    while bad.any():
        ys, xs = np.nonzero(bad)
        values = np.full((ys.size, len(offsets)), np.nan, np.float32)
        for j, (dy, dx) in enumerate(offsets):
            yy, xx = ys + dy, xs + dx
            inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            yy, xx = np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)
            ok = inside & ~bad[yy, xx]
            values[ok, j] = out[yy[ok], xx[ok]]
        has = ~np.isnan(values).all(axis=1)
        if has.any():
            out[ys[has], xs[has]] = np.nanmedian(values[has], axis=1)
        bad[ys[has], xs[has]] = False  # filled pixels feed the next layer of a wide gap
    return out


class RuleHolder:
    """The rule of the latest series (set by the source as series start) and the run's dose
    once a frame has fixed it (``detector.dose = "auto"``: :class:`FirstFrameDose`)."""

    def __init__(self, rule: PixelRule | None = None) -> None:
        self.rule = rule
        self.dose = FirstFrameDose()

    def resolve(self, config: Any, frame: np.ndarray) -> Any:
        """``config`` with its dose checked against (or, for "auto", taken from) the first
        frame compute sees; later frames reuse that one decision."""
        return self.dose.resolve(config, frame)


class _CleanPopout:
    """pop-out of the cleaned frame; pickles with a snapshot of the current rule."""

    def __init__(self, popout: Any, holder: RuleHolder) -> None:
        self.popout, self.holder = popout, holder

    def __call__(self, frame: np.ndarray, config: Any, **kwargs: Any) -> Any:
        rule = self.holder.rule
        frame = rule.clean(frame) if rule else frame
        return self.popout(frame, self.holder.resolve(config, frame), **kwargs)


class _CleanRefiner:
    """Builds the real refiner on the first frame (its dose may come from that frame)."""

    def __init__(self, factory: Any, config: Any, device: Any, holder: RuleHolder,
                 **options: Any) -> None:
        self.factory, self.config, self.device, self.holder = factory, config, device, holder
        self.options = options  # e.g. tiles=: passed on to the real refiner
        self.refiner = None if is_auto(config) else factory(config, device, **options)

    def refine(self, frame: np.ndarray, popout: Any) -> Any:
        rule = self.holder.rule
        frame = rule.clean(frame) if rule else frame
        if self.refiner is None:
            self.refiner = self.factory(self.holder.resolve(self.config, frame), self.device,
                                        **self.options)
        return self.refiner.refine(frame, popout)

    def use_config(self, config: Any) -> None:
        """The next frames' config (a tracked lens); the dose stays the run's."""
        self.config = config
        if self.refiner is not None:
            self.refiner.use_config(self.holder.resolve(config, None))

    def __getattr__(self, name: str) -> Any:  # move, reset, warm state of the real refiner
        refiner = self.__dict__.get("refiner")
        if refiner is None:
            raise AttributeError(name)
        return getattr(refiner, name)


class _CleanRefinerFactory:
    def __init__(self, factory: Any, holder: RuleHolder) -> None:
        self.factory, self.holder = factory, holder

    def __call__(self, config: Any, device: Any = None, **options: Any) -> _CleanRefiner:
        return _CleanRefiner(self.factory, config, device, self.holder, **options)


def masked_stages(stages: Stages, holder: RuleHolder) -> Stages:
    """``stages`` that see each frame cleaned by ``holder.rule`` (unchanged when it is None)."""
    return Stages(popout=_CleanPopout(stages.popout, holder),
                  refiner=_CleanRefinerFactory(stages.refiner, holder))


def saturation_of(value: Any) -> float | None:
    """A start message's saturation_value as a number (None when absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- kept in the store
MAX_PACKED = 1 << 16  # bytes of a packed mask kept in the run's attributes (64 KiB)


def pack_mask(mask: np.ndarray) -> dict[str, Any] | None:
    """A boolean (y, x) mask as JSON: bit-packed, zlib, base64 (None when larger than 64 KiB;
    detector masks are mostly zeros and pack to a few KiB)."""
    import base64
    import zlib

    packed = zlib.compress(np.packbits(np.asarray(mask, bool)).tobytes(), 9)
    if len(packed) > MAX_PACKED:
        return None
    return {"shape": [int(n) for n in mask.shape], "zlib_base64": base64.b64encode(packed).decode()}


def unpack_mask(packed: Any) -> np.ndarray | None:
    """The boolean mask :func:`pack_mask` stored (None when ``packed`` is not one)."""
    import base64
    import binascii
    import zlib

    try:
        shape = tuple(int(n) for n in packed["shape"])
        bits = np.frombuffer(zlib.decompress(base64.b64decode(packed["zlib_base64"])), np.uint8)
        return np.unpackbits(bits)[: shape[0] * shape[1]].reshape(shape).astype(bool)
    except (KeyError, TypeError, ValueError, zlib.error, binascii.Error):
        return None


def stages_for_store(path: Any, stages: Stages | None, *, auto_dose: bool = False
                     ) -> Stages | None:
    """``stages`` that exclude the pixels a DECTRIS run's store records (its latest series'
    mask and saturation value), for reconstructing the store in place, and that resolve
    ``detector.dose = "auto"`` (``auto_dose``); unchanged otherwise."""
    from stream3d.store import open_run, read_segments

    group = open_run(path)
    meta = None
    if "frames" in group.array_keys():
        for segment in read_segments(group):
            meta = (segment.get("meta") or {}).get("dectris") or meta
    if meta is None and not auto_dose:
        return stages
    rule = None
    if meta is not None:
        packed = meta.get("pixel_mask_packed")
        rule = PixelRule.for_dtype(group["frames"].dtype,
                                   mask=unpack_mask(packed) if packed else None,
                                   saturation=saturation_of(meta.get("saturation_value")))
    if stages is None:
        from stream3d.stream.compute import default_stages

        stages = default_stages()
    return masked_stages(stages, RuleHolder(rule))
