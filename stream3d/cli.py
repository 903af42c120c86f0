"""The ``stream3d`` command line (typer). Each command is a thin shell over library functions.

Bad input is reported as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from stream3d import config as config_mod
from stream3d.errors import UserError

app = typer.Typer(
    name="stream3d",
    help=(
        "Live in situ TEM movies -> time-resolved 3D volumes.\n\n"
        "Each frame: pop-out 3D metrology (Thon-ring depth) -> refinement by automatic "
        "differentiation through a multislice model -> appended to a 4D (t, z, y, x) Zarr store.\n\n"
        "Every command takes --config FILE (TOML, see configs/) and repeatable "
        "--set section.key=value overrides, e.g. --set microscope.defocus=1500."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="TOML config file (units in configs/*.toml comments)."),
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override one key: section.key=value (repeatable)."),
]


def _version(value: bool) -> None:
    if value:
        from stream3d import __version__

        typer.echo(f"stream3d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Live in situ TEM movies -> time-resolved 3D volumes."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad-input exceptions into one line on stderr and exit code 2."""
    try:
        yield
    except (UserError, ValueError, OSError) as exc:
        typer.echo(f"stream3d: error: {exc}", err=True)
        raise typer.Exit(2) from None


def load_config(path: Optional[Path], sets: Optional[list[str]]) -> config_mod.Config:
    """The config from ``--config`` and ``--set`` (defaults when neither is given)."""
    return config_mod.load(path, sets or ())


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder for frame.png, frame.mrc, config.toml.")] = Path("out/demo"),
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Simulate one HRTEM frame of a textured specimen and save it as PNG and MRC.

    Three amorphous discs at three heights above the exit plane are propagated through the
    multislice model, imaged by the objective lens and recorded at the configured dose.
    """
    from stream3d.demo import run_demo

    with user_errors():
        cfg = load_config(config, set_)
        written = run_demo(cfg, out)
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder: movie.mrc, truth.zarr, config.toml, preview.png.")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Simulate an HRTEM movie of a specimen whose 3D truth is known.

    Specimens (simulate.specimen): dendrite, discs, tilted_slab, two_layers.
    Grid: sample.slices x simulate.ny x simulate.nx voxels of
    sample.slice_thickness x sample.pixel_size x sample.pixel_size Å.
    Each frame goes through the multislice model and the lens (microscope.*)
    and is recorded as Poisson counts at detector.dose e/Å².
    The dendrite grows simulate.growth Å per frame at every tip and stays
    between simulate.depth_low and simulate.depth_high Å above the exit plane.
    simulate.drift (Å/frame) and simulate.jitter (Å rms) move the specimen.

    Writes: movie.mrc (raw counts, t y x), truth.zarr (occupancy and potential,
    t z y x, OME-NGFF axes like the run store), config.toml, preview.png.

    Example: stream3d simulate --out out/sim --set simulate.frames=20
    """
    from stream3d.movie import simulate_movie

    with user_errors():
        cfg = load_config(config, set_)
        result = simulate_movie(cfg, out)
    for path in result.paths:
        typer.echo(f"wrote {path}")
    typer.echo(f"{result.frames} frames of {cfg.simulate.ny}x{cfg.simulate.nx}x"
               f"{cfg.sample.slices} in {result.seconds:.1f} s")
    if result.clipped:
        typer.echo(f"warning: {result.clipped} pixels exceeded the uint16 range and were "
                   f"clipped (lower detector.dose or set detector.dtype=float32)", err=True)


@app.command()
def analyze(
    run: Annotated[Path, typer.Argument(
        help="Run store (RUN.zarr) from reconstruct / live, or a ground-truth store from simulate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html, metrics.csv and the PNGs.")],
    frame: Annotated[Optional[int], typer.Option(
        help="Store index t of the frame shown in orthogonal slices (default: last reconstructed).")] = None,
    line: Annotated[Optional[str], typer.Option(
        help="Kymograph line 'y0,x0,y1,x1' in nm (default: along x, through the row crossing most material).")] = None,
    array: Annotated[Optional[str], typer.Option(
        help="(t, z, y, x) array to analyse, e.g. popout (default: volume, else occupancy, else potential).")] = None,
    min_part: Annotated[float, typer.Option(
        help="Smallest connected part counted (nm³), so noise specks are not parts.")] = 1.0,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Metrics over time, pictures and an HTML report of a run store.

    Per frame: material volume (nm³), surface area (nm²), heights above the exit plane, centre
    of mass, connected parts, growth rate (nm³/s); material is above half sample.potential.
    Writes OUT/metrics.csv (empty cells for frames not reconstructed), PNGs and OUT/index.html.
    The run's stored config is used; --config replaces it and --set amends it, e.g.
    --set sample.potential=4 moves the material threshold. A store still being written is
    analysed as far as it is reconstructed.
    """
    from stream3d.analysis.analyze import analyze as analyze_run

    with user_errors():
        line_nm = _parse_line(line) if line is not None else None
        result = analyze_run(run, out, array=array, config_path=config, overrides=tuple(set_ or ()),
                             frame=frame, line_nm=line_nm, min_part_volume=min_part, progress=True)
    analysed = int(result.table.analysed.sum())
    typer.echo(f"analysed {analysed} of {len(result.table.frame)} frames; open {result.index}")


def _parse_line(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UserError(f"--line {text!r} must be four numbers y0,x0,y1,x1 in nm")
    return values


def main() -> None:
    """Console-script entry point."""
    app(prog_name="stream3d")


if __name__ == "__main__":
    sys.exit(main())
