"""The viewer's HTTP server (standard library ``http.server``): routes, nothing else.

Routes::

    /                         the page (static HTML + JS shipped in the package)
    /static/<file>            its script and style sheet
    /api/state                the run's state as JSON (see RunView.state)
    /frame/<t>/info.json      frame t's facts
    /frame/<t>/<kind>.png     raw, popout, height, thickness, render (?turn=k quarter turns)

Read-only GETs only. Loopback by default; another host is allowed with a one-line warning.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from stream3d.viewer.state import KINDS, RunView

STATIC = {"index.html": "text/html; charset=utf-8", "view.js": "text/javascript; charset=utf-8",
          "view.css": "text/css; charset=utf-8"}
_FRAME = re.compile(r"^/frame/(\d{1,12})/([a-z]+)\.(png|json)$")
REFRESH_S = 0.25  # /api/state re-reads the store at most this often


def static_file(name: str) -> bytes:
    return resources.files("stream3d.viewer").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    """GET-only handler; the :class:`RunView` is the server's ``view`` attribute."""

    server_version = "stream3d-view"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        pass  # quiet: the page polls every second

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        view: RunView = self.server.view  # type: ignore[attr-defined]
        try:
            if url.path in ("/", "/index.html"):
                return self._send(static_file("index.html"), STATIC["index.html"])
            if url.path.startswith("/static/") and url.path[8:] in STATIC:
                name = url.path[8:]
                return self._send(static_file(name), STATIC[name])
            if url.path == "/api/state":
                view.refresh_if_older(REFRESH_S)
                return self._json(view.state())
            match = _FRAME.match(url.path)
            if match:
                t, kind, ext = int(match[1]), match[2], match[3]
                if ext == "json" and kind == "info":
                    return self._json(view.info(t))
                if ext == "png" and kind in KINDS:
                    turn = _int(parse_qs(url.query).get("turn", ["0"])[0])
                    return self._send(view.picture(t, kind, turn), "image/png", cache=True)
            self._error(HTTPStatus.NOT_FOUND, "no such page")
        except IndexError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - one bad read must not stop the page
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _json(self, data) -> None:
        self._send(json.dumps(data, allow_nan=False).encode(), "application/json")

    def _send(self, body: bytes, kind: str, *, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=5" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: HTTPStatus, text: str) -> None:
        body = json.dumps({"error": text}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ViewServer(ThreadingHTTPServer):
    """A threading HTTP server bound to ``host``:``port`` (0 = a free port) serving ``view``."""

    daemon_threads = True

    def __init__(self, view: RunView, host: str = "127.0.0.1", port: int = 0) -> None:
        self.view = view
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"


def serve_in_thread(path: str | Path, host: str = "127.0.0.1", port: int = 0) -> ViewServer:
    """Start a viewer of ``path`` in a daemon thread; stop it with ``server.shutdown()``."""
    server = ViewServer(RunView(path), host, port)
    threading.Thread(target=server.serve_forever, name="stream3d-view", daemon=True).start()
    return server


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 0, *,
          announce=print) -> None:
    """Serve the viewer of ``path`` until interrupted (Ctrl-C)."""
    if not is_loopback(host):
        print(f"stream3d: warning: the view is served on {host}, not loopback only: anyone who "
              "can reach this port sees the run", file=sys.stderr)
    server = ViewServer(RunView(path), host, port)
    announce(f"view of {path} at {server.url} (Ctrl-C stops it)")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
