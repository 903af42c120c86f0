"""``live --protocol dectris`` end to end against the stream v2 emulator over loopback.

Exact checks: every good image stored bit-exact in the chosen channel, counters equal to the
faults injected, a series of another bit depth stored whole in a run store of its own, masked
and NODATA pixels counted per frame and kept out of compute while the raw frame is untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from stream3d import config as config_mod
from stream3d.io.movies import write_mrc_movie
from stream3d.store import Status, open_run, read_segments
from stream3d.stream import Camera, Faults, Stages
from stream3d.stream.dectris_camera import CORRUPTIBLE, StreamFormat, channel_data, play_dectris
from stream3d.stream.dectris_commands import live
from stream3d.stream.dectris_source import side_store_path
from stream3d.stream.pixel_mask import PixelRule, fill_invalid
from stream_helpers import RefinerDouble, free_port, popout_double

ROOT = Path(__file__).resolve().parents[1]
CFG = config_mod.load(None, ["sample.slices=2", "stream.queue=8", "stream.window=2",
                              "popout.patch=32", "popout.step=8"])  # frames are 40 x 56 px
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                    os.environ.get("PYTHONPATH", "")])}


def movie(n: int, dtype=np.uint16, shape=(40, 56), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(300, (n, *shape)).astype(dtype)


class DectrisCamera(threading.Thread):
    """Plays one or more series (movie, StreamFormat, Faults) from one bound PUSH socket."""

    def __init__(self, address, plays, fps=0.0):
        super().__init__(daemon=True)
        self.camera = Camera(address, pattern="push", wait=30.0)
        self.plays, self.fps = plays, fps
        self.reports, self.error = [], None

    def run(self):
        try:
            for number, (frames, fmt, faults) in enumerate(self.plays, start=1):
                self.reports.append(play_dectris(frames, self.camera, fps=self.fps,
                                                 series=number * 10, faults=faults, fmt=fmt))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.error = exc
        finally:
            self.camera.close()


def run_live(out, plays, *, config=CFG, record_only=True, stages=None, idle=3.0):
    address = f"tcp://127.0.0.1:{free_port()}"
    cam = DectrisCamera(address, plays)
    cam.start()
    try:
        result = live(out, config, connect=address, idle_timeout=idle, record_only=record_only,
                      show_status=False, stages=stages)
    finally:
        cam.join(60)
    assert cam.error is None and not cam.is_alive()
    return result, cam.reports


def test_faults_are_counted_exactly_and_good_images_stored_bit_exact(tmp_path):
    frames = movie(12)
    faults = Faults(drop=frozenset({2, 3, 11}), duplicate=frozenset({1, 7}),
                    corrupt=CORRUPTIBLE)
    fmt = StreamFormat(channels=3, compression="bslz4")
    result, (report,) = run_live(tmp_path / "run.zarr", [(frames, fmt, faults)])
    assert report.dropped == 3 and report.duplicated == 2
    assert sum(report.corrupted.values()) == len(CORRUPTIBLE) == 9
    kept = [i for i in range(12) if i not in (2, 3, 11)]
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames[kept])  # threshold_1, as sent
    assert g["frames"].dtype == np.uint16
    np.testing.assert_array_equal(g["frame_id"][:], kept)
    np.testing.assert_allclose(g["timestamp"][:], np.array(kept) * 0.01)  # start_time, s
    # 2, 3 inside the series; 11 is the tail, known from the start's number_of_images.
    assert g.attrs["stream3d"]["counters"] == {"received": 9, "malformed": 9, "gaps": 3,
                                               "duplicates": 2, "skipped": 0, "failed": 0}
    assert result.summary.malformed_kinds == {k.value: 1 for k in CORRUPTIBLE}
    assert (g["status"][:] == Status.PENDING).all()
    np.testing.assert_array_equal(g["masked"][:], np.zeros(9))  # nothing masked, no NODATA
    (segment,) = read_segments(g)
    meta = segment["meta"]["dectris"]
    assert meta["series_id"] == 10 and meta["number_of_images"] == 12
    assert meta["channels"] == ["threshold_1", "threshold_2", "difference"]
    assert meta["stored_channel"] == "threshold_1" and meta["pixel_size_x"] == 75e-6
    assert result.side_stores == []


@pytest.mark.parametrize("compression, channel", [("lz4", "threshold_2"), ("none", "difference")])
def test_the_chosen_channel_is_stored_whatever_the_compression(tmp_path, compression, channel):
    frames = movie(4, dtype=np.uint32)
    cfg = config_mod.load(None, ["sample.slices=2", f"stream.channel={channel}"])
    run_live(tmp_path / "run.zarr", [(frames, StreamFormat(3, compression), Faults())],
             config=cfg)
    g = open_run(tmp_path / "run.zarr")
    expected = np.stack([channel_data(f, 3)[channel] for f in frames])
    np.testing.assert_array_equal(g["frames"][:], expected)
    assert g["frames"].dtype == np.uint32


def test_a_bit_depth_change_goes_to_its_own_store_and_loses_nothing(tmp_path):
    first, second, third = movie(5, np.uint16, seed=1), movie(4, np.uint32, seed=2), \
        movie(3, np.uint16, seed=3)
    out = tmp_path / "run.zarr"
    result, reports = run_live(out, [(first, StreamFormat(), Faults()),
                                     (second, StreamFormat(2), Faults(duplicate=frozenset({1}))),
                                     (third, StreamFormat(), Faults(drop=frozenset({0})))])
    g = open_run(out)
    np.testing.assert_array_equal(g["frames"][:], np.concatenate([first, third[1:]]))
    assert [s["first"] for s in read_segments(g)] == [0, 5]
    assert g.attrs["stream3d"]["counters"]["received"] == 7
    assert g.attrs["stream3d"]["counters"]["gaps"] == 1  # series 30 lost its image 0
    side = tmp_path / "run.series-20.zarr"
    assert result.side_stores == [side]
    s = open_run(side)
    np.testing.assert_array_equal(s["frames"][:], second)
    assert s["frames"].dtype == np.uint32
    assert s.attrs["stream3d"]["counters"]["duplicates"] == 1
    assert s.attrs["stream3d"]["counters"]["received"] == 4


def test_masked_and_nodata_pixels_are_counted_and_kept_out_of_compute(tmp_path):
    frames = movie(5)
    mask = np.zeros(frames.shape[1:], np.uint32)
    mask[5, 7] = 2  # a dead pixel
    mask[10:12, :] = 1  # a gap between chips
    frames[:, 20, 30] = 65535  # NODATA
    frames[3, 0, 0] = 60001  # above the saturation value
    fmt = StreamFormat(channels=1, pixel_mask=mask, saturation=60000)
    result, _ = run_live(tmp_path / "run.zarr", [(frames, fmt, Faults())], record_only=False,
                         stages=Stages(popout=popout_double, refiner=RefinerDouble))
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames)  # raw, untouched
    per_frame = 1 + 2 * 56 + 1
    np.testing.assert_array_equal(g["masked"][:], [per_frame] * 3 + [per_frame + 1, per_frame])
    # The pop-out double's slice 0 is frame / 1000: what compute saw.
    seen = g["popout"][:, 0] * 1000.0
    rule = PixelRule.for_dtype(np.uint16, mask=mask, saturation=60000)
    for t in range(5):
        bad = rule.invalid(frames[t])
        np.testing.assert_allclose(seen[t][~bad], frames[t][~bad], rtol=1e-6)
        np.testing.assert_allclose(seen[t], fill_invalid(frames[t], bad), rtol=1e-6)
        assert seen[t][bad].max() < 1000  # no NODATA / saturated count reached compute
    meta = read_segments(g)[0]["meta"]["dectris"]
    assert meta["masked_by_detector"] == 1 + 2 * 56 and meta["excluded_above"] == 60000
    assert (g["status"][:] == Status.REFINED).all()


def test_local_median_fills_gaps_from_their_edges():
    frame = np.arange(100, dtype=np.float32).reshape(10, 10)
    bad = np.zeros((10, 10), bool)
    bad[4:7, :] = True  # a 3-row gap
    filled = fill_invalid(frame, bad, radius=1)
    np.testing.assert_array_equal(filled[~bad], frame[~bad])
    assert filled[4, 5] == np.median([frame[3, 4], frame[3, 5], frame[3, 6]])
    assert np.isfinite(filled).all() and filled[5].min() > 0
    assert (fill_invalid(frame, np.ones((10, 10), bool)) == 0).all()


def test_side_stores_are_named_after_the_series(tmp_path):
    path = side_store_path(tmp_path / "run.zarr", None, "a/b c")
    assert path == tmp_path / "run.series-a_b_c.zarr"


def test_camera_and_live_processes_speak_dectris(tmp_path):
    frames = movie(6)
    write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    port = free_port()
    camera = subprocess.Popen(
        [sys.executable, "-m", "stream3d", "camera", str(tmp_path / "m.mrc"), "--protocol",
         "dectris", "--endpoint", f"tcp://127.0.0.1:{port}", "--fps", "0", "--channels", "2",
         "--compression", "lz4", "--drop", "4", "--corrupt", "not_cbor,bad_array",
         "--wait", "30"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(
        [sys.executable, "-m", "stream3d", "live", "--protocol", "dectris", "--connect",
         f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "run.zarr"), "--record-only",
         "--idle-timeout", "3", "--quiet"], env=ENV, capture_output=True, text=True, timeout=120)
    out, err = camera.communicate(timeout=60)
    assert camera.returncode == 0, err
    assert "sent 5 images of series [1] as DECTRIS stream v2 (lz4, 2 channels)" in out
    assert done.returncode == 0, done.stderr
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames[[0, 1, 2, 3, 5]])
    assert g.attrs["stream3d"]["counters"] == {"received": 5, "malformed": 2, "gaps": 1,
                                               "duplicates": 0, "skipped": 0, "failed": 0}


@pytest.mark.parametrize("args, message", [
    (["live", "--protocol", "ftp", "--connect", "1", "--out", "x.zarr"], "--protocol 'ftp'"),
    (["camera", "m.mrc", "--protocol", "dectris", "--channels", "4"], "--channels 4"),
    (["camera", "m.mrc", "--protocol", "dectris", "--compression", "zip"], "--compression"),
    (["camera", "m.mrc", "--protocol", "dectris", "--corrupt", "nonsense"], "--corrupt"),
])
def test_bad_dectris_options_are_one_line_and_exit_code_2(tmp_path, args, message):
    write_mrc_movie(tmp_path / "m.mrc", movie(1), pixel_size=1.0)
    done = subprocess.run([sys.executable, "-m", "stream3d", *args], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


CAPTURE = ROOT.parent / "shared" / "data" / "dectris-stream2" / "r500k_bm_bslz4_8bit" \
    / "000001.cbor"


def test_damaged_messages_are_counted_never_raised(tmp_path):
    """Bytes flipped anywhere in a real EIGER image message (or a made one when the capture
    is absent): the source hands the pipeline a message or a Malformed, never an exception."""
    from stream3d.stream.dectris import encode_start
    from stream3d.stream.dectris_source import DectrisSource
    from stream3d.stream.protocol import Malformed

    if CAPTURE.exists():
        base = CAPTURE.read_bytes()
    else:
        import datetime as dt

        from stream3d.stream.dectris import encode_image

        base = encode_image(1, "u", 0, {"threshold_1": movie(1, np.uint8)[0]}, start_time=0,
                            frame_time=0.01, series_date=dt.datetime.now(dt.timezone.utc))
    source = DectrisSource("tcp://127.0.0.1:1", CFG, out=tmp_path / "run.zarr")
    source.handle(encode_start(1, "01GRXWS1MWTNK0GJYNYKDWCNBY", channels=("threshold_1",),
                               shape=(514, 1030), number_of_images=2, frame_time=0.01,
                               saturation=200))
    rng = np.random.default_rng(5)
    outcomes = {"frame": 0, "malformed": 0}
    for trial in range(150):
        damaged = bytearray(base)
        if trial % 3 == 0:
            damaged = damaged[: rng.integers(1, len(damaged))]
        else:
            for _ in range(rng.integers(1, 6)):
                damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
        source.handle(bytes(damaged))
        while source._pending:
            item = source._pending.popleft()
            kind = "malformed" if isinstance(item, Malformed) else "frame"
            outcomes[kind] += 1
    assert outcomes["malformed"] > 50
    assert sum(outcomes.values()) >= 150


def test_a_recorded_dectris_run_keeps_its_mask_for_a_later_reconstruction(tmp_path):
    from stream3d.stream.commands import reconstruct
    from stream3d.stream.pixel_mask import unpack_mask

    frames = movie(3)
    mask = np.zeros(frames.shape[1:], np.uint32)
    mask[:, 3] = 8  # a hot column
    frames[1, 9, 9] = 65535
    out = tmp_path / "run.zarr"
    run_live(out, [(frames, StreamFormat(pixel_mask=mask), Faults())], record_only=True)
    g = open_run(out)
    meta = read_segments(g)[0]["meta"]["dectris"]
    np.testing.assert_array_equal(unpack_mask(meta["pixel_mask_packed"]), mask != 0)
    np.testing.assert_array_equal(g["masked"][:], [40, 41, 40])
    summary = reconstruct(out, out, CFG, show_status=False,
                          stages=Stages(popout=popout_double, refiner=RefinerDouble))
    assert summary.statuses["refined"] == 3
    g = open_run(out)
    rule = PixelRule.for_dtype(np.uint16, mask=mask, saturation=65534)
    for t in range(3):
        np.testing.assert_allclose(g["popout"][t, 0] * 1000.0,
                                   fill_invalid(frames[t], rule.invalid(frames[t])), rtol=1e-6)
    np.testing.assert_array_equal(g["frames"][:], frames)


def test_a_restarted_series_is_a_new_series_in_the_same_store(tmp_path):
    frames = movie(8)
    faults = Faults(restart_after=5, drop=frozenset({6}))
    result, (report,) = run_live(tmp_path / "run.zarr", [(frames, StreamFormat(2, "lz4"), faults)])
    assert report.series == [10, 11]
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames[[0, 1, 2, 3, 4, 5, 7]])
    np.testing.assert_array_equal(g["frame_id"][:], [0, 1, 2, 3, 4, 0, 2])
    series = read_segments(g)
    assert [s["first"] for s in series] == [0, 5]
    assert [s["meta"]["dectris"]["series_id"] for s in series] == [10, 11]
    assert g.attrs["stream3d"]["counters"]["gaps"] == 1
    assert g.attrs["stream3d"]["counters"]["received"] == 7


def test_a_series_whose_own_store_cannot_be_made_is_counted_and_the_run_goes_on(tmp_path):
    first, second = movie(3, np.uint16, seed=1), movie(2, np.uint32, seed=2)
    (tmp_path / "run.series-20.zarr").write_text("in the way")
    result, _ = run_live(tmp_path / "run.zarr", [(first, StreamFormat(), Faults()),
                                                 (second, StreamFormat(), Faults())])
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], first)
    assert g.attrs["stream3d"]["counters"]["malformed"] == 2
    assert result.summary.malformed_kinds == {"shape_changed": 2}
