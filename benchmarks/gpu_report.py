"""The GPU checks of benchmarks/gpu.sh, in about 10 minutes: the CUDA tests, then the GPU
benchmarks, each in its own process with a time limit, then one summary table.

    python benchmarks/gpu_report.py [--device cuda|cpu] [--quick] [--budget 600]

1. the tests that need CUDA (``pytest -k cuda``: the suite skips them without a device);
2. forward model vs its cuFFT bound at 512 x 512 x 64 (benchmarks/forward.py);
3. one refinement iteration vs one forward pass (benchmarks/refine_speed.py);
4. tiles/s (benchmarks/scale.py --quick, when that script exists);
5. end-to-end replay frames/s (benchmarks/pipeline.py, refinement on the device).

Each step reports its peak device memory (torch.cuda.max_memory_allocated, MiB). Without a
CUDA device every step is skipped with a line saying so (``--device cpu`` runs them on the CPU
instead, at ``--quick`` sizes: a check of this script itself).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEAK = "peak device memory (MiB): "


@dataclass
class Step:
    name: str
    argv: list[str]  # a script under benchmarks/ and its arguments, or a pytest command
    limit: float  # s
    figure: str  # regex of the output line(s) whose text is the step's key figure
    status: str = "not run"
    summarise: Callable[[str], str] | None = None  # the key figure from the whole output
    seconds: float = 0.0
    peak: str = "-"
    result: str = ""


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def steps(device: str, quick: bool) -> list[Step]:
    fwd_shape = ["16", "128", "128"] if quick else ["64", "512", "512"]
    refine_shape = ["8", "64", "64"] if quick else ["32", "256", "256"]
    out = [
        Step("CUDA tests (pytest -k cuda)",
             ["-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider", str(ROOT / "tests")],
             120, r"\d+ (passed|skipped|failed).*"),
        Step(f"forward vs FFT bound {'x'.join(reversed(fwd_shape[1:]))}x{fwd_shape[0]}",
             [str(HERE / "forward.py"), "--device", device, "--shape", *fwd_shape],
             90, r"^(FFT bound.*|forward\s+[\d.].*)$"),
        Step("refinement iteration vs forward",
             [str(HERE / "refine_speed.py"), "--device", device, "--shape", *refine_shape],
             150, r"one iteration.*"),
    ]
    scale = HERE / "scale.py"
    if scale.exists():
        out.append(Step("tiles/s (scale.py --quick)", [str(scale), "--quick"], 240, "",
                        summarise=tiles_per_second))
    else:
        out.append(Step("tiles/s (scale.py --quick)", [], 0, "",
                        status="skipped: benchmarks/scale.py does not exist yet"))
    frames = ["--frames", "4", "--size", "64", "--slices", "8", "--iterations", "3"] if quick \
        else ["--frames", "8", "--size", "256", "--slices", "16", "--iterations", "10"]
    out.append(Step("end-to-end replay frames/s",
                    [str(HERE / "pipeline.py"), *frames, "--rounds", "1", "--device", device,
                     "--dectris-frames", "0", "--skip-ingest"],
                    180, r"replay, steady.*"))
    return out


def run(step: Step, env: dict[str, str], deadline: float) -> None:
    limit = min(step.limit, deadline - time.monotonic())
    if limit < 10:
        step.status = "skipped: out of time"
        return
    is_pytest = step.argv[:2] == ["-m", "pytest"]
    # A benchmark runs under _peak.py, which prints its peak device memory at the end.
    argv = [sys.executable, *(step.argv if is_pytest else [str(HERE / "_peak.py"), *step.argv])]
    print(f"\n=== {step.name}: {' '.join(step.argv)}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=limit)
    except subprocess.TimeoutExpired as exc:
        step.seconds = time.perf_counter() - t0
        step.status = f"timed out after {limit:.0f} s"
        print((exc.stdout or b"")[-2000:] if isinstance(exc.stdout, str) else "", flush=True)
        return
    step.seconds = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    print(proc.stdout[-6000:], end="", flush=True)
    if proc.returncode not in (0, 5):  # pytest 5: nothing selected
        print(proc.stderr[-3000:], end="", flush=True)
        step.status = f"failed (exit {proc.returncode})"
    else:
        step.status = "ok"
    for line in text.splitlines():
        if line.startswith(PEAK):
            step.peak = line[len(PEAK):].strip()
    if step.summarise is not None:
        step.result = step.summarise(text) or "(no figure found)"
        return
    found = [m.group(0).strip() for m in re.finditer(step.figure, text, re.MULTILINE)]
    step.result = "; ".join(" ".join(f.split()) for f in found[-2:]) or "(no figure found)"


def tiles_per_second(text: str) -> str:
    """Tiles refined per second at each frame size of benchmarks/scale.py's table
    (| frame (px) | tiles | pop-out (s) | refine (s) | ...), and its 1-vs-2-worker speed-up."""
    parts = []
    for m in re.finditer(r"^\|\s*(\d+) x \d+\s*\|\s*(\d+)\s*\|\s*[\d.]+\s*\|\s*([\d.]+)\s*\|",
                         text, re.MULTILINE):
        size, tiles, refine_s = int(m.group(1)), int(m.group(2)), float(m.group(3))
        if refine_s > 0:
            parts.append(f"{size} px: {tiles / refine_s:.2f} tiles/s")
    speedup = re.search(r"speed-up ([\d.]+x)", text)
    if speedup:
        parts.append(f"2 vs 1 worker {speedup.group(1)}")
    return "; ".join(parts)


def table(rows: list[Step]) -> str:
    head = ("step", "status", "s", "peak MiB", "result")
    cells = [head] + [(s.name, s.status, f"{s.seconds:.0f}", s.peak, s.result) for s in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(c[k].ljust(widths[k]) for k in range(4)) + "  " + c[4])
        if i == 0:
            lines.append("-" * (sum(widths) + 8 + max(len(c[4]) for c in cells)))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu to check the script")
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds on a CPU)")
    ap.add_argument("--budget", type=float, default=600.0, help="s for everything")
    ap.add_argument("--only", help="run only the steps whose name contains this text")
    args = ap.parse_args()
    deadline = time.monotonic() + args.budget
    has_cuda = cuda_available()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    plan = steps(args.device, args.quick)
    if args.only:
        plan = [s for s in plan if args.only.lower() in s.name.lower()]
    print(f"stream3d GPU checks: device {args.device}, CUDA available: {has_cuda}", flush=True)
    for step in plan:
        if step.status != "not run":
            continue
        if args.device.startswith("cuda") and not has_cuda:
            step.status = "skipped: no CUDA device"
        elif step.argv[:2] == ["-m", "pytest"] and not has_cuda:
            step.status = "skipped: no CUDA device"
        else:
            run(step, env, deadline)
    if args.device.startswith("cuda") and not has_cuda:
        print("\nno CUDA device on this machine (torch.cuda.is_available() is False): the CUDA "
              "tests and GPU benchmarks were skipped")
    print("\nsummary\n" + table(plan), flush=True)
    return 1 if any(s.status.startswith(("failed", "timed out")) for s in plan) else 0


if __name__ == "__main__":
    sys.exit(main())
