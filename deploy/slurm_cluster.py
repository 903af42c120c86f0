#!/usr/bin/env python
"""A dask cluster of SLURM GPU jobs for ``stream3d reconstruct/live --scheduler``.

Run on a login node (or any node the compute nodes can reach):

    python deploy/slurm_cluster.py --partition gpu --account ACCT --jobs 4 --dry-run   # the job script
    python deploy/slurm_cluster.py --partition gpu --account ACCT --jobs 4             # prints scheduler: tcp://...
    stream3d live --connect tcp://DETECTOR:5555 --out run.zarr --scheduler tcp://LOGIN:PORT

With dask-jobqueue installed (``pip install 'stream3d[slurm]'``) the scheduler runs in this
process and ``SLURMCluster`` submits ``--jobs`` jobs, each one ``dask worker --resources
GPU=1`` on one GPU (``--gres=gpu:1``), until Ctrl-C cancels them. Without dask-jobqueue,
``--dry-run`` still prints the same job script (rendered here) to submit by hand with ``sbatch``
against a ``dask scheduler`` you started yourself (``--scheduler ADDRESS``).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SlurmJob:
    """One worker job: SLURM directives and the worker it runs."""

    partition: str | None = None  # -p
    account: str | None = None  # -A
    walltime: str = "02:00:00"  # -t, HH:MM:SS
    cores: int = 8  # --cpus-per-task and the worker's threads
    memory: str = "64GB"  # per job; --mem in SLURM's units (1024-based K/M/G)
    gpu_directive: str = "--gres=gpu:1"  # how this site asks for one GPU ("--gpus=1", ...)
    job_name: str = "stream3d-worker"
    prologue: tuple[str, ...] = field(default_factory=tuple)  # e.g. "module load cuda"
    python: str = "python"  # the environment with stream3d (same dask version as the client)

    def jobqueue_kwargs(self) -> dict:
        """Keyword arguments of dask_jobqueue.SLURMCluster for these jobs."""
        return dict(queue=self.partition, account=self.account, walltime=self.walltime,
                    cores=self.cores, processes=1, memory=self.memory, job_name=self.job_name,
                    job_extra_directives=[self.gpu_directive],
                    worker_extra_args=["--resources", "GPU=1"],
                    job_script_prologue=list(self.prologue), python=self.python)


def _bytes(text: str) -> int:
    """'64GB' -> bytes (dask's units: kB/MB/GB are 1000-based, KiB/MiB/GiB 1024-based)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if not m:
        raise ValueError(f"--memory {text!r} is not a size like 64GB")
    power = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def _slurm_mem(n: int) -> str:
    """Bytes as SLURM's --mem (K/M/G mean 1024-based), rounded up, as dask-jobqueue does."""
    for unit, power in (("G", 3), ("M", 2), ("K", 1)):
        if n >= 1024 ** power:
            return f"{math.ceil(n / 1024 ** power)}{unit}"
    return "1K"


def render_job_script(job: SlurmJob, scheduler: str) -> str:
    """The batch script of one worker job, as dask-jobqueue's SLURMCluster writes it."""
    memory = _bytes(job.memory)
    lines = ["#!/usr/bin/env bash", "", f"#SBATCH -J {job.job_name}"]
    if job.partition:
        lines.append(f"#SBATCH -p {job.partition}")
    if job.account:
        lines.append(f"#SBATCH -A {job.account}")
    lines += ["#SBATCH -n 1", f"#SBATCH --cpus-per-task={job.cores}",
              f"#SBATCH --mem={_slurm_mem(memory)}", f"#SBATCH -t {job.walltime}",
              f"#SBATCH {job.gpu_directive}", *job.prologue]
    worker = [*shlex.split(job.python), "-m", "distributed.cli.dask_worker", scheduler,
              "--name", "stream3d-${SLURM_JOB_ID}", "--nthreads", str(job.cores),
              "--memory-limit", str(memory), "--nanny", "--death-timeout", "60",
              "--resources", "GPU=1"]
    # The name keeps ${SLURM_JOB_ID} for the shell to expand; everything else is quoted.
    lines.append(" ".join(w if "${" in w else shlex.quote(w) for w in worker))
    return "\n".join(lines) + "\n"


def job_script(job: SlurmJob, scheduler: str | None) -> str:
    """dask-jobqueue's own script when it is installed (its scheduler is not started), else
    :func:`render_job_script` (``scheduler`` defaults to tcp://SCHEDULER:8786)."""
    try:
        from dask_jobqueue.slurm import SLURMJob
    except ImportError:
        return render_job_script(job, scheduler or "tcp://SCHEDULER:8786")
    return SLURMJob(scheduler=scheduler or "tcp://SCHEDULER:8786", name="stream3d",
                    **job.jobqueue_kwargs()).job_script()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--partition", help="SLURM partition with GPUs (-p)")
    p.add_argument("--account", help="SLURM account (-A)")
    p.add_argument("--jobs", type=int, default=2, help="worker jobs, one GPU each")
    p.add_argument("--walltime", default="02:00:00", help="per job, HH:MM:SS")
    p.add_argument("--cores", type=int, default=8, help="CPU cores per job (worker threads)")
    p.add_argument("--memory", default="64GB", help="memory per job, e.g. 64GB")
    p.add_argument("--gpu-directive", default="--gres=gpu:1",
                   help='how the site requests one GPU, e.g. "--gpus=1"')
    p.add_argument("--prologue", action="append", default=[],
                   help='shell line run before the worker (repeatable), e.g. "module load cuda"')
    p.add_argument("--python", default=sys.executable, help="python with stream3d on the nodes")
    p.add_argument("--host", default=None, help="address the scheduler serves on (reachable "
                   "from the compute nodes; default: dask-jobqueue's choice)")
    p.add_argument("--port", type=int, default=8786, help="scheduler port")
    p.add_argument("--scheduler", help="with --dry-run: the address of a scheduler started "
                   "by hand, written into the script")
    p.add_argument("--dry-run", action="store_true", help="print the job script and exit")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.cores < 1:
        p.error("--jobs and --cores must be >= 1")
    job = SlurmJob(partition=args.partition, account=args.account, walltime=args.walltime,
                   cores=args.cores, memory=args.memory, gpu_directive=args.gpu_directive,
                   prologue=tuple(args.prologue), python=args.python)
    try:
        _bytes(job.memory)
    except ValueError as exc:
        p.error(str(exc))
    if args.dry_run:
        print(job_script(job, args.scheduler), end="")
        return 0
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("slurm_cluster: dask-jobqueue is not installed (pip install 'stream3d[slurm]'); "
              "or start `dask scheduler` yourself and sbatch the script of --dry-run "
              "--scheduler tcp://HOST:8786", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    options = {"port": args.port, **({"host": args.host} if args.host else {})}
    cluster = SLURMCluster(scheduler_options=options, **job.jobqueue_kwargs())
    try:
        cluster.scale(jobs=args.jobs)
        print(cluster.job_script(), flush=True)
        print(f"{args.jobs} job(s) submitted; workers join as SLURM starts them", flush=True)
        print(f"scheduler: {cluster.scheduler_address}", flush=True)
        print("Ctrl-C cancels the jobs and stops the scheduler.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
