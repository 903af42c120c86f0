"""The dask client pop-out runs on: an embedded local cluster, or an existing one by address."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from stream3d.errors import UserError

#: The worker resource a refinement tile task asks for (``dask worker --resources GPU=1``).
GPU = "GPU"


@contextlib.contextmanager
def dask_client(scheduler: str | None, *, threads: int, timeout: float = 20.0) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler`` (tcp://host:port) when given, else
    to an in-process local cluster with ``threads`` worker threads (no dashboard; nothing
    listens beyond loopback)."""
    from distributed import Client, LocalCluster

    # distributed logs every worker start/stop at INFO; a microscopist needs none of it.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        else:
            # In-process (inproc:// transport). The scheduler's and the worker's small HTTP
            # servers (health routes) always start: keep both on free loopback ports (the
            # worker's would otherwise listen on every interface), without dashboards.
            cluster = LocalCluster(n_workers=1, threads_per_worker=max(1, threads),
                                   processes=False, dashboard_address=None,
                                   worker_dashboard_address="127.0.0.1:0",
                                   scheduler_kwargs={"dashboard": False,
                                                     "dashboard_address": "127.0.0.1:0"})
            client = Client(cluster, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise UserError(f"cannot reach the dask scheduler {scheduler}: {exc}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def gpu_workers(client: Any) -> list[str]:
    """Addresses of the cluster's workers that offer at least one ``GPU`` resource (where
    refinement tiles run; an embedded local cluster has none)."""
    import inspect

    # distributed >= 2024.8 lists only a few workers unless asked for all of them.
    everyone = {"n_workers": -1} if "n_workers" in inspect.signature(
        client.scheduler_info).parameters else {}
    workers = client.scheduler_info(**everyone)["workers"]
    return sorted(addr for addr, info in workers.items()
                  if (info.get("resources") or {}).get(GPU, 0) >= 1)
