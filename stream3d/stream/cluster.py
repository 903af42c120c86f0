"""The dask client pop-out runs on: an embedded local cluster, or an existing one by address."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from stream3d.errors import UserError


@contextlib.contextmanager
def dask_client(scheduler: str | None, *, threads: int, timeout: float = 20.0) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler`` (tcp://host:port) when given, else
    to an in-process local cluster with ``threads`` worker threads (no dashboard, no ports
    opened beyond the process)."""
    from distributed import Client, LocalCluster

    # distributed logs every worker start/stop at INFO; a microscopist needs none of it.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        else:
            cluster = LocalCluster(n_workers=1, threads_per_worker=max(1, threads),
                                   processes=False, dashboard_address=None)
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
