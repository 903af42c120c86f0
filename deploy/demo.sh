#!/usr/bin/env bash
# The README's main job: set up .venv, then run the embedded default demo into out/demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/deploy/setup.sh"
cd "$root"
exec stream3d demo --out "${1:-out/demo}"
