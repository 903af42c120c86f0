"""Refinement by automatic differentiation through the multislice model (issue 5).

``Refiner`` keeps the previous frame's volume for warm starts; ``refine_volume`` is the pure
function underneath. See :mod:`stream3d.refine.pipeline` for the stages.
"""

from stream3d.refine.pipeline import refine_volume
from stream3d.refine.result import STATUSES, RefineResult

__all__ = ["RefineResult", "STATUSES", "refine_volume"]
