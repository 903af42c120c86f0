"""``python tests/stream_replay_doubles.py MOVIE OUT DELAY``: `reconstruct` with the stage
doubles in a process of its own (the SIGKILL test kills it mid-run)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_doubles import RefinerDouble, popout_double  # noqa: E402

from stream3d import config as config_mod  # noqa: E402
from stream3d.stream import Stages  # noqa: E402
from stream3d.stream.commands import reconstruct  # noqa: E402


class Slow(RefinerDouble):
    delay = float(sys.argv[3])


if __name__ == "__main__":
    cfg = config_mod.load(None, ["sample.slices=4", "stream.queue=4", "stream.window=2"])
    summary = reconstruct(sys.argv[1], sys.argv[2], cfg, show_status=False,
                          stages=Stages(popout_double, Slow))
    print(summary.statuses)
