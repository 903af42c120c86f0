"""Time-resolved analysis of a run store: metrics over time, pictures and an HTML report.

``open_run`` / ``read_run`` read a store lazily; ``frame_metrics`` measures one volume;
``analyze`` writes metrics.csv, pictures and index.html (the ``stream3d analyze`` command).
Pictures (matplotlib) are imported only by ``analyze``.
"""

from stream3d.analysis.metrics import FrameMetrics, MetricsTable, frame_metrics, occupancy
from stream3d.analysis.run import Run, open_run, read_run
from stream3d.analysis.surface import isosurface, mesh_area

__all__ = [
    "FrameMetrics", "MetricsTable", "Run", "analyze", "frame_metrics", "isosurface", "mesh_area",
    "occupancy", "open_run", "read_run",
]


def __getattr__(name: str):
    if name == "analyze":  # pulls in matplotlib; only when asked for
        from stream3d.analysis.analyze import analyze

        return analyze
    raise AttributeError(f"module 'stream3d.analysis' has no attribute {name!r}")
