"""stream3d: live in situ TEM movies -> time-resolved 3D volumes."""

from stream3d._version import __version__


def __getattr__(name: str):
    # Imported on first use so that `import stream3d` stays light (no zarr, dask, scipy).
    if name == "open_run":
        from stream3d.analysis.run import open_run

        return open_run
    raise AttributeError(f"module 'stream3d' has no attribute {name!r}")
