"""kill -9 campaign: a recording run SIGKILLed at random instants, store creation included,
then run to the end; every frame of the movie must be in the store exactly once.

Each trial forks a child that replays the movie (raw frames only) into the run store, and
kills it with SIGKILL after a random delay: the first trials with delays of a few ms (they
land in the store's creation), the rest anywhere in a run. After the campaign one more run
goes to the end, and the store is checked: frame numbers 0..N-1 once each, in order, pixels
bit-exact, counters equal to the table, no hidden creation folder left behind.

    python benchmarks/kill_campaign.py --kills 24 [--frames 300] [--seed 0] [--json]

Forking (not spawning) keeps a trial cheap; the driver itself never touches zarr before the
last fork (a forked copy of zarr's event-loop thread would hang the child).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = ["sample.slices=2", "stream.write_batch=4", "stream.queue=8"]


def _record(movie: Path, out: Path) -> None:
    """The child: replay ``movie`` into ``out`` (raw frames only), then exit."""
    import logging

    from stream3d import config as config_mod
    from stream3d.stream import FileSource, RunOptions, run_pipeline

    logging.getLogger("stream3d").setLevel(logging.ERROR)  # "not keeping up": expected here
    cfg = config_mod.load(None, SETS)
    run_pipeline(FileSource(movie, frame_interval=0.01), out, cfg,
                 options=RunOptions(reconstruct=False))


def _stored(out: Path) -> int | None:
    """Frames the store's attributes say are committed (None: no store yet). JSON only."""
    try:
        meta = json.loads((out / "zarr.json").read_text())
        return int(meta["attributes"]["stream3d"]["frames"])
    except (OSError, ValueError, KeyError):
        return None


def campaign(workdir: Path, *, kills: int, frames: int, seed: int) -> dict:
    from stream3d.io.movies import write_mrc_movie
    from stream3d.stream import FileSource, RunOptions, run_pipeline  # noqa: F401 - imported
    # once here, so that a forked trial starts writing at once (importing is not using zarr)

    rng = np.random.default_rng(seed)
    movie_frames = rng.integers(0, 4000, (frames, 32, 32)).astype(np.uint16)
    movie = write_mrc_movie(workdir / "movie.mrc", movie_frames, pixel_size=1.0)
    out = workdir / "run.zarr"
    pick = random.Random(seed)
    trials = []
    early = max(4, kills // 5)  # trials aimed at store creation
    t_start = time.monotonic()
    for k in range(kills):
        delay = pick.uniform(0.0, 0.03) if k < early else pick.uniform(0.0, 0.6)
        before = _stored(out)
        pid = os.fork()
        if pid == 0:  # the child
            try:
                _record(movie, out)
                os._exit(0)
            except BaseException:  # noqa: BLE001 - a child must never return into the driver
                os._exit(3)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        after = _stored(out)
        phase = ("creation" if before is None else "run") if killed else "finished"
        trials.append({"delay_ms": round(delay * 1000, 1), "phase": phase,
                       "frames_before": before, "frames_after": after,
                       "hidden_siblings": len(list(workdir.glob(".run.zarr.creating-*")))})
        if not killed and os.WEXITSTATUS(status) != 0:
            raise SystemExit(f"trial {k}: the run failed on its own (exit "
                             f"{os.WEXITSTATUS(status)})")
    pid = os.fork()  # the last run, to the end
    if pid == 0:
        try:
            _record(movie, out)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"the final run failed (status {status})")
    return _verify(out, movie_frames, trials, time.monotonic() - t_start, workdir)


def _verify(out: Path, movie: np.ndarray, trials: list, seconds: float, workdir: Path) -> dict:
    from stream3d.store import open_run

    g = open_run(out)
    ids = g["frame_id"][:]
    counters = g.attrs["stream3d"]["counters"]
    ok = (ids.tolist() == list(range(len(movie)))
          and np.array_equal(g["frames"][:], movie)
          and counters["received"] == len(movie)
          and not list(workdir.glob(".run.zarr.creating-*")))
    return {
        "kills": sum(t["phase"] != "finished" for t in trials),
        "kills_during_creation": sum(t["phase"] == "creation" for t in trials),
        "kills_during_run": sum(t["phase"] == "run" for t in trials),
        "finished_before_kill": sum(t["phase"] == "finished" for t in trials),
        "frames": len(movie), "stored": int(ids.size),
        "distinct": int(np.unique(ids).size), "counters": counters,
        "every_frame_exactly_once": bool(ok), "seconds": round(seconds, 1), "trials": trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = campaign(Path(tmp), kills=args.kills, frames=args.frames, seed=args.seed)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['kills']} SIGKILLs ({result['kills_during_creation']} during store "
          f"creation, {result['kills_during_run']} during a run; "
          f"{result['finished_before_kill']} runs finished first) in {result['seconds']} s")
    print(f"stored {result['stored']} frames, {result['distinct']} distinct, of "
          f"{result['frames']}: every frame exactly once = {result['every_frame_exactly_once']}")
    print(f"counters {result['counters']}")
    if not result["every_frame_exactly_once"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
