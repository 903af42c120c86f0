"""The run store under faults: one writer per store, a kill during creation, counters that
match what is committed, dtypes it can hold, start.meta validated, bounded and written once."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.cli import app
from stream3d.errors import UserError
from stream3d.store import RawFrame, RunStore, Status, open_run, read_segments
from stream3d.stream.meta import MAX_META_BYTES, clean_meta
from stream3d.stream.protocol import FrameMessage, Kind, Malformed, Start, decode, encode_frame
from stream3d.stream.tracker import Tracker

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
CFG = config_mod.load(None, ["sample.slices=2"])
runner = CliRunner()


def _frames(n, start=0, series="s", dtype=np.uint16):
    return [RawFrame(series, i, 0.5 * i, np.full((4, 6), i, dtype)) for i in range(start, start + n)]


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


HOLD = """
    import sys, time
    from stream3d import config
    from stream3d.store import RunStore
    store = RunStore.open(sys.argv[1] if len(sys.argv) > 1 else {path!r},
                          config.load(None, ["sample.slices=2"]))
    print("holding", flush=True)
    time.sleep(120)
"""


# ------------------------------------------------------------------------------ 1. one writer
def test_a_second_writer_is_refused_at_once_naming_the_holder_and_the_lock_dies_with_it(tmp_path):
    path = tmp_path / "run.zarr"
    holder = _python(HOLD.format(path=str(path)))
    try:
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
        with pytest.raises(UserError, match=f"being written by process {holder.pid}"):
            RunStore.open(path, CFG)
        # The CLI: one line naming the holder, exit code 2, for `live` and for `reconstruct`.
        result = runner.invoke(app, ["live", "--bind", "tcp://127.0.0.1:1", "--record-only",
                                     "--out", str(path), "--set", "sample.slices=2"])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            f"stream3d: error: run store {path} is being written by process {holder.pid} (one "
            "writer per store): wait for it to end, or write to another --out"]
        result = runner.invoke(app, ["reconstruct", str(path), "--out", str(path),
                                     "--set", "sample.slices=2"])
        assert result.exit_code == 2 and f"process {holder.pid}" in result.output
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    # Killed: the kernel dropped its lock; the store opens and is whole.
    store = RunStore.open(path, CFG)
    store.append(_frames(2))
    store.close()
    assert open_run(path)["frame_id"][:].tolist() == [0, 1]


def test_two_stores_opened_together_in_one_process_are_refused_too(tmp_path):
    first = RunStore.open(tmp_path / "r.zarr", CFG)
    with pytest.raises(UserError, match=f"process {os.getpid()}"):
        RunStore.open(tmp_path / "r.zarr", CFG)
    first.close()  # closing releases the lock
    RunStore.open(tmp_path / "r.zarr", CFG).close()


# ------------------------------------------------------------------- 3. a kill during creation
KILL_DURING_CREATION = """
    import os, signal
    from stream3d import config
    from stream3d.store import RunStore
    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)
    RunStore._write_attrs = die  # the group exists, its stream3d attributes do not yet
    RunStore.open({path!r}, config.load(None, ["sample.slices=2"]))
"""


def test_a_kill_during_store_creation_leaves_nothing_the_rerun_refuses(tmp_path):
    path = tmp_path / "run.zarr"
    proc = _python(KILL_DURING_CREATION.format(path=str(path)))
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists()  # the half-made group stayed in its hidden sibling
    store = RunStore.open(path, CFG)
    store.append(_frames(3))
    store.close()
    assert open_run(path)["frame_id"][:].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["run.zarr"]  # the abandoned sibling is gone


# --------------------------------------------------------------------------- 4. counters
def test_counters_match_the_committed_frames_after_a_crash_between_data_and_counters(
        tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    store = RunStore.open(path, CFG)
    store.append(_frames(3), {"received": 3})
    real = RunStore._write_attrs

    def crash(self):
        raise OSError("disk full")

    monkeypatch.setattr(RunStore, "_write_attrs", crash)
    with pytest.raises(OSError):
        store.append(_frames(2, start=3), {"received": 5})  # frames committed, counters not
    with pytest.raises(OSError):
        store.write_result(0, status=Status.FAILED)  # status committed, counters not
    store.release()
    monkeypatch.setattr(RunStore, "_write_attrs", real)
    assert open_run(path).attrs["stream3d"]["counters"]["received"] == 3  # stale on disk

    again = RunStore.open(path, CFG)
    assert len(again) == 5
    assert again.counters["received"] == 5 and again.counters["failed"] == 1
    again.close()
    counters = open_run(path).attrs["stream3d"]["counters"]
    assert counters["received"] == 5 and counters["failed"] == 1 and counters["skipped"] == 0


def test_counters_from_callers_cannot_disagree_with_the_table(tmp_path):
    store = RunStore.open(tmp_path / "r.zarr", CFG)
    store.append(_frames(4), {"received": 99, "gaps": 7})
    store.mark([1, 2], Status.SKIPPED, {"skipped": 50})
    store.write_result(2, status=Status.REFINED, volume=np.zeros((2, 4, 6)), loss=1.0)
    store.close()
    c = open_run(tmp_path / "r.zarr").attrs["stream3d"]["counters"]
    assert c == {"received": 4, "malformed": 0, "gaps": 7, "duplicates": 0, "skipped": 1,
                 "failed": 0}


# --------------------------------------------------------------------------- 6. dtypes
@pytest.mark.parametrize("dtype", ["<f16", ">f16", "<c8", "|b1"])
def test_frames_of_dtypes_the_store_cannot_hold_are_malformed(dtype):
    data = np.zeros((2, 3), np.dtype(dtype))
    parts = encode_frame("s", 0, 0.0, np.zeros((2, 3), np.uint8))
    head = {**json.loads(parts[0]), "dtype": np.dtype(dtype).str}
    with pytest.raises(Malformed) as err:
        decode([json.dumps(head).encode(), data.tobytes()])
    assert err.value.kind is Kind.UNKNOWN_DTYPE


def test_the_tracker_and_the_store_refuse_float128_from_any_protocol(tmp_path):
    tr = Tracker()
    tr.accept(Start("s"))
    assert tr.accept(FrameMessage("s", 0, 0.0, np.zeros((2, 3), np.longdouble))) is None
    assert tr.by_kind == {"unknown_dtype": 1} and tr.counters["received"] == 0
    store = RunStore.open(tmp_path / "r.zarr", CFG)
    with pytest.raises(ValueError, match="the store holds only"):
        store.append([RawFrame("s", 0, 0.0, np.zeros((2, 3), np.longdouble))])
    store.append(_frames(1, dtype=np.float16))  # a fresh store still takes a good frame
    store.close()
    assert open_run(tmp_path / "r.zarr")["frames"].dtype == np.float16


# --------------------------------------------------------------------------- 2. frame numbers
def test_frame_numbers_beyond_int64_are_malformed_in_decode():
    for n in (2**63, 10**30):
        parts = encode_frame("s", 0, 0.0, np.zeros((2, 2), np.uint16))
        head = {**json.loads(parts[0]), "frame": n}
        with pytest.raises(Malformed) as err:
            decode([json.dumps(head).encode(), parts[1]])
        assert err.value.kind is Kind.BAD_VALUE
    head = {**json.loads(parts[0]), "frame": 2**63 - 1}
    assert decode([json.dumps(head).encode(), parts[1]]).frame == 2**63 - 1
    with pytest.raises(Malformed):
        decode([json.dumps({"htype": "end", "series": "s", "frames": 10**30}).encode()])


def test_wild_frame_numbers_and_end_counts_cannot_inflate_counters_or_stall_a_series():
    tr = Tracker()
    tr.accept(Start("s"))

    def frame(n):
        return FrameMessage("s", n, 0.0, np.zeros((2, 2), np.uint16))

    assert [tr.accept(frame(n)) is not None for n in (0, 1, 2)] == [True] * 3
    assert tr.accept(frame(2**62)) is None  # far beyond the series: malformed, not a gap
    assert tr.accept(frame(3)) is not None  # the series goes on
    from stream3d.stream.protocol import End

    assert tr.accept(End("s", 10**15)) is None
    assert tr.counters == {"received": 4, "malformed": 2, "gaps": 0, "duplicates": 0}
    assert tr.accept(End("s", 6)) is not None  # a real tail: 4 and 5 lost
    assert tr.accept(End("s", 9)) is not None  # a second end adds nothing
    assert tr.counters["gaps"] == 2


def test_hostile_numbers_on_the_wire_leave_every_valid_frame_of_the_batch_stored(tmp_path):
    """Over ZeroMQ into a recording run: frame 10^30, 2^62 and an end of 10^15 among valid
    frames; the valid frames (one write batch) are all stored and the counters are exact."""
    import threading

    import zmq

    from stream3d.stream import RunOptions, ZmqSource, run_pipeline
    from stream3d.stream.protocol import encode_end, encode_start
    from stream_helpers import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    frames = np.arange(10 * 12, dtype=np.uint16).reshape(10, 3, 4)

    def send():
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 5000)
        sock.connect(address)
        sock.send_multipart(encode_start(7))
        for n in range(10):
            sock.send_multipart(encode_frame(7, n, float(n), frames[n]))
            if n == 4:
                for wild in (10**30, 2**62):
                    head = {**json.loads(encode_frame(7, 0, 0.0, frames[0])[0]), "frame": wild}
                    sock.send_multipart([json.dumps(head).encode(), frames[0].tobytes()])
                sock.send_multipart([json.dumps({"htype": "end", "series": 7,
                                                 "frames": 10**15}).encode()])
        sock.send_multipart(encode_end(7, 10))
        sock.close()
        ctx.term()

    sender = threading.Thread(target=send)
    sender.start()
    cfg = config_mod.load(None, ["sample.slices=2", "stream.write_batch=64"])
    summary = run_pipeline(ZmqSource(address, pattern="pull", bind=True), tmp_path / "r.zarr",
                           cfg, options=RunOptions(reconstruct=False, idle_timeout=20))
    sender.join(10)
    g = open_run(tmp_path / "r.zarr")
    assert g["frame_id"][:].tolist() == list(range(10))
    np.testing.assert_array_equal(g["frames"][:], frames)
    assert g.attrs["stream3d"]["counters"] == {"received": 10, "malformed": 3, "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
    assert summary.reason == "end of series 7"


# --------------------------------------------------------------------------- 5. start.meta
def _strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_meta_is_validated_against_the_config_and_json_stays_strict(tmp_path):
    head = ('{"htype":"start","series":1,"meta":{"microscope":{"energy":-1,"cs":"x",'
            '"defocus":NaN,"aperture":Infinity,"focal_spread":25.0},"sample":{"slices":4},'
            '"operator":"kim","deep":{"a":{"b":1}},"bad":NaN}}')
    start = decode([head.encode()])
    tr = Tracker()
    kept = tr.accept(start)
    assert kept.meta == {"microscope": {"focal_spread": 25.0}, "sample": {"slices": 4},
                         "operator": "kim"}
    assert kept.meta_dropped == 6 and tr.counters["malformed"] == 0
    store = RunStore.open(tmp_path / "r.zarr", CFG)
    store.begin_series(kept.series, kept.meta, kept.meta_dropped)
    store.append(_frames(1, series=1))
    store.close()
    for p in (tmp_path / "r.zarr").rglob("zarr.json"):
        _strict(p.read_text())  # no bare NaN anywhere
    seg = read_segments(open_run(tmp_path / "r.zarr"))[0]
    assert seg["meta"] == kept.meta and seg["meta_dropped"] == 6


def test_meta_is_bounded_and_the_excess_counted():
    meta = {"detector_extra": {f"k{i:05d}": "v" * 1000 for i in range(200)}}  # ~200 kB
    kept, dropped = clean_meta(meta)
    size = len(json.dumps(kept))
    assert MAX_META_BYTES - 1100 < size <= MAX_META_BYTES
    assert len(kept["detector_extra"]) + dropped == 200 and dropped > 100
    too_big = b'{"htype":"start","series":1,"meta":{"x":"' + b"y" * (2 << 20) + b'"}}'
    with pytest.raises(Malformed):  # the header itself is bounded before it is parsed
        decode([too_big])


def test_meta_is_written_once_per_series_and_batches_cost_the_same_whatever_the_segments(
        tmp_path):
    store = RunStore.open(tmp_path / "r.zarr", CFG)
    big = {"detector_extra": {f"k{i}": "v" * 500 for i in range(100)}}  # ~50 kB kept
    store.begin_series("a", big)
    store.append(_frames(1, series="a"))
    root = tmp_path / "r.zarr" / "zarr.json"
    size_one = root.stat().st_size
    assert size_one < 8000  # the ~50 kB meta is not in the attributes rewritten with each batch
    for k in range(300):
        store.begin_series(f"s{k}", {"microscope": {"defocus": 1000.0 + k}})
        store.append([RawFrame(f"s{k}", 0, float(k), np.zeros((4, 6), np.uint16))])
    assert abs(root.stat().st_size - size_one) < 16  # O(1) per batch: no list of segments
    store.close()
    again = RunStore.open(tmp_path / "r.zarr", CFG)  # and a resume reads them all back
    segs = read_segments(open_run(tmp_path / "r.zarr"))
    assert len(segs) == 301 and segs[0]["meta"] == big
    assert segs[300] == {"series": "s299", "first": 300,
                         "meta": {"microscope": {"defocus": 1299.0}}}
    assert again.current_series() == "s299" and len(again.seen()) == 301
    again.close()
    assert math.isclose(open_run(tmp_path / "r.zarr").attrs["stream3d"]["segments"], 301)
