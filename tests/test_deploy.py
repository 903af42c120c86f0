"""deploy/ launch recipes: the GPU-workstation cluster is started and used for a real run; the
SLURM job script and the Kubernetes DaskCluster manifest are rendered and checked."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from stream3d.io.movies import write_mrc_movie
from stream_helpers import REAL, REAL_SETS, hrtem_movie

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def load(name: str):
    """A deploy/ script as a module (they are scripts, not part of the package)."""
    if f"deploy_{name}" in sys.modules:
        return sys.modules[f"deploy_{name}"]
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", DEPLOY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def read_address(proc: subprocess.Popen, lines: list[str], timeout: float) -> str:
    """Lines of the launcher's stdout until 'scheduler: ADDRESS' (read on a thread so that a
    silent launcher cannot hang the test)."""
    found = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("scheduler: "):
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        raise AssertionError(f"no scheduler address within {timeout} s: {''.join(lines)}")
    return next(ln for ln in lines if ln.startswith("scheduler: ")).split()[1]


@pytest.mark.slow  # ~40-60 s on 2 cores: three dask processes start, two real frames
def test_gpu_workstation_cluster_runs_a_reconstruction_and_stops_cleanly(tmp_path):
    """As a user does it: the recipe in one terminal, `stream3d reconstruct --scheduler` in
    another. No dask client lives in this test process, so nothing here can stand in for a
    default client the CLI lacks (refinement tiles on the GPU workers once failed on every
    frame with "No clients found", exit 0)."""
    proc = subprocess.Popen(
        [sys.executable, str(DEPLOY / "gpu_workstation.py"), "--port", "0", "--workers", "2",
         "--mode", "processes"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
        start_new_session=True)  # its own process group: killed as a whole in `finally`
    lines: list[str] = []
    try:
        address = read_address(proc, lines, timeout=90)
        assert address.startswith("tcp://127.0.0.1:")
        workers = [ln for ln in lines if ln.strip().startswith("worker ")]
        assert len(workers) == 2 and all("'GPU': 1" in w for w in workers), lines
        frames = hrtem_movie(2)
        movie = tmp_path / "movie.mrc"
        write_mrc_movie(movie, frames, pixel_size=REAL.sample.pixel_size)
        out = tmp_path / "run.zarr"
        sets = [a for s in REAL_SETS for a in ("--set", s)]
        got = subprocess.run(
            [sys.executable, "-m", "stream3d", "reconstruct", str(movie), "--out", str(out),
             "--scheduler", address, "--quiet", *sets],
            env=ENV, capture_output=True, text=True, timeout=240)
        assert got.returncode == 0, got.stdout + got.stderr
        assert "failed" not in got.stderr and "Traceback" not in got.stderr, got.stderr
        assert "2 refined, 0 skipped, 0 failed" in got.stdout, got.stdout
        g = zarr.open_group(out, mode="r")
        assert np.array_equal(np.asarray(g["frames"]), frames)
        assert list(np.asarray(g["status"])) == [1, 1]
        assert np.isfinite(np.asarray(g["volume"])).all()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        time.sleep(0.5)  # the reader thread takes the last lines
        assert any("cluster stopped" in ln for ln in lines)
        # Workers and scheduler gone, not orphaned: the group empties within seconds (a fixed
        # 0.5 s wait failed once on a loaded 2-core machine while the workers were exiting).
        deadline = time.monotonic() + 15.0
        with pytest.raises(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(proc.pid, 0)
                time.sleep(0.2)
    finally:
        try:  # the launcher and anything it started that is still there
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# ----------------------------------------------------------------------------- SLURM
def directives(script: str) -> list[str]:
    return [ln[len("#SBATCH "):] for ln in script.splitlines() if ln.startswith("#SBATCH ")]


def worker_argv(script: str) -> list[str]:
    (line,) = [ln for ln in script.splitlines() if "distributed.cli.dask_worker" in ln]
    return shlex.split(line)


def check_worker_job(script: str, scheduler: str) -> None:
    d = directives(script)
    for want in ("-J stream3d-worker", "-p gpu", "-A lab42", "-n 1", "--cpus-per-task=8",
                 "--mem=60G", "-t 01:30:00", "--gres=gpu:1"):
        assert want in d, (want, d)
    argv = worker_argv(script)
    assert argv[argv.index("distributed.cli.dask_worker") + 1] == scheduler
    assert argv[argv.index("--resources") + 1] == "GPU=1"
    assert argv[argv.index("--nthreads") + 1] == "8"
    assert "module load cuda" in script.splitlines()
    assert script.startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid shell


JOB_ARGS = dict(partition="gpu", account="lab42", walltime="01:30:00", cores=8, memory="64GB",
                prologue=("module load cuda",), python="python")


def test_slurm_job_script_requests_a_gpu_and_advertises_it():
    slurm = load("slurm_cluster")
    job = slurm.SlurmJob(**JOB_ARGS)
    own = slurm.render_job_script(job, "tcp://10.1.2.3:8786")
    check_worker_job(own, "tcp://10.1.2.3:8786")
    assert "--name stream3d-${SLURM_JOB_ID}" in own  # unique per job, expanded by the shell
    # What the recipe prints: dask-jobqueue's own script where installed, else ours.
    printed = slurm.job_script(job, "tcp://10.1.2.3:8786")
    check_worker_job(printed, "tcp://10.1.2.3:8786")
    assert directives(printed) == directives(own)
    if importlib.util.find_spec("dask_jobqueue") is None:
        assert printed == own


def test_slurm_recipe_dry_run_prints_the_script_and_needs_jobqueue_to_submit(capsys,
                                                                          monkeypatch):
    slurm = load("slurm_cluster")
    args = ["--partition", "gpu", "--account", "lab42", "--walltime", "01:30:00",
            "--memory", "64GB", "--prologue", "module load cuda", "--python", "python"]
    assert slurm.main([*args, "--dry-run", "--scheduler", "tcp://10.1.2.3:8786"]) == 0
    check_worker_job(capsys.readouterr().out, "tcp://10.1.2.3:8786")
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    assert slurm.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "dask-jobqueue is not installed" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as bad:
        slurm.main([*args, "--memory", "lots", "--dry-run"])
    assert bad.value.code == 2


# ----------------------------------------------------------------------------- Kubernetes
def test_kubernetes_daskcluster_manifest_has_gpu_workers():
    yaml = pytest.importorskip("yaml")  # pyyaml comes with dask
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["apiVersion"] == "kubernetes.dask.org/v1" and doc["kind"] == "DaskCluster"
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) == {"worker", "scheduler"}
    worker = spec["worker"]
    assert isinstance(worker["replicas"], int) and worker["replicas"] >= 1
    (wc,) = worker["spec"]["containers"]
    assert wc["args"][:2] == ["dask", "worker"]
    assert wc["args"][wc["args"].index("--resources") + 1] == "GPU=1"
    assert wc["args"][wc["args"].index("--name") + 1] == "$(DASK_WORKER_NAME)"
    for part in ("requests", "limits"):
        assert wc["resources"][part]["nvidia.com/gpu"] == 1
    sched = spec["scheduler"]
    (sc,) = sched["spec"]["containers"]
    assert sc["args"] == ["dask", "scheduler"]
    assert sc["image"] == wc["image"]  # one dask version on both sides
    assert "nvidia.com/gpu" not in sc["resources"]["limits"]  # the scheduler needs no GPU
    ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    service = sched["service"]
    assert service["selector"] == {"dask.org/cluster-name": name,
                                   "dask.org/component": "scheduler"}
    assert {p["port"]: p["targetPort"] for p in service["ports"]} == {
        8786: "tcp-comm", 8787: "http-dashboard"}
    assert sc["readinessProbe"]["httpGet"]["port"] == "http-dashboard"


# ----------------------------------------------------------------------------- benchmarks/gpu.sh
def gpu_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), *args], env={
        **ENV, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=timeout)


def summary_rows(out: str) -> dict[str, str]:
    body = out.split("\nsummary\n", 1)[1].splitlines()[2:]
    cells = [re.split(r"\s{2,}", ln.strip(), maxsplit=1) for ln in body if ln.strip()]
    return {c[0]: c[1] for c in cells}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only path")
def test_gpu_sh_without_cuda_says_so_and_skips_cleanly():
    got = gpu_sh()
    assert got.returncode == 0, got.stderr
    assert "no CUDA device on this machine" in got.stdout
    rows = summary_rows(got.stdout)
    assert set(rows) >= {"CUDA tests (pytest -k cuda)", "forward vs FFT bound 512x512x64",
                         "refinement iteration vs forward", "tiles/s (scale.py --quick)",
                         "end-to-end replay frames/s"}
    assert all("skipped" in r for r in rows.values())


def test_gpu_sh_runs_a_benchmark_and_reports_its_figure():
    got = gpu_sh("--device", "cpu", "--quick", "--only", "FFT bound")
    assert got.returncode == 0, got.stdout + got.stderr
    (row,) = summary_rows(got.stdout).values()
    assert row.split()[0] == "ok"
    ratio = re.search(r"forward [\d.]+ ([\d.]+)x", row)
    assert ratio and float(ratio.group(1)) > 0.5  # forward over its FFT bound, as measured


def test_gpu_report_reads_tiles_per_second_from_the_scale_table():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    table = ("| frame (px) | tiles | pop-out (s) | refine (s) | frame (s) | s / Mpx | peak |\n"
             "|---|---|---|---|---|---|---|\n"
             "| 256 x 256 | 1 | 1.0 | 2.0 | 3.0 | 45.8 | 0.50 |\n"
             "| 768 x 768 | 9 | 5.0 | 12.0 | 17.0 | 28.8 | 0.90 |\n"
             "refinement of the 768 px frame's tiles: 1 worker 10.0 s, 2 workers 6.0 s: "
             "speed-up 1.67x\n")
    assert gpu_report.tiles_per_second(table) == (
        "256 px: 0.50 tiles/s; 768 px: 0.75 tiles/s; 2 vs 1 worker 1.67x")
    assert gpu_report.tiles_per_second("no table") == ""


@pytest.mark.skipif(importlib.util.find_spec("dask_cuda") is not None,
                    reason="checks the refusal without dask-cuda")
def test_gpu_workstation_refuses_cuda_mode_without_dask_cuda_in_one_line():
    got = subprocess.run([sys.executable, str(DEPLOY / "gpu_workstation.py"), "--mode", "cuda",
                          "--port", "0"], env=ENV, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert got.stderr.strip().splitlines() == [got.stderr.strip()]
    assert "--mode cuda needs dask-cuda" in got.stderr


def test_gpu_workstation_reports_a_busy_port_in_one_line():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        got = subprocess.run([sys.executable, str(DEPLOY / "gpu_workstation.py"), "--port",
                              str(port), "--mode", "processes"], env=ENV, capture_output=True,
                             text=True, timeout=90)
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert got.stderr.strip().splitlines() == [got.stderr.strip()]
    assert "the dask scheduler exited with code" in got.stderr
