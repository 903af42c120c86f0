#!/usr/bin/env bash
# The README's main job: set up .venv, simulate a short movie of a growing nano-dendrite (with
# its 3D ground truth), replay it through the full pipeline on the embedded default (dask
# pop-out -> warm-started refinement -> 4D Zarr run store), compare with the truth, analyse
# (tracked objects, growth fronts, pictures) and print where the report is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/deploy/setup.sh"
cd "$root"
out="${1:-out/demo}"
stream3d simulate --config configs/demo.toml --out "$out"
stream3d reconstruct "$out/movie.mrc" --config "$out/config.toml" --out "$out/run.zarr"
echo
echo "errors against the ground truth (the demo trades accuracy for speed: 192 px, 16 slices of 40 Å, 10 iterations),"
echo "objects tracked over time, growth fronts, pictures and the report:"
stream3d analyze "$out/run.zarr" --truth "$out/truth.zarr" --out "$out/report"
echo
echo "report: $out/report/index.html   (open it in a browser: tracks, growth fronts, truth side by side)"
echo "4D run store: $out/run.zarr   (zarr.open_group(\"$out/run.zarr\")[\"volume\"]: t, z, y, x in V)"
echo "ground truth: $out/truth.zarr; run it again to resume, or stream it live with:"
echo "  source .venv/bin/activate"
echo "  stream3d camera $out/movie.mrc --config $out/config.toml --fps 10 &  stream3d live --connect tcp://127.0.0.1:5555 --config $out/config.toml --out $out/live.zarr"
