"""The camera's MTF from the config (``[detector] mtf``, ``mtf_half``, ``mtf_file``).

A measured curve is a two-column text file (``#`` comments, whitespace or commas): spatial
frequency in units of Nyquist (0 .. 1, 0.5 cycles per pixel = 1) and the MTF there, as camera
makers and `stream3d calibrate --mtf` give it. Bad files are one-line errors naming the key.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stream3d.errors import ConfigError, reason
from stream3d.physics.detector import MTF

if TYPE_CHECKING:  # config imports this module to check mtf_file: no import back at run time
    from stream3d.config import Config


def mtf_from_config(config: Config) -> MTF:
    """The :class:`~stream3d.physics.detector.MTF` that ``config.detector`` names."""
    d = config.detector
    if d.mtf == "file":
        return MTF("table", d.mtf_half, read_mtf_file(d.mtf_file))
    return MTF(d.mtf, d.mtf_half)


@lru_cache(maxsize=8)
def read_mtf_file(path: str) -> tuple[tuple[float, float], ...]:
    """((frequency / Nyquist, MTF), ...) from a two-column text file; ConfigError if bad."""
    key = "detector.mtf_file"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{key} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key} {path} cannot be read: {reason(exc)}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].replace(",", " ").split()
        if not line:
            continue
        try:
            f, m = (float(v) for v in line[:2])
            if len(line) < 2:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{key} {path} line {number}: expected two numbers "
                              "(frequency / Nyquist, MTF)") from None
        rows.append((f, m))
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    if len(table) < 2:
        raise ConfigError(f"{key} {path} needs at least two rows (frequency / Nyquist, MTF)")
    if not np.isfinite(table).all() or (np.diff(table[:, 0]) <= 0).any() or table[0, 0] < 0:
        raise ConfigError(f"{key} {path}: frequencies must be finite, >= 0 and increasing")
    if (table[:, 1] < 0).any() or (table[:, 1] > 1.5).any():
        raise ConfigError(f"{key} {path}: MTF values must lie between 0 and 1.5")
    return tuple((float(f), float(m)) for f, m in table)


def write_mtf_file(path: str | Path, frequency: np.ndarray, mtf: np.ndarray,
                   comment: str = "") -> Path:
    """Write a curve :func:`read_mtf_file` reads back (frequency in units of Nyquist)."""
    path = Path(path)
    lines = [f"# {comment}"] if comment else []
    lines.append("# frequency/Nyquist  MTF")
    lines += [f"{f:.4f} {m:.4f}" for f, m in zip(frequency, mtf) if np.isfinite(m)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
