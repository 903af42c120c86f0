"""Reopening a store after a kill or with another config: leftovers of killed creations and
writes are removed, and a resume with other physics is refused (RunStore._recover cuts the
table back to its committed prefix)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any


from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.store.schema import _PHYSICAL_SECTIONS
from stream3d.store_lock import StoreLock

def _check_same_physics(path: Path, stored: Mapping[str, Any], config: Config, *,
                        has_volumes: bool = False) -> None:
    now = config.to_dict()
    keys = [(section, key) for section in _PHYSICAL_SECTIONS for key in now[section]]
    if has_volumes:  # the volumes' shape and place follow the view
        keys += [("stream", "roi"), ("stream", "bin")]
    for section, key in keys:
        value = now[section][key]
        old = stored.get(section, {}).get(key, value)
        if old != value:  # to_dict and the stored JSON both hold arrays as lists
            raise UserError(
                f"--out {path} was recorded with {section}.{key}={old!r}, the config says "
                f"{value!r}: use the same {section}.{key} to resume, or a new --out")


def _remove_abandoned_creations(path: Path) -> None:
    """Hidden siblings left by a creation that was killed (their creator's lock is gone)."""
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        lock = StoreLock.try_acquire(tmp) if tmp.is_dir() else None
        if lock is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            lock.release()


def _remove_partial_files(path: Path) -> None:
    """Temporary files of atomic writes cut short by a kill (zarr names them *.partial)."""
    for p in path.rglob("*.partial"):
        p.unlink(missing_ok=True)
