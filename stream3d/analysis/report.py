"""index.html: one self-contained page (inline style, no scripts, no network) linking the
pictures and the CSV that sit beside it, with the run's config, counters and metrics table."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stream3d._version import __version__
from stream3d.analysis.metrics import MetricsTable
from stream3d.analysis.run import Run, status_summary
from stream3d.config import Config

MAX_TABLE_ROWS = 500  # longer runs: the page shows the first rows, the CSV has them all

_CAPTIONS = {
    "metrics": "Metrics over time. Vertical lines mark frames without numbers "
               "(grey pending, orange skipped, red failed).",
    "heights": "Height of the material's top surface above the exit plane, a few frames "
               "over the run, one shared colour scale.",
    "slices": "Orthogonal slices through the slice, row and column holding the most material; "
              "dashed lines show where the other slices cut.",
    "render": "The material surface (half the material potential) at a few time points, "
              "coloured by height above the exit plane.",
    "kymograph": "Kymograph: height of the material top and its thickness along the red line, "
                 "one row per frame.",
    "track_volumes": "Volume of every tracked object over time (tracks.csv). Circles: births, "
                     "triangles: objects made by a split, squares: by a merge, crosses: losses; "
                     "dotted lines join parents to children.",
    "tracks3d": "Tracks in 3D: each object's centroid over time (dot size grows with volume), "
                "and the paths of the growth fronts (skeleton tips seen in three or more "
                "frames, black).",
    "compare_xz": "Truth, pop-out and refined side by side: x-z sections through the objects "
                  "at a few frames, one colour scale and one height exaggeration; the truth's "
                  "boundary is outlined in cyan on every panel.",
    "compare_yz": "The same as y-z sections.",
    "compare_heights": "Height maps of the truth, the pop-out and the refined volume, one "
                       "colour scale.",
    "tips": "Speed of each growth front (tips.csv): the fitted straight-line speed and the "
            "median distance moved per frame.",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
.scroll { max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
.grid { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
tr.missing td { color: #a33; background: #fff6f3; }
"""


def _table(rows: list[list[str]], header: list[str] | None = None, *, text_cols: int = 1,
           missing: list[bool] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for k, row in enumerate(rows):
        cls = ' class="missing"' if missing and missing[k] else ""
        cells = "".join(
            f'<td class="text">{html.escape(c)}</td>' if j < text_cols else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(row))
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _config_tables(config: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for section, values in config.items():
        rows = [[key, str(value)] for key, value in values.items()]
        parts.append(f"<div><h3>[{html.escape(section)}]</h3>{_table(rows)}</div>")
    return '<div class="grid">' + "\n".join(parts) + "</div>"


def _counter(value: Any) -> str:
    """A counter as text: a number, or per kind "kind: n" joined (malformed input by kind)."""
    if isinstance(value, Mapping):
        if not value:
            return "0"
        parts = [f"{html.escape(str(k))}: {_counter(v)}" for k, v in sorted(value.items())]
        total = sum(v for v in value.values() if isinstance(v, (int, float)))
        return f"{total:g} (" + ", ".join(parts) + ")"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _errors_html(errors: list[Any] | None) -> str:
    """The per-frame errors against the truth (analysis.truth.FrameErrors), if given."""
    if not errors:
        return ""
    f = lambda x: "" if x != x else f"{x:.3g}"  # noqa: E731 (NaN -> empty)
    rows = [[str(e.t), str(e.frame_id), e.status, f(e.popout_depth), f(e.popout_iou),
             f(e.refined_depth), f(e.refined_iou)] for e in errors]
    head = ["t", "frame", "status", "pop-out height error (Å)", "pop-out IoU",
            "refined height error (Å)", "refined IoU"]
    return ("<h2>Errors against the ground truth</h2><p>Mean column height error and 3D IoU "
            "at half the material potential (errors.csv).</p>"
            f'<div class="scroll">{_table(rows, head, text_cols=0)}</div>')


def _sig3(cell: str) -> str:
    """A numeric table cell shown to 3 significant figures (integers as they are)."""
    try:
        value = float(cell)
    except ValueError:
        return cell
    if cell.lstrip("-").isdigit():
        return cell
    return f"{value:.3g}"


def write_index(out: Path, *, run: Run, config: Config, level: float, table: MetricsTable,
                csv_name: str, pictures: Mapping[str, Path], chosen: int,
                line_nm: tuple[float, float, float, float],
                tracks: list[list[str]] | None = None, velocities: list[Any] | None = None,
                files: Mapping[str, Path] | None = None, resolution: float = 0.0,
                line_source: str = "", like: str | None = None,
                errors: list[Any] | None = None) -> Path:
    """Write ``out/index.html`` linking ``pictures`` (files in ``out``), the CSVs and tables of
    tracks (``tracks``: rows of tracking.SUMMARY_COLUMNS) and tip speeds (``velocities``)."""
    from stream3d.analysis.tracking import SUMMARY_COLUMNS
    nt, nz, ny, nx = run.shape
    dz, dy, dx = run.sampling
    material = (f"occupancy above {level / 2:g}" if run.name == "occupancy" else
                f"{run.name} above {level / 2:g} V (half of sample.potential = {level:g} V)")
    facts = [
        ["store", str(run.path)],
        ["array analysed", f"{run.name} (t, z, y, x) = ({nt}, {nz}, {ny}, {nx})"],
        ["voxel", f"dz {dz:g} Å, dy {dy:g} Å, dx {dx:g} Å; frame interval {run.frame_interval:g} s"],
        ["frames", status_summary(table.status)],
        ["material", material],
        ["slices frame", str(chosen)],
        ["kymograph line", "y0, x0, y1, x1 = " + ", ".join(f"{v:.2f}" for v in line_nm) + " nm"
         + (f" ({line_source})" if line_source else "")],
        ["surfaces measured at", f"{resolution:.3g} Å lateral resolution (FWHM)" if resolution
         else "the voxel grid (anti-aliased)"],
        ["scales", f"shared with {like}" if like else "this run's own"],
        ["written by", f"stream3d {run.version or '?'}; analysed by stream3d {__version__} on "
                       f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}"],
    ]
    counters = [[k, _counter(v)] for k, v in run.counters.items()] or [["(none stored)", ""]]
    figures = "\n".join(
        f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(key)}">'
        f"<figcaption>{html.escape(_CAPTIONS.get(key, key))}</figcaption></figure>"
        for key, p in pictures.items())
    rows = [[_sig3(c) for c in row] for row in table.rows()]
    shown = rows[:MAX_TABLE_ROWS]
    downloads = " ".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>'
                         for p in (files or {}).values())
    track_table = (_table(tracks, list(SUMMARY_COLUMNS), text_cols=0) if tracks
                   else "<p>No objects above the minimum size.</p>")
    speed_rows = [[str(v.tip), str(v.first_frame), str(v.last_frame), f"{v.speed_A_per_frame:.3g}",
                   f"{v.step_A_per_frame:.3g}", f"{v.speed_nm_s:.3g}"] for v in velocities or []]
    speed_table = (_table(speed_rows, ["tip", "first frame", "last frame",
                                       "fitted speed (Å/frame)", "median step (Å/frame)",
                                       "speed (nm/s)"], text_cols=0)
                   if speed_rows else "<p>No growth front (skeleton tip) seen in three or more "
                                      "frames.</p>")
    more = (f"<p>First {MAX_TABLE_ROWS} of {len(rows)} rows; all are in the CSV.</p>"
            if len(rows) > MAX_TABLE_ROWS else "")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>stream3d analysis: {html.escape(run.path.name)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>stream3d analysis of {html.escape(run.path.name)}</h1>
{_table(facts)}
<h2>Pictures</h2>
{figures}
{_errors_html(errors)}
<h2>Tracked objects</h2>
<p>Objects are 26-connected parts of material; a track is one unbroken run of an object.
Began: birth (new), split or merge (of the tracks in "from"); ended: present (in the last
frame), loss, or the merge / split into the tracks in "into". Per frame in tracks.csv and
objects.csv. Files: {downloads}</p>
<div class="scroll">{track_table}</div>
<h2>Growth fronts</h2>
{speed_table}
<h2>Metrics per frame</h2>
<p>Lengths in nm, heights above the exit plane; empty cells: no number (frame not
reconstructed, or no material); 3 significant figures here, 4 in the CSV. Download: <a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a></p>
<div class="scroll">{_table(shown, list(table.columns), text_cols=0, missing=[not a for a in table.analysed[:len(shown)]])}</div>
{more}
<h2>Counters</h2>
{_table(counters)}
<h2>Configuration used</h2>
{_config_tables(config.to_dict())}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
