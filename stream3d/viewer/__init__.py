"""A live view of a run store in the browser: ``stream3d view RUN.zarr``.

It follows a store while another process writes it, read-only (no lock, no writes), and reads
only what it shows. Modules, one job each:

- :mod:`~stream3d.viewer.table`   the per-frame table, read incrementally from its chunk files
- :mod:`~stream3d.viewer.state`   the run's state (JSON) and one frame's maps and pictures
- :mod:`~stream3d.viewer.images`  fixed colour scales, PNG, the shaded 3D height render
- :mod:`~stream3d.viewer.server`  the HTTP routes (standard library ``http.server``)
- :mod:`~stream3d.viewer.beside`  ``reconstruct/live --view``: the viewer beside a run
- ``static/``                     the page: HTML, JS and CSS, no network needed
"""

from stream3d.viewer.server import ViewServer, serve, serve_in_thread
from stream3d.viewer.state import RunView

__all__ = ["RunView", "ViewServer", "serve", "serve_in_thread"]
