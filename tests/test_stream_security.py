"""Network exposure and authentication: nothing listens beyond loopback unless asked, CURVE
keeps unauthenticated senders out, binding beyond loopback without CURVE is warned about."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
import psutil
import pytest
import zmq
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.cli import app
from stream3d.errors import UserError
from stream3d.store import open_run
from stream3d.stream import RunOptions, ZmqSource, run_pipeline
from stream3d.stream.camera import Camera, play
from stream3d.stream.cluster import dask_client
from stream3d.stream.curve import (
    client_from_config, is_loopback, make_keys, secure_client, server_from_config,
)
from stream3d.stream.protocol import encode_end, encode_frame, encode_start
from stream_helpers import free_port

runner = CliRunner()
LOOPBACK = {"127.0.0.1", "::1"}


def _listening() -> set[tuple[str, int]]:
    conns = psutil.Process().net_connections(kind="inet")
    return {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}


def test_nothing_listens_beyond_loopback_during_a_run():
    before = _listening()
    source = ZmqSource(str(free_port()), pattern="pull", bind=True)  # a bare port: loopback
    with dask_client(None, threads=1):
        source.open()
        try:
            during = _listening() - before
        finally:
            source.close()
    assert during, "the run should listen somewhere (its ZeroMQ port, dask's health routes)"
    assert {ip for ip, _ in during} <= LOOPBACK, during


def test_loopback_addresses_are_told_apart_from_exposed_ones():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:5555")
    assert is_loopback("tcp://localhost:5555") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555")
    assert not is_loopback("tcp://eth0:5555") and not is_loopback("tcp://10.0.0.2:5555")


def test_binding_beyond_loopback_without_curve_is_warned_about(caplog, tmp_path):
    source = ZmqSource(f"tcp://0.0.0.0:{free_port()}", pattern="pull", bind=True)
    with caplog.at_level(logging.WARNING, logger="stream3d.stream"):
        source.open()
        source.close()
    assert any("without authentication" in r.getMessage() for r in caplog.records)
    caplog.clear()
    server, _ = make_keys(tmp_path, "receiver")
    cfg = config_mod.load(None, [f"stream.curve_server_key={tmp_path}/receiver.key_secret"])
    secured = ZmqSource(f"tcp://0.0.0.0:{free_port()}", pattern="pull", bind=True,
                        curve=server_from_config(cfg.stream))
    with caplog.at_level(logging.WARNING, logger="stream3d.stream"):
        secured.open()
        secured.close()
    assert not any("without authentication" in r.getMessage() for r in caplog.records)


def test_only_an_authenticated_sender_is_heard(tmp_path):
    """Receiver with CURVE and one allowed sender key: a plain sender and a sender with an
    unknown key send a whole series first (start, frames, end); none of it arrives. The
    allowed camera's series is stored exactly."""
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    make_keys(keys, "receiver")
    make_keys(keys, "camera")
    make_keys(keys, "intruder")
    clients.mkdir()
    (clients / "camera.key").write_bytes((keys / "camera.key").read_bytes())
    receiver_cfg = config_mod.load(None, [
        "sample.slices=2", f"stream.curve_server_key={keys}/receiver.key_secret",
        f"stream.curve_clients={clients}"])
    address = f"tcp://127.0.0.1:{free_port()}"
    frames = np.arange(5 * 12, dtype=np.uint16).reshape(5, 3, 4)

    def intruders():
        deadline = time.monotonic() + 30
        port = int(address.rsplit(":", 1)[1])
        while ("127.0.0.1", port) not in _listening() and time.monotonic() < deadline:
            time.sleep(0.05)  # the receiver is bound: without CURVE, everything would arrive
        ctx = zmq.Context()
        for key in (None, "intruder"):
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            if key is not None:
                cfg = config_mod.load(None, [f"stream.curve_server_key={keys}/receiver.key",
                                             f"stream.curve_client_key={keys}/{key}.key_secret"])
                secure_client(sock, client_from_config(cfg.stream))
            sock.connect(address)
            for parts in ([encode_start(66)] + [encode_frame(66, n, 0.0, frames[0] + 1)
                                                for n in range(3)] + [encode_end(66, 3)]):
                try:
                    sock.send_multipart(parts, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
            time.sleep(1.0)  # time for a handshake that must fail
            sock.close()
        ctx.term()

    def camera():
        intruder_thread.join()
        cfg = config_mod.load(None, [f"stream.curve_server_key={keys}/receiver.key",
                                     f"stream.curve_client_key={keys}/camera.key_secret"])
        cam = Camera(address, pattern="push", bind=False, wait=20,
                     curve=client_from_config(cfg.stream))
        try:
            play(frames, cam, series=1)
        finally:
            cam.close()

    intruder_thread = threading.Thread(target=intruders)
    camera_thread = threading.Thread(target=camera)
    intruder_thread.start()
    camera_thread.start()
    summary = run_pipeline(ZmqSource(address, pattern="pull", bind=True,
                                     curve=server_from_config(receiver_cfg.stream)),
                           tmp_path / "r.zarr", receiver_cfg,
                           options=RunOptions(reconstruct=False, idle_timeout=20))
    camera_thread.join(30)
    g = open_run(tmp_path / "r.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames)
    assert g["frame_id"][:].tolist() == [0, 1, 2, 3, 4]
    assert g.attrs["stream3d"]["counters"] == {"received": 5, "malformed": 0, "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
    assert summary.reason == "end of series 1"


def test_keys_command_and_bad_key_settings_are_one_line_errors(tmp_path):
    result = runner.invoke(app, ["keys", "--out", str(tmp_path), "--name", "cam"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cam.key").exists() and (tmp_path / "cam.key_secret").stat().st_mode & 0o77 == 0
    again = runner.invoke(app, ["keys", "--out", str(tmp_path), "--name", "cam"])
    assert again.exit_code == 2 and "exists already" in again.output
    cfg = config_mod.load(None, [f"stream.curve_server_key={tmp_path}/cam.key"])
    with pytest.raises(UserError, match="holds no secret key"):
        server_from_config(cfg.stream)  # the receiver needs its secret file
    with pytest.raises(UserError, match="needs both"):
        client_from_config(cfg.stream)
    cfg = config_mod.load(None, [f"stream.curve_server_key={tmp_path}/none.key"])
    with pytest.raises(UserError, match="not a readable ZeroMQ key file"):
        server_from_config(cfg.stream)


def test_a_json_header_is_bounded_before_it_is_parsed():
    from stream3d.stream.protocol import MAX_HEADER_BYTES, Malformed, decode

    huge = json.dumps({"htype": "end", "series": 1, "frames": 1, "pad": "x" * MAX_HEADER_BYTES})
    with pytest.raises(Malformed, match="more than a header may have"):
        decode([huge.encode()])
