"""The accuracy suite's metrics now live in :mod:`stream3d.scoring.accuracy` (below both
refinement and analysis); this name stays for benchmarks/accuracy.py and older imports."""

from stream3d.scoring.accuracy import (  # noqa: F401
    Accuracy, accuracy, core_thickness_error, footprint, footprint_iou, height_error,
    layer_recall, mass_ratio, thickness_error,
)
