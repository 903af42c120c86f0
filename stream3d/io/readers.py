"""Movie readers, lazy: a frame is read from disk only when it is asked for.

Formats: MRC (frames read with positioned reads, so even a file larger than RAM never fills
the process's memory), TIFF stacks (tifffile, page by page), and through rosettasciio: Gatan
DM3/DM4, Thermo Fisher Velox EMD (its Data array is (y, x, frame): frames are its LAST axis),
NCEM EMD and TIA SER/EMI. Each reader returns the frames as an array-like (t, y, x) and a
:class:`~stream3d.io.meta.MovieMeta` with the calibrations the file records.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stream3d.errors import UserError, reason
from stream3d.io.meta import MovieMeta, is_reciprocal, length_in_angstrom, time_in_seconds

MRC = (".mrc", ".mrcs", ".st", ".map")
TIFF = (".tif", ".tiff")
DM = (".dm3", ".dm4")
EMD = (".emd",)
TIA = (".ser", ".emi")
SUPPORTED = MRC + TIFF + DM + EMD + TIA
PLAUSIBLE_PIXEL = (1e-3, 1e8)  # Å: a pixel size outside this is a misread calibration


class PreadFrames:
    """Frames (t, y, x) of a raw little/big-endian block in a file, read with ``os.pread``
    (no memory map: the pages read never count against the process)."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, int, int], dtype: np.dtype
                 ) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, np.dtype(dtype)
        self._fd = os.open(path, os.O_RDONLY)
        self.frame_bytes = shape[1] * shape[2] * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not -self.shape[0] <= index < self.shape[0]:
            raise IndexError(f"frame {index} is outside the movie (0..{self.shape[0] - 1})")
        index %= self.shape[0]
        raw = os.pread(self._fd, self.frame_bytes, self.offset + index * self.frame_bytes)
        if len(raw) != self.frame_bytes:
            raise UserError(f"movie {self.path} is cut short at frame {index}")
        return np.frombuffer(raw, self.dtype).reshape(self.shape[1:])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_mrc(path: Path) -> tuple[Any, MovieMeta, Any]:
    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    try:
        with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
            header = mrc.header.copy()
            extended = int(header.nsymbt)
            size = float(mrc.voxel_size.x)
    except (ValueError, OSError) as exc:
        raise UserError(f"movie {path} is not a readable MRC file: {reason(exc)}") from None
    try:
        dtype = data_dtype_from_header(header)
    except ValueError as exc:
        raise UserError(f"movie {path}: {exc}") from None
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if min(nx, ny, nz) < 1:
        raise UserError(f"movie {path}: MRC header says {nz} x {ny} x {nx}")
    offset = 1024 + extended
    if os.path.getsize(path) < offset + nx * ny * nz * dtype.itemsize:
        raise UserError(f"movie {path} is shorter than its MRC header says ({nz} frames of "
                        f"{ny} x {nx} {dtype})")
    frames = PreadFrames(path, offset, (nz, ny, nx), dtype)
    meta = MovieMeta("MRC", pixel_size=size if size > 0 else None)
    return frames, meta, frames


class TiffPages:
    """Pages of a TIFF file as frames (t, y, x), each read when asked for."""

    def __init__(self, path: Path) -> None:
        import tifffile

        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
        except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on bad files
            raise UserError(f"movie {path} is not a readable TIFF file: {exc}") from None
        shape = tuple(series.shape)
        if len(shape) == 2:
            shape = (1, *shape)
        # series.pages: one per frame, also for ImageJ's contiguous stacks (virtual pages).
        self._pages = series.pages
        if len(shape) != 3 or len(self._pages) != shape[0] or \
                tuple(self._pages[0].shape) != shape[1:]:
            self._tif.close()
            raise UserError(f"movie {path}: expected pages of 2D frames of one shape, the "
                            f"file holds {'x'.join(map(str, series.shape))} in "
                            f"{len(self._pages)} pages")
        self.shape, self.dtype = shape, np.dtype(series.dtype)
        self.tif = self._tif

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not -self.shape[0] <= index < self.shape[0]:
            raise IndexError(f"frame {index} is outside the movie (0..{self.shape[0] - 1})")
        return self._pages[index % self.shape[0]].asarray()

    def close(self) -> None:
        self._tif.close()


def read_tiff(path: Path) -> tuple[Any, MovieMeta, Any]:
    pages = TiffPages(path)
    tif = pages.tif
    meta = MovieMeta("TIFF")
    ij = tif.imagej_metadata or {}
    page = tif.pages[0]
    unit = ij.get("unit")
    xres = page.tags.get("XResolution")
    if xres is not None and unit:
        num, den = xres.value
        if num > 0:
            meta.pixel_size = length_in_angstrom(den / num, _imagej_unit(unit))
    if meta.pixel_size is None and xres is not None:
        res_unit = page.tags.get("ResolutionUnit")
        per = {2: "inch", 3: "cm"}.get(int(res_unit.value) if res_unit else 0)
        if per == "cm" and xres.value[0] > 0:
            meta.pixel_size = xres.value[1] / xres.value[0] * 1e8
    if tif.ome_metadata:
        _ome_calibration(tif.ome_metadata, meta)
    interval = ij.get("finterval")
    if interval:
        meta.frame_interval = time_in_seconds(interval, ij.get("tunit", "s") or "s")
    description = page.tags.get("ImageDescription")
    if description is not None and not ij:
        text = str(description.value)
        try:  # tifffile's own shaped description is JSON: our writer puts calibrations there
            data = json.loads(text)
        except ValueError:
            data = {}
        if isinstance(data, Mapping):
            meta.pixel_size = meta.pixel_size or _number(data.get("pixel_size"))
            meta.frame_interval = meta.frame_interval or _number(data.get("frame_interval"))
    software = page.tags.get("Software")
    if software is not None:
        meta.detector = str(software.value)[:120] or None
    return pages, meta, pages


def _ome_calibration(xml: str, meta: MovieMeta) -> None:
    """PhysicalSizeX and TimeIncrement of an OME-TIFF's first image (OME's default units:
    µm and s)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        meta.notes.append("the OME-XML of this TIFF cannot be parsed: ignored")
        return
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return
    size = pixels.get("PhysicalSizeX")
    if size is not None:
        meta.pixel_size = length_in_angstrom(size, pixels.get("PhysicalSizeXUnit", "µm"))
    step = pixels.get("TimeIncrement")
    if step is not None:
        meta.frame_interval = time_in_seconds(step, pixels.get("TimeIncrementUnit", "s"))


def _imagej_unit(unit: str) -> str:
    return {"micron": "um", "\\u00B5m": "um", "A": "Å", "\\u00C5": "Å"}.get(unit, unit)


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


# ---------------------------------------------------------------------------- rosettasciio
def read_rsciio(path: Path) -> tuple[Any, MovieMeta, Any]:
    """DM3/DM4, EMD (Velox or NCEM) and TIA SER/EMI through rosettasciio, lazily (dask)."""
    suffix = path.suffix.lower()
    bare_ser = False
    if suffix == ".ser":  # read through its .emi (the units live there) when it is beside it
        emi = path.with_name(path.stem.rsplit("_", 1)[0] + ".emi")
        if emi.exists():
            path = emi
        else:
            bare_ser = True
    if suffix in DM:
        from rsciio.digitalmicrograph import file_reader
        fmt = f"Gatan {suffix[1:].upper()}"
    elif suffix in TIA:
        from rsciio.tia import file_reader
        fmt = "TIA SER"
    else:
        from rsciio.emd import file_reader
        fmt = "EMD"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signals = file_reader(str(path), lazy=True)
    except Exception as exc:  # noqa: BLE001 - the readers raise many kinds on bad files
        raise UserError(f"movie {path} is not a readable {fmt} file: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        ) from None
    images = [s for s in signals if _signal_axes(s) is not None]
    if not images:
        raise UserError(f"movie {path}: no image or image stack in the {fmt} file")
    chosen = max(images, key=lambda s: int(np.prod(s["data"].shape)))
    data, meta = _frames_and_meta(chosen, fmt)
    if bare_ser and meta.pixel_size is not None:
        meta.notes.append("a SER file without its EMI: the calibration's units (m or 1/m) are "
                          "unknown, so it is not taken for a pixel size")
        meta.pixel_size = None
    if meta.pixel_size is not None and not PLAUSIBLE_PIXEL[0] <= meta.pixel_size <= \
            PLAUSIBLE_PIXEL[1]:
        meta.notes.append(f"the file's calibration {meta.pixel_size:.4g} Å/pixel is not a "
                          "plausible pixel size: ignored")
        meta.pixel_size = None
    if suffix in EMD:
        meta.format = "Velox EMD" if _is_velox(chosen) else "NCEM EMD"
    return data, meta, None


def _signal_axes(signal: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The (y, x) axes of an image or image stack; None for anything else."""
    axes = _ordered_axes(signal)
    data = signal.get("data")
    if data is None or data.ndim not in (2, 3) or np.dtype(data.dtype).kind not in "uif" \
            or len(axes) != data.ndim:
        return None
    sig = [a for a in axes if not a.get("navigate", False)]
    if len(sig) == 3:  # NCEM EMD marks no axis as navigation: the first one is time
        sig = sig[1:]
    return sig if len(sig) == 2 else None


def _ordered_axes(signal: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    axes = list(signal.get("axes", []))
    return sorted(axes, key=lambda a: int(a.get("index_in_array", axes.index(a))))


def _frames_and_meta(signal: Mapping[str, Any], fmt: str) -> tuple[Any, MovieMeta]:
    data = signal["data"]
    axes = _ordered_axes(signal)
    sig = _signal_axes(signal)
    meta = MovieMeta(fmt)
    if data.ndim == 2:
        data = data[None]
    else:
        (t,) = [a for a in axes if a not in sig]
        index = axes.index(t)
        if index != 0:
            import dask.array as da

            data = da.moveaxis(data, index, 0)
        meta.frame_interval = time_in_seconds(t.get("scale"), t.get("units"))
    x = sig[-1]
    scale, units = x.get("scale"), x.get("units")
    meta.pixel_size = length_in_angstrom(scale, units)
    if meta.pixel_size is None and is_reciprocal(units):
        meta.notes.append(f"the file's calibration is {float(scale):.4g} {units} (reciprocal "
                          "space, a diffraction pattern): not a pixel size")
    elif meta.pixel_size is None and units not in (None, "", "<undefined>"):
        meta.notes.append(f"the file's calibration unit {units!r} is not a length")
    _instrument_and_detector(signal, meta)
    return data, meta


def _instrument_and_detector(signal: Mapping[str, Any], meta: MovieMeta) -> None:
    md, om = signal.get("metadata", {}) or {}, signal.get("original_metadata", {}) or {}
    tem = _get(md, "Acquisition_instrument", "TEM") or {}
    meta.instrument = _text(tem.get("microscope")) or _text(
        _get(om, "ObjectInfo", "ExperimentalDescription", "Microscope")) or _text(
        _get(om, "Instrument", "InstrumentModel")) or _text(
        _get(om, "ImageList", "TagGroup0", "ImageTags", "Microscope Info", "Name"))
    meta.detector = _text(_get(tem, "Detector", "Camera", "name")) or _text(
        _get(om, "ObjectInfo", "AcquireInfo", "CameraNamePath")) or _text(
        _get(om, "DetectorMetadata", "DetectorName")) or _text(
        _get(om, "ImageList", "TagGroup0", "ImageTags", "Acquisition", "Device", "Name"))
    # TIA SER and Velox EMD record volts; rosettasciio's beam_energy (DM's Microscope Info
    # Voltage, among others) is in kV.
    volts = _get(om, "ObjectInfo", "ExperimentalConditions", "MicroscopeConditions",
                 "AcceleratingVoltage") or _get(om, "Optics", "AccelerationVoltage")
    kilovolts = tem.get("beam_energy")
    voltage = volts if volts is not None else kilovolts
    if voltage is not None:
        meta.extra["accelerating_voltage"] = _text(voltage)
        meta.energy = _electron_volts(voltage, 1.0 if volts is not None else 1e3)


def _electron_volts(value: Any, scale: float) -> float | None:
    """``value`` x ``scale`` as eV when it is a positive finite number, else None."""
    try:
        energy = float(value) * scale
    except (TypeError, ValueError):
        return None
    return energy if math.isfinite(energy) and energy > 0 else None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping):
        return None
    text = str(value).strip()
    return text[:120] if text else None


def _is_velox(signal: Mapping[str, Any]) -> bool:
    om = signal.get("original_metadata", {}) or {}
    return isinstance(om, Mapping) and "BinaryResult" in om
