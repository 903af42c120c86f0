"""Which of a run's frames a report shows."""

from __future__ import annotations

import numpy as np


def spread(indices: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` of ``indices`` evenly spread from the first to the last."""
    if len(indices) <= count:
        return [int(i) for i in indices]
    picks = np.round(np.linspace(0, len(indices) - 1, count)).astype(int)
    return [int(indices[p]) for p in picks]
