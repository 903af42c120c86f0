"""stream3d: live in situ TEM movies -> time-resolved 3D volumes."""

__version__ = "0.1.0"
