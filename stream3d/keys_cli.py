"""``stream3d keys``: make a CURVE key pair for an authenticated detector link."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def keys(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for NAME.key (public) and "
                                      "NAME.key_secret (keep private).")] = Path("keys"),
    name: Annotated[str, typer.Option(help="Key name, e.g. receiver or camera.")] = "receiver",
) -> None:
    """Make a CURVE key pair (ZeroMQ certificates) for an authenticated, encrypted wire.

    Make one pair for the receiver and one per sender. Receiver (`live`):
    --set stream.curve_server_key=keys/receiver.key_secret and, to admit only known senders,
    --set stream.curve_clients=FOLDER holding their NAME.key files. Sender (`camera`):
    --set stream.curve_server_key=keys/receiver.key --set stream.curve_client_key=keys/camera.key_secret.
    A sender without a good key is never heard: its frames, starts and ends are ignored.
    """
    from stream3d.cli_errors import user_errors
    from stream3d.stream.curve import make_keys

    with user_errors():
        public, secret = make_keys(out, name)
    typer.echo(f"wrote {public} (public: give it to the other side)")
    typer.echo(f"wrote {secret} (secret: keep it on this machine)")
