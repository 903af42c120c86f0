"""``reconstruct ... --view`` / ``live ... --view``: the viewer in its own process beside a run.

A separate process, so that rendering pictures for the page never holds the run's
interpreter lock. It waits for the run to create the store, serves it while the run lasts and
is stopped when the run ends (``stream3d view RUN.zarr`` keeps looking afterwards).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def view_beside(out: Path, *, port: int = 0, host: str = "127.0.0.1",
                announce=print) -> Iterator[str]:
    """Run ``stream3d view OUT --wait`` in a child process for the duration of the block;
    yields its URL (announced once)."""
    port = port or free_port(host)
    url = f"http://{host}:{port}/"
    proc = subprocess.Popen([sys.executable, "-m", "stream3d", "view", str(out), "--host", host,
                             "--port", str(port), "--wait", "--quiet"],
                            stdin=subprocess.DEVNULL)
    announce(f"view: {url} (stops with the run; `stream3d view {out}` opens it again)")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
