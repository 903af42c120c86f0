"""The dask client pop-out runs on: an embedded local cluster, or an existing one by address."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from stream3d.errors import UserError, reason

# dask settings for the objects stream3d builds (read when they are built): bounded
# bookkeeping, so that a day-long live run keeps a flat memory.
# - low-level-log-length = 0: dask's debugging logs keep the last 1,000 of each kind of event,
#   and BatchedSend keeps the last 1,000 messages it sent below 1 MB. The in-process transport
#   passes objects by reference and reports 1 byte per message, so that log pinned the frames
#   of the last several hundred pop-out tasks (the client's pickled graphs, the scheduler's
#   task messages): GBs with detector-sized frames. A remote scheduler's client keeps frames
#   below 1 MB the same way.
# - the embedded cluster's dashboards are off, so the histories they draw would only grow: no
#   worker profiler (a profile per second, 1,000 kept, and a thread sampling every 10 ms) and a
#   short system-monitor history (7,200 samples kept per monitor by default: an hour of growth).
DASK_CONFIG: dict[str, Any] = {
    "distributed.admin.low-level-log-length": 0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.log-length": 16,
}


def _without_spans(extensions: dict[str, Any]) -> dict[str, Any]:
    """``extensions`` less dask's "spans": the scheduler keeps every span and its task group
    for ever (dask/distributed#7977), and each pop-out submitted after the previous one
    finished opens a new span (and the worker keeps per-span metrics): ~5 kB per frame."""
    return {name: ext for name, ext in extensions.items() if name != "spans"}


def _embedded_cluster(threads: int) -> Any:
    """An in-process LocalCluster (inproc:// transport), one worker of ``threads`` threads."""
    import dask
    from distributed import LocalCluster
    from distributed.scheduler import DEFAULT_EXTENSIONS as SCHEDULER_EXTENSIONS
    from distributed.worker import DEFAULT_EXTENSIONS as WORKER_EXTENSIONS

    scheduler_ext = _without_spans(SCHEDULER_EXTENSIONS)
    if not dask.config.get("distributed.scheduler.work-stealing"):
        scheduler_ext.pop("stealing", None)  # as dask does when it picks the extensions
    # The scheduler's and the worker's small HTTP servers (health routes) always start: keep
    # both on free loopback ports (the worker's would otherwise listen on every interface),
    # without dashboards.
    return LocalCluster(n_workers=1, threads_per_worker=max(1, threads), processes=False,
                        dashboard_address=None, worker_dashboard_address="127.0.0.1:0",
                        extensions=_without_spans(WORKER_EXTENSIONS),
                        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0",
                                          "extensions": scheduler_ext})


@contextlib.contextmanager
def dask_client(scheduler: str | None, *, threads: int, timeout: float = 20.0) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler`` (tcp://host:port) when given, else
    to an in-process local cluster with ``threads`` worker threads (no dashboard; nothing
    listens beyond loopback). Both keep bounded bookkeeping (DASK_CONFIG)."""
    import dask
    from distributed import Client

    # distributed logs every worker start/stop at INFO; a microscopist needs none of it.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cluster = None
    try:
        with dask.config.set(DASK_CONFIG):
            if scheduler:
                client = Client(scheduler, timeout=timeout, set_as_default=False)
            else:
                cluster = _embedded_cluster(threads)
                client = Client(cluster, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise UserError(f"cannot reach the dask scheduler {scheduler}: {reason(exc)}") from None
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

    from stream3d.refine.distributed import GPU  # the resource its tile tasks ask for

    # distributed >= 2024.8 lists only a few workers unless asked for all of them.
    everyone = {"n_workers": -1} if "n_workers" in inspect.signature(
        client.scheduler_info).parameters else {}
    workers = client.scheduler_info(**everyone)["workers"]
    return sorted(addr for addr, info in workers.items()
                  if (info.get("resources") or {}).get(GPU, 0) >= 1)
