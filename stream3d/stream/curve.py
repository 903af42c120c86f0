"""Authenticated, encrypted ZeroMQ links (CURVE), optional, for the detector wire.

The receiver (``live``) is the CURVE server: it holds a secret key and accepts only senders
whose public key is in a folder of allowed keys (or, with no folder, any sender that knows
the receiver's public key). A sender (``camera``, a detector bridge) holds its own key pair
and the receiver's public key. A peer that fails the handshake never gets a message through:
it cannot end a run, start a series or touch a counter. Keys are ZeroMQ certificate files
as ``stream3d keys`` (zmq.auth.create_certificates) writes them: NAME.key (public) and
NAME.key_secret (public and secret).

Config ([stream]): ``curve_server_key`` (receiver: its NAME.key_secret; sender: the
receiver's NAME.key), ``curve_client_key`` (sender: its NAME.key_secret), ``curve_clients``
(receiver: folder of allowed senders' NAME.key files; "" = any sender with a key pair).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream3d.errors import UserError, reason

log = logging.getLogger("stream3d.stream")


@dataclass(frozen=True)
class CurveServer:
    """The receiver's side: its key pair and the allowed senders' keys folder (None = any)."""

    public: bytes
    secret: bytes
    clients: Path | None = None


@dataclass(frozen=True)
class CurveClient:
    """A sender's side: the receiver's public key and the sender's own key pair."""

    server_public: bytes
    public: bytes
    secret: bytes


def make_keys(folder: str | Path, name: str) -> tuple[Path, Path]:
    """A new key pair: (folder/NAME.key, folder/NAME.key_secret); the secret file is 0600."""
    import zmq.auth

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"--name {name!r} may hold only letters, digits, '_', '-' and '.'")
    folder = Path(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise UserError(f"{p} exists already: choose another --name or --out")
    folder.mkdir(parents=True, exist_ok=True)
    made_public, made_secret = zmq.auth.create_certificates(folder, name)
    Path(made_secret).chmod(0o600)
    return Path(made_public), Path(made_secret)


def _load(path: str, key: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, private = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{key} = {path!r} is not a readable ZeroMQ key file: {reason(exc)}") from None
    if secret and not private:
        raise UserError(f"{key} = {path!r} holds no secret key (give the NAME.key_secret file)")
    return public, private


def server_from_config(stream: Any) -> CurveServer | None:
    """The receiver's CURVE settings from the [stream] section (None: CURVE not asked for)."""
    if not stream.curve_server_key:
        return None
    public, secret = _load(stream.curve_server_key, "stream.curve_server_key", secret=True)
    clients = None
    if stream.curve_clients:
        clients = Path(stream.curve_clients)
        if not clients.is_dir() or not any(clients.glob("*.key")):
            raise UserError(f"stream.curve_clients = {stream.curve_clients!r} must be a folder "
                            "holding the allowed senders' NAME.key files")
    return CurveServer(public, secret, clients)


def client_from_config(stream: Any) -> CurveClient | None:
    """A sender's CURVE settings from the [stream] section (None: CURVE not asked for)."""
    if not stream.curve_server_key and not stream.curve_client_key:
        return None
    if not (stream.curve_server_key and stream.curve_client_key):
        raise UserError("a CURVE sender needs both stream.curve_server_key (the receiver's "
                        "NAME.key) and stream.curve_client_key (its own NAME.key_secret)")
    server_public, _ = _load(stream.curve_server_key, "stream.curve_server_key", secret=False)
    public, secret = _load(stream.curve_client_key, "stream.curve_client_key", secret=True)
    return CurveClient(server_public, public, secret)


class ServerGuard:
    """The ZAP authenticator of a receiving context: started with the socket, stopped with it."""

    def __init__(self, ctx: Any, sock: Any, curve: CurveServer) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("stream3d.stream.zap"))
        self._auth.start()
        import zmq.auth

        location = str(curve.clients) if curve.clients else zmq.auth.CURVE_ALLOW_ANY
        self._auth.configure_curve(domain="*", location=location)
        sock.curve_secretkey = curve.secret
        sock.curve_publickey = curve.public
        sock.curve_server = True

    def stop(self) -> None:
        self._auth.stop()


def secure_client(sock: Any, curve: CurveClient) -> None:
    """Make ``sock`` a CURVE client of the receiver (before it connects or binds)."""
    sock.curve_secretkey = curve.secret
    sock.curve_publickey = curve.public
    sock.curve_serverkey = curve.server_public


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this machine (ipc/inproc, or a loopback tcp host)."""
    if not address.startswith("tcp://"):
        return True
    host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a host name: reachable from elsewhere


def warn_if_exposed(address: str, *, bind: bool, secured: bool, who: str) -> None:
    """A warning when a socket listens beyond loopback without CURVE."""
    if bind and not secured and not is_loopback(address):
        log.warning("%s listens on %s without authentication: any peer that reaches it can "
                    "send frames, start or end series (set stream.curve_server_key, see "
                    "`stream3d keys`)", who, address)
