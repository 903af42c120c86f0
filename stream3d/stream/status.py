"""What the microscopist sees: a live status line while a run goes on, a one-screen summary after."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator

from stream3d.stream.pipeline import Snapshot, Summary


_PLAIN_EVERY_S = 5.0  # s between progress lines when stderr is not a terminal (logs, CI)


def status_parts(s: Snapshot, total: int | None = None) -> list[tuple[str, str, str]]:
    """The status line as (long label, short label, value) parts, in order."""
    parts = [("received", "rcv", str(s.received)), ("malformed", "bad", str(s.malformed)),
             ("gaps", "gaps", str(s.gaps))]
    if s.reconstructing:
        done = f"{s.reconstructed}/{total}" if total else str(s.reconstructed)
        parts += [("reconstructed", "rec", done), ("skipped", "skip", str(s.skipped)),
                  ("failed", "fail", str(s.failed)), ("lag", "lag", str(s.lag)),
                  ("frames/s", "f/s", f"{s.recon_fps:.2f}")]
        if s.shift is not None:
            parts.append(("drift", "drift", f"{s.shift[0]:+.1f},{s.shift[1]:+.1f} Å"))
        if s.defocus is not None:
            parts.append(("defocus", "df", f"{s.defocus:.0f} Å"))
    else:
        parts += [("recording raw frames only, frames/s", "raw f/s", f"{s.ingest_fps:.0f}")]
    if s.live and s.idle_s > 5:
        parts.append(("nothing received for", "idle", f"{s.idle_s:.0f} s"))
    return parts


def status_text(s: Snapshot, total: int | None = None, width: int | None = None) -> str:
    """One line of whole words: long labels when they fit in ``width`` columns, else short
    ones, else as many whole parts as fit."""
    parts = status_parts(s, total)
    for long in (True, False):
        text = "  ".join(f"{lab if long else short} {v}" for lab, short, v in parts)
        if width is None or len(text) <= width:
            return text
    text = ""
    for _, short, v in parts:  # a very narrow terminal: whole parts only, never half a word
        nxt = f"{text}  {short} {v}" if text else f"{short} {v}"
        if len(nxt) > width:
            break
        text = nxt
    return text


class _StatusLine:
    """A rich renderable re-drawn a few times a second from the pipeline's snapshot."""

    def __init__(self, snapshot: Callable[[], Snapshot], total: int | None) -> None:
        self.snapshot, self.total = snapshot, total

    def __rich_console__(self, console, options):
        from rich.progress_bar import ProgressBar
        from rich.segment import Segment
        from rich.text import Text

        s = self.snapshot()
        width = options.max_width
        line = Text(status_text(s, self.total, width), no_wrap=True, overflow="crop")
        if s.failed or s.malformed or s.gaps:
            line.stylize("yellow")
        if self.total:
            done = min(self.total, s.reconstructed + s.skipped + s.failed)
            yield ProgressBar(total=self.total, completed=done, width=min(60, width))
            yield Segment.line()  # the bar does not end its line
        yield line


@contextlib.contextmanager
def live_status(snapshot: Callable[[], Snapshot], *, total: int | None = None,
                every: float = _PLAIN_EVERY_S) -> Iterator[None]:
    """Show the status line on stderr (with a progress bar when the frame ``total`` is known).
    Without a terminal (logs, CI), a plain progress line every ``every`` seconds instead."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    if not console.is_terminal:
        done = threading.Event()

        def report() -> None:
            while not done.wait(every):
                sys.stderr.write(f"stream3d: {status_text(snapshot(), total)}\n")
                sys.stderr.flush()

        thread = threading.Thread(target=report, name="stream3d-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
        return
    with Live(_StatusLine(snapshot, total), console=console, refresh_per_second=4,
              transient=False):
        yield


def render_summary(summary: Summary) -> str:
    """A one-screen plain-text summary of a run."""
    c, st = summary.counters, summary.statuses
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.malformed_kinds.items()))
    secs = summary.seconds_per_frame
    per = (sum(secs) / len(secs)) if secs else 0.0
    dims = f", volume (t, z, y, x) = {summary.shape}" if summary.shape else ""
    lines = [
        f"run store     {summary.path}  ({summary.stored} frames{dims})",
        f"stopped       {summary.reason} after {summary.elapsed_s:.1f} s",
        f"frames        {st['refined']} refined, {st['skipped']} skipped, {st['failed']} failed, "
        f"{st['pending']} pending",
        f"stream        received {c['received']}, malformed {c['malformed']}"
        + (f" ({kinds})" if kinds else "")
        + f", gaps {c['gaps']}, duplicates {c['duplicates']}",
        f"this session  {summary.session_received} received, "
        f"{summary.session_reconstructed} reconstructed"
        + (f", {per:.2f} s per frame" if secs else ""),
    ]
    if summary.stalls:
        lines.append(f"backpressure  ingest waited for the store {summary.stalls} times")
    todo = st["pending"] + st["skipped"]
    if todo:
        lines.append(f"next          {todo} frame(s) not reconstructed: `stream3d reconstruct "
                     f"{summary.path} --out {summary.path}` reconstructs them in place")
    if st["failed"]:
        first = f" (first: {summary.first_failure})" if summary.first_failure else ""
        lines.append(f"failed        {st['failed']} frame(s) failed{first}. Run unchanged "
                     "they fail again: fix the movie or the config (--set section.key=value), "
                     f"then `stream3d reconstruct {summary.path} --out {summary.path}` "
                     "retries them in place")
    return "\n".join(lines)


#: Exit codes of ``reconstruct`` and ``live`` (docs/architecture.md); 2 (bad input, refused start) is
#: the CLI's one-line error.
EXIT_DONE, EXIT_FAILED_FRAMES, EXIT_INTERRUPTED = 0, 1, 130


def exit_code(summary: Summary) -> int:
    """130 when interrupted (resumable), 1 when the store holds failed frames, else 0 (every
    frame reconstructed, skipped by policy, or deliberately left pending: --record-only)."""
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_FRAMES if summary.statuses.get("failed", 0) else EXIT_DONE
