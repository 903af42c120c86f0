"""The README's shell commands work as typed after the set-up: the environment is activated
before the first `stream3d` command, and every `stream3d ...` line names a real command with
options that command has (so a renamed option cannot leave the README behind)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer.main

from stream3d.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [ln.strip() for block in blocks for ln in block.splitlines() if ln.strip()]


def stream3d_lines() -> list[list[str]]:
    lines = []
    for line in shell_lines():
        words = shlex.split(line, comments=True)
        if words and words[0] in ("stream3d", ".venv/bin/stream3d"):
            lines.append([w for w in words if w != "&"])
    return lines


def test_the_environment_is_activated_before_the_first_stream3d_command():
    first = README.index("\nstream3d ")
    assert "source .venv/bin/activate" in README[:first]
    opening = README.split("## ", 1)[0]
    for source in ("ZeroMQ", "DECTRIS", "SIMPLON stream v2", "MRC", "DM3/DM4", "Velox EMD",
                   "SER", "TIFF"):
        assert source in opening, source


def test_every_readme_stream3d_command_and_option_exists():
    group = typer.main.get_command(app)
    lines = stream3d_lines()
    assert len(lines) >= 20
    for words in lines:
        if words[1].startswith("-"):  # stream3d --help / --version
            assert words[1] in ("--help", "--version"), words
            continue
        command = group.commands.get(words[1])
        assert command is not None, f"README: no command {words[1]!r} in {' '.join(words)}"
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        options.add("--help")
        for word in words[2:]:
            if word.startswith("-") and not re.fullmatch(r"-?\d.*", word):
                assert word.split("=")[0] in options, f"README: {word} in {' '.join(words)}"


def test_the_own_movie_section_names_every_key_a_user_must_set():
    section = README.split("## Your own movie", 1)[1].split("\n## ", 1)[0]
    for key in ("microscope.energy", "microscope.defocus", "microscope.cs", "sample.pixel_size",
                "detector.dose", "sample.slices", "sample.slice_thickness", "stream3d info",
                "stream3d calibrate"):
        assert key in section, key


def test_small_items_of_issue_22():
    from stream3d.analysis.truth import FrameErrors, summary_lines

    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "keys/" in ignored and "*.key_secret" in ignored  # CURVE secret keys stay out of git
    demo = (ROOT / "deploy" / "demo.sh").read_text()
    (hint,) = [ln for ln in demo.splitlines() if "stream3d camera" in ln]
    camera = hint.split("&")[0]
    assert "--config $out/config.toml" in camera  # its start message carries the run's optics
    header, row, mean = summary_lines([FrameErrors(0, 0, "refined", 12.5, 0.8, 7.25, 0.9)])
    assert "pop-out height error (Å)" in header and "refined height error (Å)" in header
    assert "depth" not in header and mean.startswith("mean over 1 frames: mean column height "
                                                     "error pop-out 12.5 Å")
    group = typer.main.get_command(app)
    (line,) = [p for p in group.commands["analyze"].params if p.name == "line"]
    assert "tip that travelled furthest sideways" in line.help  # as the README says
    assert "tip that travelled furthest sideways" in README
