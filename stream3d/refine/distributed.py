"""Refinement tiles as dask tasks on the cluster's GPU workers.

Workers that may refine are those started with ``--resources GPU=1`` (one CUDA device each,
as dask-cuda's LocalCUDACluster arranges); every tile task asks for one ``GPU``, so each
device refines one tile at a time. Pop-out tasks ask for nothing and run on any worker. A
cluster without such workers (the embedded local cluster) refines in the main thread.

Warm state: each task gets its tile's crop of the previous stitched volume and per-pixel
loss from the Refiner ("send", the default), or, with ``affinity``, the previous outcome of
the same tile stays on the worker that computed it and the next frame's task runs there
(measured in benchmarks/scale.py; "send" keeps distributed results equal to local ones).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from stream3d.config import Config
from stream3d.refine.refiner import TileJob, TileOutcome, refine_tile

#: The worker resource a refinement tile task asks for (``dask worker --resources GPU=1``);
#: :func:`stream3d.stream.cluster.gpu_workers` counts the workers that offer it.
GPU = "GPU"


def _refine_held(job: TileJob, held: TileOutcome | None, config: Config) -> TileOutcome:
    """refine_tile with the warm state taken from the tile's previous outcome (on this worker)."""
    if held is not None:
        job.previous, job.reference = held.result.volume, held.reference
    return refine_tile(job, config)


class DaskTiles:
    """Runs tiles as dask tasks that each need one ``GPU`` resource; see the module doc."""

    def __init__(self, client: Any, *, affinity: bool = False) -> None:
        self.client, self.affinity = client, affinity
        self._held: dict[int, Any] = {}  # affinity: tile index -> future of its last outcome

    def run(self, jobs: Sequence[TileJob], config: Config, device: torch.device,
            callback: Callable | None) -> Iterator[tuple[int, TileOutcome]]:
        from distributed import as_completed

        frame = uuid.uuid4().hex[:8]
        futures, index = [], {}
        for i, job in enumerate(jobs):
            key = f"refine-tile-{frame}-{i}"
            if self.affinity:
                held = self._held.get(i) if job.previous is not None else None
                # the warm state stays on the worker
                light = TileJob(job.frame, job.popout, texture=job.texture,
                                absorption=job.absorption)
                holders = list(self.client.who_has([held]).get(held.key, ())) \
                    if held is not None else []
                where = {"workers": holders} if holders else {}  # a lost worker: anywhere
                future = self.client.submit(_refine_held, light, held, config, key=key,
                                            resources={GPU: 1}, pure=False, **where)
            else:
                # device None: each worker resolves refine.device (its own CUDA device).
                future = self.client.submit(refine_tile, job, config, None, key=key,
                                            resources={GPU: 1}, pure=False)
            futures.append(future)
            index[key] = i
        if self.affinity:
            self._held = dict(enumerate(futures))
        # The loop of our own client: it is not the default client (set_as_default=False, so
        # that a user's own dask client is never replaced), and as_completed would look for one.
        for future in as_completed(futures, loop=self.client.loop):
            yield index[future.key], future.result()

