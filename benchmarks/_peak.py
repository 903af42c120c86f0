"""Run a benchmark script as __main__, then print its peak device memory (MiB, CUDA only).

    python benchmarks/_peak.py benchmarks/forward.py --device cuda ...
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    script, *args = sys.argv[1:]
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            peak = max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count()))
            print(f"peak device memory (MiB): {peak / 2**20:.0f}", flush=True)
        else:
            print("peak device memory (MiB): -", flush=True)  # no CUDA device used


if __name__ == "__main__":
    main()
