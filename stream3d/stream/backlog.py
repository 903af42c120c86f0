"""Frames persisted but not yet reconstructed, handed from the writer thread to compute.

Memory stays bounded whatever the lag: the backlog keeps the pixels of at most ``capacity``
frames; beyond that it keeps only their store index t, and compute reads those frames back
from the store (the store is the spill, not RAM).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np


class Backlog:
    """Thread-safe ordered set of store indices t, with pixels for up to ``capacity`` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._in_ram = 0
        self._closed = False
        self._cond = threading.Condition()
        self.spilled = 0  # frames whose pixels were not kept (read back from the store later)

    def add(self, t: int, data: np.ndarray | None = None) -> None:
        with self._cond:
            if data is not None and self._in_ram < self.capacity:
                self._in_ram += 1
            else:
                self.spilled += data is not None
                data = None
            self._items[int(t)] = data
            self._cond.notify_all()

    def extend(self, ts: Iterable[int]) -> None:
        for t in ts:
            self.add(t)

    def close(self) -> None:
        """No more frames will come (ingest has stopped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """Closed and empty: nothing left to reconstruct."""
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def wait(self, timeout: float) -> bool:
        """Wait until a frame is there or the backlog is closed; True when a frame is there."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout=timeout)
            return bool(self._items)

    def pop_oldest(self) -> tuple[int, np.ndarray | None] | None:
        with self._cond:
            if not self._items:
                return None
            return self._release(*self._items.popitem(last=False))

    def pop_newest(self) -> tuple[tuple[int, np.ndarray | None], list[int]] | None:
        """The newest frame and the indices of all older ones, which are removed (passed over)."""
        with self._cond:
            if not self._items:
                return None
            newest = self._release(*self._items.popitem(last=True))
            passed = list(self._items)
            self._items.clear()
            self._in_ram = 0
            return newest, passed

    def _release(self, t: int, data: np.ndarray | None) -> tuple[int, np.ndarray | None]:
        if data is not None:
            self._in_ram -= 1
        return t, data
