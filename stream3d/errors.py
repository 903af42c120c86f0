"""The one exception type for bad user input; the CLI prints it as one line, exit code 2."""

from __future__ import annotations

import errno
import os
import re


class UserError(ValueError):
    """Input the user can fix (a bad file, key, value or path); the message says what."""


_REASONS = {
    errno.ENOENT: "does not exist, and cannot be created there",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EACCES: "permission denied: choose a place you can write to",
    errno.EPERM: "not permitted here: choose a place you can write to",
    errno.EROFS: "is on a read-only file system: choose another place",
    errno.ENOSPC: "no space left on that disk",
    errno.EISDIR: "is a folder, where a file was expected",
    errno.ENAMETOOLONG: "the name is too long",
}


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error, without the raw "[Errno N] ..." text: the path the
    user gave (not a hidden temporary sibling) and what is wrong with it in words."""
    name = exc.filename if exc.filename is not None else ""
    name = re.sub(r"(^|/)\.([^/]+)\.creating-\d+$", r"\1\2", os.fspath(name))  # RunStore temp
    if exc.errno == errno.EEXIST:
        reason = "is a file, not a folder" if os.path.isfile(name) else "exists already"
    else:
        reason = _REASONS.get(exc.errno, (exc.strerror or str(exc)).lower())
    return f"{name}: {reason}" if name else reason


def reason(exc: BaseException) -> str:
    """The words of ``exc`` for a one-line message: :func:`os_error_line` for file-system
    errors (never "[Errno N] ..."), the message otherwise."""
    return os_error_line(exc) if isinstance(exc, OSError) else str(exc)


class ConfigError(UserError):
    """A bad configuration file, key or value; the message is one line naming the key."""
