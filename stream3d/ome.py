"""OME-NGFF 0.5 metadata for (t, z, y, x) arrays, so napari's OME-Zarr readers show physical axes."""

from __future__ import annotations

from typing import Any

NGFF_VERSION = "0.5"


def multiscales(
    path: str, *, frame_interval: float, slice_thickness: float, pixel_size: float,
    name: str | None = None, translation: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    """The ``ome`` group attribute for one (t, z, y, x) array at ``path`` inside the group.

    Axes t, z, y, x in second / angstrom; scale = (frame_interval s, slice_thickness Å,
    pixel_size Å, pixel_size Å). One resolution level (the array itself). ``translation``
    (y, x) Å places pixel (0, 0) of a region of interest where it lies in the whole frame
    (pixel centres at index x scale + translation); written only when not zero.
    """
    transforms: list[dict[str, Any]] = [
        {"type": "scale",
         "scale": [float(frame_interval), float(slice_thickness),
                   float(pixel_size), float(pixel_size)]}]
    if any(translation):
        transforms.append({"type": "translation",
                           "translation": [0.0, 0.0, *(float(v) for v in translation)]})
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name or path,
                "axes": [
                    {"name": "t", "type": "time", "unit": "second"},
                    {"name": "z", "type": "space", "unit": "angstrom"},
                    {"name": "y", "type": "space", "unit": "angstrom"},
                    {"name": "x", "type": "space", "unit": "angstrom"},
                ],
                "datasets": [
                    {
                        "path": path,
                        "coordinateTransformations": transforms,
                    }
                ],
            }
        ],
    }


def scale_of(ome: dict[str, Any]) -> tuple[float, float, float, float]:
    """(frame interval s, dz Å, dy Å, dx Å) from an ``ome`` attribute written by :func:`multiscales`."""
    dataset = ome["multiscales"][0]["datasets"][0]
    (scale,) = [t["scale"] for t in dataset["coordinateTransformations"] if t["type"] == "scale"]
    return tuple(float(s) for s in scale)


def translation_of(ome: dict[str, Any]) -> tuple[float, float, float, float]:
    """(t s, z Å, y Å, x Å) translation of an ``ome`` attribute (zeros when it has none)."""
    dataset = ome["multiscales"][0]["datasets"][0]
    moves = [t["translation"] for t in dataset["coordinateTransformations"]
             if t["type"] == "translation"]
    return tuple(float(v) for v in moves[0]) if moves else (0.0, 0.0, 0.0, 0.0)
