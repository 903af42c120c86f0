"""`stream3d view`: a page that follows a run store while it is written (issue 24).

The main test replays a small simulated movie with `reconstruct --view`, follows it through
/api/state while frames land, then loads the page in real headless Chromium (skipped when no
Chromium is installed; deploy/test.sh installs it) and keeps its screenshot in tests/artifacts/.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.cli import app
from stream3d.io.movies import write_mrc_movie
from stream3d.store import RawFrame, RunStore, Status
from stream3d.viewer import serve_in_thread
from stream3d.viewer.server import is_loopback
from stream3d.viewer.state import RunView
from stream_helpers import REAL_SETS, free_port, hrtem_movie

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
FRAMES = 8
KINDS = ("raw", "popout", "height", "thickness", "render")
SMALL = config_mod.load(None, ["sample.slices=4", "sample.slice_thickness=20"])
runner = CliRunner()


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def state_of(url: str) -> dict:
    return json.loads(get(url + "api/state"))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """A real replay of 8 simulated 64 x 64 frames with --view: the run store and the states
    that /api/state gave while it was written."""
    tmp = tmp_path_factory.mktemp("view")
    movie = write_mrc_movie(tmp / "m.mrc", hrtem_movie(FRAMES, seed=1), pixel_size=1.0)
    out = tmp / "run.zarr"
    port = free_port()
    sets = [a for s in REAL_SETS for a in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "stream3d", "reconstruct", str(movie), "--out",
                             str(out), "--quiet", "--view", "--view-port", str(port), *sets],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    states = []
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                states.append(state_of(url))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # the view is starting, or it stopped with the run
            time.sleep(0.1)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    return out, states, stdout


def test_view_follows_the_store_while_a_replay_writes_it(replay):
    out, states, stdout = replay
    assert re.search(r"view: http://127\.0\.0\.1:\d+/", stdout)
    assert f"{FRAMES} refined" in stdout
    assert len(states) >= 5, "the view answered too few polls during the run"
    stored = [s["frames"] for s in states]
    refined = [s["refined"] for s in states]
    assert stored == sorted(stored) and refined == sorted(refined)  # counts only grow
    assert all(r <= f for f, r in zip(stored, refined))
    assert any(0 < f for f in stored[:-1]) and len(set(refined)) >= 2, (stored, refined)
    assert any(r < FRAMES for r in refined), "the run was over before the view saw it"
    for s in states:
        assert s["latest"] == (-1 if s["refined"] == 0 else s["latest"])
        assert s["lag"] == s["frames"] - s["refined"] - s["skipped"] - s["failed"]
    # The view stopped with the run; a new one on the finished store shows all of it.
    server = serve_in_thread(out)
    try:
        final = state_of(server.url)
        assert (final["frames"], final["refined"], final["latest"]) == (FRAMES, FRAMES, FRAMES - 1)
        assert final["writing"] is False and final["lag"] == 0
        assert len(final["loss"]["t"]) == FRAMES and all(v > 0 for v in final["loss"]["v"])
        assert final["scales"]["height"]["unit"] == "nm"
        assert final["scales"]["height"]["max"] == pytest.approx(8 * 40 / 10)  # cell depth, nm
        for kind in KINDS:
            image = pixels(get(f"{server.url}frame/{FRAMES - 1}/{kind}.png"))
            assert image.std() > 0, f"{kind}.png is blank"
        info = json.loads(get(f"{server.url}frame/{FRAMES - 1}/info.json"))
        assert info["status"] == "refined" and info["frame_id"] == FRAMES - 1
        assert info["material_nm3"] > 0 and info["objects"] >= 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_page_in_headless_chromium_shows_the_newest_frame(replay):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium installed (deploy/test.sh installs it when run as root)")
    out, _, _ = replay
    server = serve_in_thread(out)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--virtual-time-budget=5000"]
    try:
        dom = subprocess.run([*args, "--dump-dom", server.url], capture_output=True, text=True,
                             timeout=60).stdout
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "view.png"
        shot.unlink(missing_ok=True)
        subprocess.run([*args, "--window-size=1280,900", f"--screenshot={shot}", server.url],
                       capture_output=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-shown="{FRAMES - 1}"' in body and f'data-latest="{FRAMES - 1}"' in body
    assert re.search(rf'id="shown-frame">{FRAMES - 1} \(refined\)<', dom)
    assert re.search(rf'id="refined">{FRAMES}<', dom)
    loaded = re.findall(r'<img id="img-(\w+)"[^>]*data-loaded="([^"]*)"', dom)
    loaded += [(k, v) for v, k in re.findall(r'<img[^>]*data-loaded="([^"]*)"[^>]*id="img-(\w+)"',
                                             dom)]
    assert sorted(k for k, v in loaded if v == "1") == sorted(KINDS), loaded
    page = pixels(shot.read_bytes())
    assert page.shape[:2] == (900, 1280) and page.std() > 0


def _store(path: Path, frames: int, refined: int) -> RunStore:
    """A store written through the writer's own API: ``frames`` raw 16 x 16 frames, the first
    ``refined`` with an 8 x 8 x 2-slice block of material; left open (the writer holds it)."""
    store = RunStore.open(path, SMALL)
    store.append([RawFrame("m", i, 0.1 * i, np.full((16, 16), 100 + i, np.uint16))
                  for i in range(frames)])
    vol = np.zeros((4, 16, 16), np.float32)
    vol[1:3, 4:12, 4:12] = SMALL.sample.potential
    for t in range(refined):
        store.write_result(t, status=Status.REFINED, volume=vol, popout=vol, loss=0.5 + t)
    return store


def _files(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in path.rglob("*")}


def test_the_view_reads_without_the_lock_and_writes_nothing(tmp_path):
    path = tmp_path / "run.zarr"
    store = _store(path, 3, 1)
    before = _files(path)
    view = RunView(path)  # while the writer holds the store
    state = view.state()
    assert (state["frames"], state["refined"], state["latest"], state["lag"]) == (3, 1, 0, 2)
    assert state["loss"] == {"t": [0], "v": [0.5]}
    assert view.picture(0, "height")[:8] == b"\x89PNG\r\n\x1a\n"
    assert _files(path) == before  # nothing written, no lock file made
    # The writer goes on; the view follows: a new frame, a frame refined later.
    store.append([RawFrame("m", 3, 0.3, np.full((16, 16), 103, np.uint16))])
    store.write_result(2, status=Status.REFINED, volume=np.zeros((4, 16, 16), np.float32),
                       loss=2.5)
    store.mark([1], Status.FAILED)
    view.refresh()
    state = view.state()
    assert (state["frames"], state["refined"], state["latest"]) == (4, 2, 2)
    assert (state["failed"], state["lag"]) == (1, 1)
    assert state["loss"]["v"] == [0.5, 2.5]
    assert state["history"][-1][1:] == [4, 2]  # (s, stored, refined) from the chunk files' times
    assert state["received_fps"] > 0 and state["fps"] > 0  # all of it within the last 10 s
    store.close()
    RunStore.open(path, SMALL).close()  # the view holds no lock: the store reopens for writing


def test_an_uncommitted_append_is_not_shown(tmp_path):
    path = tmp_path / "run.zarr"
    store = _store(path, 2, 0)
    for a in store._arrays.values():  # a writer killed after resizing, before frame_id
        a.resize((3, *a.shape[1:]))
    view = RunView(path)
    assert view.state()["frames"] == 2
    with pytest.raises(IndexError):
        view.picture(2, "raw")
    store.release()


def test_an_empty_store_and_unknown_frames(tmp_path):
    path = tmp_path / "run.zarr"
    RunStore.open(path, SMALL).close()  # created, no frame yet
    server = serve_in_thread(path)
    try:
        state = state_of(server.url)
        assert (state["frames"], state["refined"], state["latest"]) == (0, 0, -1)
        with pytest.raises(urllib.error.HTTPError) as err:
            get(server.url + "frame/0/raw.png")
        assert err.value.code == 404
        page = get(server.url).decode()
        assert "/static/view.js" in page
        assert not re.search(r'(src|href)="(https?:)?//', page)  # offline: nothing from elsewhere
    finally:
        server.shutdown()
        server.server_close()


def test_view_command_errors_are_one_line_with_exit_code_2(tmp_path):
    result = runner.invoke(app, ["view", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 2 and "missing.zarr is not a Zarr run store" in result.output
    assert len(result.output.strip().splitlines()) == 1
    path = tmp_path / "run.zarr"
    RunStore.open(path, SMALL).close()
    busy = serve_in_thread(path)  # a port already taken
    try:
        port = busy.server_address[1]
        result = runner.invoke(app, ["view", str(path), "--host", "0.0.0.0", "--port", str(port)])
    finally:
        busy.shutdown()
        busy.server_close()
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 2, result.output
    assert "not loopback" in lines[0] and lines[1].startswith("stream3d: error:")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
