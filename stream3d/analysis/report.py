"""index.html: one self-contained page (inline style, no scripts, no network) linking the
pictures and the CSV that sit beside it, with the run's config, counters and metrics table.
The page is a jinja2 template (templates/index.html) with autoescape: every value from the run
is escaped once, by the engine."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

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

def _counter(value: Any) -> str:
    """A counter as text: a number, or per kind "kind: n" joined (malformed input by kind)."""
    if isinstance(value, Mapping):
        if not value:
            return "0"
        parts = [f"{k}: {_counter(v)}" for k, v in sorted(value.items())]
        total = sum(v for v in value.values() if isinstance(v, (int, float)))
        return f"{total:g} (" + ", ".join(parts) + ")"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _errors_table(errors: list[Any] | None) -> dict[str, Any] | None:
    """The per-frame errors against the truth (analysis.truth.FrameErrors), if given."""
    if not errors:
        return None
    f = lambda x: "" if x != x else f"{x:.3g}"  # noqa: E731 (NaN -> empty)
    rows = [[str(e.t), str(e.frame_id), e.status, f(e.popout_depth), f(e.popout_iou),
             f(e.refined_depth), f(e.refined_iou)] for e in errors]
    head = ["t", "frame", "status", "pop-out height error (Å)", "pop-out IoU",
            "refined height error (Å)", "refined IoU"]
    return {"rows": rows, "header": head}


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
    tracks (``tracks``: rows of tracking.SUMMARY_COLUMNS) and tip speeds (``velocities``).
    The page is templates/index.html; the template engine escapes every value."""
    from stream3d.analysis.tracking import SUMMARY_COLUMNS

    rows = [[_sig3(c) for c in row] for row in table.rows()]
    shown = rows[:MAX_TABLE_ROWS]
    page = _template().render(
        name=run.path.name,
        facts=_facts(run, table, level, chosen, line_nm, line_source, resolution, like),
        figures=[{"src": p.name, "alt": key, "caption": _CAPTIONS.get(key, key)}
                 for key, p in pictures.items()],
        errors=_errors_table(errors),
        downloads=[p.name for p in (files or {}).values()],
        tracks={"rows": tracks or [], "header": list(SUMMARY_COLUMNS)},
        speeds={"rows": _speed_rows(velocities), "header": SPEED_COLUMNS},
        csv_name=csv_name,
        metrics={"rows": shown, "header": list(table.columns), "total": len(rows),
                 "missing": [not a for a in table.analysed[:len(shown)]]},
        counters=[[k, _counter(v)] for k, v in run.counters.items()] or [["(none stored)", ""]],
        config=[(section, [[key, str(value)] for key, value in values.items()])
                for section, values in config.to_dict().items()],
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


SPEED_COLUMNS = ["tip", "first frame", "last frame", "fitted speed (Å/frame)",
                 "median step (Å/frame)", "speed (nm/s)"]


def _speed_rows(velocities: list[Any] | None) -> list[list[str]]:
    return [[str(v.tip), str(v.first_frame), str(v.last_frame), f"{v.speed_A_per_frame:.3g}",
             f"{v.step_A_per_frame:.3g}", f"{v.speed_nm_s:.3g}"] for v in velocities or []]


def _facts(run: Run, table: MetricsTable, level: float, chosen: int,
           line_nm: tuple[float, float, float, float], line_source: str, resolution: float,
           like: str | None) -> list[list[str]]:
    """The table at the top of the page: what was analysed, how, and by which version."""
    nt, nz, ny, nx = run.shape
    dz, dy, dx = run.sampling
    material = (f"occupancy above {level / 2:g}" if run.name == "occupancy" else
                f"{run.name} above {level / 2:g} V (half of sample.potential = {level:g} V)")
    return [
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


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """templates/index.html, autoescaped; an undefined name in it is an error, not a blank."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template("index.html")
