"""What the microscopist sees: a live status line while a run goes on, a one-screen summary after."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from stream3d.stream.pipeline import Snapshot, Summary


class _StatusLine:
    """A rich renderable re-drawn a few times a second from the pipeline's snapshot."""

    def __init__(self, snapshot: Callable[[], Snapshot], total: int | None) -> None:
        self.snapshot, self.total = snapshot, total

    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        s = self.snapshot()
        line = Text.assemble(
            ("received ", "dim"), str(s.received), ("  reconstructed ", "dim"),
            (str(s.reconstructed), "green"), ("  skipped ", "dim"), str(s.skipped),
            ("  failed ", "dim"), (str(s.failed), "red" if s.failed else ""),
            ("  malformed ", "dim"), (str(s.malformed), "yellow" if s.malformed else ""),
            ("  gaps ", "dim"), (str(s.gaps), "yellow" if s.gaps else ""),
            ("  lag ", "dim"), f"{s.lag} frames",
            ("  ", ""), f"{s.recon_fps:.2f} frames/s",
            ("  ingest ", "dim"), f"{s.ingest_fps:.0f} frames/s",
        )
        if s.idle_s > 5:
            line.append(f"  (nothing received for {s.idle_s:.0f} s)", style="yellow")
        if self.total:
            done = min(self.total, s.reconstructed + s.skipped + s.failed)
            return Group(ProgressBar(total=self.total, completed=done, width=60), line)
        return line


@contextlib.contextmanager
def live_status(snapshot: Callable[[], Snapshot], *, total: int | None = None) -> Iterator[None]:
    """Show the status line on stderr (with a progress bar when the frame ``total`` is known)."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    if not console.is_terminal:  # logs and CI: only the summary, no redraw noise
        yield
        return
    with Live(_StatusLine(snapshot, total), console=console, refresh_per_second=4,
              transient=False):
        yield


def render_summary(summary: Summary, *, shape: tuple[int, ...] | None = None) -> str:
    """A one-screen plain-text summary of a run."""
    c, st = summary.counters, summary.statuses
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.malformed_kinds.items()))
    secs = summary.seconds_per_frame
    per = (sum(secs) / len(secs)) if secs else 0.0
    dims = f", (t, z, y, x) = {shape}" if shape else ""
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
    if st["pending"]:
        lines.append(f"next          {st['pending']} frame(s) pending: run the same command "
                     "again to reconstruct them")
    if st["skipped"]:
        lines.append(f"              {st['skipped']} skipped frame(s): `stream3d reconstruct "
                     f"{summary.path} --out {summary.path}` reconstructs them")
    return "\n".join(lines)
