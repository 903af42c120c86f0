"""Scores of a reconstructed volume against a known truth (simulated specimens).

Below both refinement and analysis: refinement's tests and benchmarks judge a reconstruction
by these (never by its loss), and analysis compares a run store with a truth store with the
same measures. :mod:`stream3d.scoring.volume` holds the two headline errors (column depth
error, 3D IoU); :mod:`stream3d.scoring.accuracy` the accuracy suite's fuller set.
"""

from stream3d.scoring.volume import Errors, depth_error, errors, iou, occupancy_of

__all__ = ["Errors", "depth_error", "errors", "iou", "occupancy_of"]
