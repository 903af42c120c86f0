"""Refinement by automatic differentiation through the multislice model (issue 5).

``Refiner`` keeps the previous frame's volume for warm starts (one per stream) and refines
frames larger than ``refine.tile`` as overlapping tiles (:mod:`stream3d.refine.tiles`), here or
as dask tasks on GPU workers (:mod:`stream3d.refine.distributed`); ``refine_volume`` is the
pure function underneath. The stages are described in
:mod:`stream3d.refine.pipeline`; ``loss_landscape`` maps the loss over a depth shift x scale
grid (the paper's Fig. 1B).
"""

from stream3d.refine.evaluate import Errors, depth_error, errors, iou
from stream3d.refine.pipeline import refine_volume
from stream3d.refine.refiner import Refiner
from stream3d.refine.result import STATUSES, RefineResult

__all__ = ["RefineResult", "Refiner", "STATUSES", "refine_volume", "Errors", "errors",
           "depth_error", "iou"]
