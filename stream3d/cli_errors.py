"""Bad input as one line on stderr and exit code 2: the one place every command turns a
UserError, ValueError or OSError into what the user reads (docs/architecture.md, exit codes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from stream3d.errors import UserError, os_error_line


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad-input exceptions into one line on stderr and exit code 2."""
    try:
        yield
    except OSError as exc:  # no raw "[Errno N]" text: the path and what is wrong with it
        typer.echo(f"stream3d: error: {os_error_line(exc)}", err=True)
        raise typer.Exit(2) from None
    except (UserError, ValueError) as exc:
        typer.echo(f"stream3d: error: {exc}", err=True)
        raise typer.Exit(2) from None
