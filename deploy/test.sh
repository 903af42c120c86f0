#!/usr/bin/env bash
# The README's test command (and what .ci/run calls): set up .venv, run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/deploy/setup.sh"
# tests/test_viewer.py loads the view's page in headless Chromium (the distribution's package).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "stream3d test: installing chromium (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/dev/null 2>&1 || echo "stream3d test: chromium not installed; the browser test skips" >&2
fi
cd "$root"
exec python -m pytest -q "$@"
