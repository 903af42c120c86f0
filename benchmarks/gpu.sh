#!/usr/bin/env bash
# The GPU checks in ~10 minutes (benchmarks/gpu_report.py): the CUDA tests, forward vs cuFFT
# bound at 512 x 512 x 64, a refinement iteration vs a forward pass, tiles/s, end-to-end
# frames/s and peak device memory per step, then one summary table. Runs anywhere: without a
# CUDA device it says so and skips the CUDA parts (exit 0).
#
#   bash benchmarks/gpu.sh                     # the python: $PYTHON, else .venv, else python3
#   PYTHON=/opt/conda/bin/python bash benchmarks/gpu.sh --budget 540
#   bash benchmarks/gpu.sh --device cpu --quick   # the same steps at small sizes on the CPU
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
cd "$root"
exec "$py" benchmarks/gpu_report.py "$@"
