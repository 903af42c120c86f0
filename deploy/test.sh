#!/usr/bin/env bash
# The README's test command (and what .ci/run calls): set up .venv, run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/deploy/setup.sh"
cd "$root"
exec python -m pytest -q "$@"
