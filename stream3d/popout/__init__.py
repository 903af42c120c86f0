"""Pop-out 3D metrology: one frame -> depth and thickness maps -> an initial 3D volume.

Per-patch Thon-ring fits give depth (effective defocus = defocus - height); the frame's
low-frequency contrast gives thickness and the material mask; the work runs as dask tasks.
"""

from stream3d.popout.api import PopoutResult, popout

__all__ = ["PopoutResult", "popout"]
