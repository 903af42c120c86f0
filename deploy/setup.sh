#!/usr/bin/env bash
# Set-up shared by deploy/demo.sh and deploy/test.sh: a virtual environment in .venv with
# stream3d and its test extras installed. Safe to run again; it reinstalls only when
# pyproject.toml changed. Source it (". deploy/setup.sh") to get the venv's python on PATH.
#
# torch: if the chosen python already imports torch (a user's CUDA build, say), it is kept.
# Otherwise STREAM3D_TORCH (default "torch==2.13.0") is installed; set it to e.g.
# "torch --index-url https://download.pytorch.org/whl/cu124" for a particular CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STREAM3D_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "stream3d setup: creating $venv" >&2
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.stream3d-installed"
# test: pytest and friends; bench: abTEM, the independent multislice code the physics
# cross-checks (tests/test_astigmatism.py, tests/test_accuracy_bench.py) compare against.
extras="test,bench"
want="$( (cat "$root/pyproject.toml"; echo "$extras") | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$py" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    if ! "$py" -c "import torch" 2>/dev/null; then
        echo "stream3d setup: installing ${STREAM3D_TORCH:-torch==2.13.0}" >&2
        # shellcheck disable=SC2086
        "$py" -m pip install -q --disable-pip-version-check ${STREAM3D_TORCH:-torch==2.13.0} >&2
    fi
    echo "stream3d setup: installing stream3d and its dependencies" >&2
    "$py" -m pip install -q --disable-pip-version-check -e "$root[$extras]" >&2
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
