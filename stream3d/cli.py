"""The ``stream3d`` command line (typer). Each command is a thin shell over library functions.

Bad input is reported as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from stream3d import config as config_mod
from stream3d.cli_errors import user_errors
from stream3d.errors import UserError
from stream3d.io.dose import is_auto

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
    rich_markup_mode="markdown",  # re-wraps docstring paragraphs to the terminal width
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
        from stream3d._version import __version__

        typer.echo(f"stream3d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Live in situ TEM movies -> time-resolved 3D volumes."""


def load_config(path: Optional[Path], sets: Optional[list[str]], *,
                auto_dose: bool = False) -> config_mod.Config:
    """The config from ``--config`` and ``--set`` (defaults when neither is given).
    ``detector.dose = "auto"`` is refused unless ``auto_dose`` (commands that read frames)."""
    cfg = config_mod.load(path, sets or ())
    if is_auto(cfg) and not auto_dose:
        raise config_mod.ConfigError('detector.dose = "auto" is estimated from recorded frames: '
                                     "only reconstruct, live and info take it; give e/Å²")
    return cfg


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


def _logging() -> None:
    """Warnings as one line each on stderr, looked up at each message so that they print
    above a live status line (which redirects stderr) instead of through it."""
    import logging

    class CurrentStderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(self.format(record) + "\n")

    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("stream3d: %(message)s"))
    logger = logging.getLogger("stream3d")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


SchedulerOption = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Address of a running dask scheduler (tcp://host:8786) to "
                 "run pop-out on; default: an embedded local cluster."),
]
MaxFramesOption = Annotated[
    Optional[int], typer.Option("--max-frames", help="Stop receiving after this many new frames.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No live status line.")]
ViewOption = Annotated[bool, typer.Option(
    "--view", help="Serve the live view of the run store beside the run (loopback; the URL "
    "is printed; it stops with the run).")]
ViewPortOption = Annotated[int, typer.Option(
    "--view-port", help="Port of the --view page (0 = a free one).")]


def _beside(out: Path, view: bool, port: int):
    """The viewer beside a run when --view is given (a context manager either way)."""
    if not view:
        return contextlib.nullcontext()
    from stream3d.viewer.beside import view_beside

    return view_beside(out, port=port, announce=typer.echo)


@app.command()
def reconstruct(
    movie: Annotated[Path, typer.Argument(help="Recorded movie: MRC stack (.mrc/.mrcs), "
                                          "TIFF stack, Gatan DM3/DM4, Velox or NCEM EMD, TIA "
                                          "SER/EMI, a single frame, or a run store (.zarr) "
                                          "whose frames to reconstruct again.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run store to write (RUN.zarr). If "
                                      "it exists the run resumes where it ends.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    scheduler: SchedulerOption = None,
    max_frames: MaxFramesOption = None,
    quiet: QuietOption = False,
    record_only: Annotated[bool, typer.Option(
        "--record-only", help="Only import the raw frames, exactly as read (reconstruct "
        "later with `stream3d reconstruct RUN.zarr --out RUN.zarr`).")] = False,
    view: ViewOption = False,
    view_port: ViewPortOption = 0,
) -> None:
    """Replay a recorded movie through pop-out and refinement into a 4D Zarr run store.

    Every frame is stored raw (frames), with its pop-out volume (popout), refined volume
    (volume, NaN where not reconstructed) and a per-frame table (frame_id, timestamp, status,
    loss). Stopped by Ctrl-C or a crash? Run the same command again: it resumes where the
    store ends, without repeating or losing a frame. With MOVIE = the --out store itself,
    its pending, skipped and failed frames are reconstructed in place.
    """
    from stream3d.stream import commands
    from stream3d.stream.status import exit_code, render_summary

    _logging()
    with user_errors():
        cfg = commands.run_config(out, config, set_ or ())  # resuming: the store's own config
        with _beside(out, view, view_port):
            summary = commands.reconstruct(movie, out, cfg, scheduler=scheduler,
                                           max_frames=max_frames, show_status=not quiet,
                                           record_only=record_only)
    typer.echo(render_summary(summary))
    raise typer.Exit(exit_code(summary))


@app.command()
def live(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run store to write (RUN.zarr); "
                                      "an existing one is resumed.")],
    connect: Annotated[Optional[str], typer.Option(help="Detector endpoint to connect to, "
                                                   "e.g. tcp://127.0.0.1:5555.")] = None,
    bind: Annotated[Optional[str], typer.Option(help="Endpoint to bind and wait on instead "
                                                "(a bare port binds 127.0.0.1 only).")] = None,
    pattern: Annotated[str, typer.Option(help="sub (detector PUBlishes: may drop when we "
                                         "fall behind, counted as gaps) or pull (detector "
                                         "PUSHes: it waits for us).")] = "sub",
    config: ConfigOption = None,
    set_: SetOption = None,
    scheduler: SchedulerOption = None,
    max_frames: MaxFramesOption = None,
    idle_timeout: Annotated[Optional[float], typer.Option(
        "--idle-timeout", help="Stop after this many seconds without a message (s).")] = None,
    record_only: Annotated[bool, typer.Option(
        "--record-only", help="Only store raw frames (reconstruct later with "
        "`stream3d reconstruct RUN.zarr --out RUN.zarr`).")] = False,
    quiet: QuietOption = False,
    protocol: Annotated[Optional[str], typer.Option(
        help="native, or dectris (SIMPLON stream v2 from a DCU: --connect tcp://DCU:31001; "
             "runs across series until --idle-timeout, --max-frames or Ctrl-C). "
             "Default: stream.protocol.")] = None,
    view: ViewOption = False,
    view_port: ViewPortOption = 0,
) -> None:
    """Reconstruct a live detector stream (native ZeroMQ protocol, or a DECTRIS detector's
    SIMPLON stream v2 with --protocol dectris) into a 4D Zarr run store.

    Every frame received is stored raw at once, whatever compute does. stream.policy = "all"
    reconstructs every frame (lag may grow); "latest" stays live and marks the frames it
    jumps over as skipped. A status line shows received, reconstructed, skipped, malformed,
    gaps, lag and frames/s. Stops on the series end, --max-frames, --idle-timeout or Ctrl-C,
    always leaving a consistent store, and prints a summary.
    """
    from stream3d.stream import commands
    from stream3d.stream.status import exit_code, render_summary

    _logging()
    with user_errors():
        cfg = commands.run_config(out, config, set_ or ())  # resuming: the store's own config
        commands.check_live_options(connect, bind, max_frames, idle_timeout)
    with user_errors(), _beside(out, view, view_port):
        if (protocol or cfg.stream.protocol) != "native":
            from stream3d.stream.dectris_cli import run_live

            return run_live(out, cfg, protocol or cfg.stream.protocol, connect=connect,
                            bind=bind, scheduler=scheduler, max_frames=max_frames,
                            idle_timeout=idle_timeout, record_only=record_only, quiet=quiet)
        summary = commands.live(out, cfg, connect=connect, bind=bind, pattern=pattern,
                                scheduler=scheduler, max_frames=max_frames,
                                idle_timeout=idle_timeout, record_only=record_only,
                                show_status=not quiet, stages=_auto_dose_stages(cfg))
    typer.echo(render_summary(summary))
    raise typer.Exit(exit_code(summary))


def _auto_dose_stages(cfg: config_mod.Config):
    """detector.dose = "auto" in a live run: the stages take the dose from the first frame."""
    if not is_auto(cfg):
        return None
    from stream3d.stream.compute import default_stages
    from stream3d.stream.pixel_mask import RuleHolder, masked_stages

    return masked_stages(default_stages(), RuleHolder())


@app.command()
def camera(
    movie: Annotated[Path, typer.Argument(help="Movie to play (any format `stream3d info` "
                                          "reads).")],
    endpoint: Annotated[str, typer.Option(help="Where to serve frames (bound; a bare port "
                                          "means 127.0.0.1).")] = "tcp://127.0.0.1:5555",
    pattern: Annotated[str, typer.Option(help="pub (receivers SUBscribe) or push (a receiver "
                                         "PULLs).")] = "pub",
    fps: Annotated[float, typer.Option(help="Frames per second (0 = as fast as taken).")] = 10.0,
    connect: Annotated[bool, typer.Option("--connect", help="Connect to ENDPOINT instead of "
                                          "binding it (for `live --bind`).")] = False,
    series: Annotated[int, typer.Option(help="Series number of the first series.")] = 1,
    drop: Annotated[str, typer.Option(help="Frames never sent, e.g. 3,7 (gaps).")] = "",
    duplicate: Annotated[str, typer.Option(help="Frames sent twice, e.g. 5.")] = "",
    corrupt: Annotated[str, typer.Option(help="Malformed messages to inject: all, or kinds "
                                         "from not_json, missing_keys, bad_value, "
                                         "unknown_htype, unknown_dtype, byte_count, "
                                         "part_count, before_start, shape_changed.")] = "",
    restart_after: Annotated[Optional[int], typer.Option(
        help="Restart the series after this many frames (new series, frames from 0).")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a receiver.")] = 10.0,
    repeat: Annotated[int, typer.Option(help="Play the movie this many times over, as one "
                                        "longer series.")] = 1,
    config: ConfigOption = None,
    set_: SetOption = None,
    protocol: Annotated[Optional[str], typer.Option(
        help="native, or dectris (SIMPLON stream v2: PUSH bound like a DCU, e.g. on "
             "tcp://127.0.0.1:31001). Default: stream.protocol.")] = None,
    channels: Annotated[int, typer.Option(help="dectris: channels per image (1-3: threshold_1, "
                                          "threshold_2, difference).")] = 1,
    compression: Annotated[str, typer.Option(help="dectris: bslz4, lz4 or none.")] = "bslz4",
) -> None:
    """Emulate a detector: play a movie in the native protocol over ZeroMQ (or as a DECTRIS
    detector's SIMPLON stream v2 with --protocol dectris: --channels, --compression).

    The start message carries the config's optics. Faults for tests and demos: --drop,
    --duplicate, --corrupt, --restart-after. Try it with `stream3d live --connect ENDPOINT`.
    """
    from stream3d.stream import commands
    from stream3d.stream.camera import Faults, parse_frames, parse_kinds

    _logging()
    with user_errors():
        cfg = load_config(config, set_)
    protocol = protocol or cfg.stream.protocol
    if protocol != "native":
        from stream3d.stream.dectris_cli import run_camera

        with user_errors():
            return run_camera(movie, cfg, protocol, endpoint=endpoint,
                              fps=fps, connect=connect, series=series, drop=drop,
                              duplicate=duplicate, corrupt=corrupt, restart_after=restart_after,
                              wait=wait, repeat=repeat, channels=channels,
                              compression=compression)
    with user_errors():
        faults = Faults(drop=parse_frames(drop), duplicate=parse_frames(duplicate),
                        corrupt=parse_kinds(corrupt), restart_after=restart_after)
        report = commands.camera(movie, cfg, address=endpoint, pattern=pattern,
                                 bind=not connect, fps=fps, series=series, faults=faults,
                                 wait=wait, repeat=repeat)
    corrupted = sum(report.corrupted.values())
    typer.echo(f"sent {report.frames} frames of series {report.series} in {report.seconds:.1f} s "
               f"({report.dropped} dropped, {report.duplicated} duplicated, {corrupted} "
               "malformed)" + ("; interrupted" if report.interrupted else ""))
    if report.interrupted:
        raise typer.Exit(130)
@app.command()
def simulate(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder: movie.mrc, truth.zarr, config.toml, preview.png.")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Simulate an HRTEM movie of a specimen whose 3D truth is known.

    Specimens (simulate.specimen): dendrite, discs, tilted_slab, two_layers, growing_discs.
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
def landscape(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder: landscape.csv, landscape.png.")] = Path("out/landscape"),
    frame: Annotated[Optional[Path], typer.Option(
        help="Raw frame (.npy or .mrc; a stack gives frame --index). "
             "Without --frame and --volume the config's simulate.specimen is simulated.")] = None,
    volume: Annotated[Optional[Path], typer.Option(
        help="Volume V in volts, (z, y, x): .npy, .mrc, or a Zarr group (run store's "
             "'volume', truth.zarr's 'potential').")] = None,
    index: Annotated[int, typer.Option(help="Frame index into movies, stacks and 4D volumes.")] = 0,
    shift_range: Annotated[float, typer.Option(help="Half range of the depth shift, Å.")] = 200.0,
    shift_step: Annotated[float, typer.Option(help="Step of the depth shift, Å.")] = 20.0,
    scale_range: Annotated[float, typer.Option(help="Half range of the z scale about 1.")] = 0.3,
    scale_step: Annotated[float, typer.Option(help="Step of the z scale.")] = 0.05,
    noise: Annotated[bool, typer.Option(help="Simulated frame: Poisson noise at detector.dose "
                                             "(--no-noise: expected counts).")] = True,
    seed: Annotated[int, typer.Option(help="Simulated frame: seed of texture and noise.")] = 0,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Map the data loss over a depth shift x z-scale grid of a volume (the paper's Fig. 1B).

    Each grid point moves the whole volume along the beam: material at height z goes to
    c + shift + (z - c) x scale, with c the volume's mass-centre height.

    Writes landscape.csv (shift_A, scale, loss: refine.loss on the dose-normalised frame;
    spectral_nll: the Whittle likelihood of the texture's local spectra that refinement
    fits heights by) and landscape.png, both as heat maps side by side, with the true
    solution (zero shift, unit scale) in red and each grid minimum as a white cross.

    Without --frame/--volume, frame --index of simulate.specimen is simulated on the
    config's grid and compared with its own true volume.

    Example: stream3d landscape --set simulate.specimen=discs --out out/landscape
    """
    from rich.progress import Progress

    from stream3d.refine import landscape as land

    with user_errors():
        cfg = load_config(config, set_)
        frame_counts, vol, what = _landscape_inputs(cfg, frame, volume, index, noise, seed)
        shifts = land.grid_axis(shift_range, shift_step)
        scales = land.grid_axis(scale_range, scale_step, 1.0)
        scales = scales[scales > 0]
        out.mkdir(parents=True, exist_ok=True)
        with Progress(transient=True) as bar:
            task = bar.add_task("forward models", total=shifts.size * scales.size)
            result = land.loss_landscape(frame_counts, vol, cfg, shifts=shifts, scales=scales,
                                         progress=lambda done, total: bar.update(task, completed=done))
        csv_path = land.write_csv(result, out / "landscape.csv")
        png_path = land.plot(result, out / "landscape.png", title=f"{what}: {cfg.refine.loss} loss")
    best_shift, best_scale = result.minimum()
    typer.echo(f"wrote {csv_path}")
    typer.echo(f"wrote {png_path}")
    typer.echo(f"minimum at shift {best_shift:+.1f} Å, scale {best_scale:.3f} "
               f"({shifts.size} shifts x {scales.size} scales)")


def _landscape_inputs(cfg, frame, volume, index, noise, seed):
    """(raw frame, volume V, description) from files, or simulated from the config."""
    from stream3d.refine.inputs import read_frame, read_volume

    if (frame is None) != (volume is None):
        raise UserError("give both --frame and --volume, or neither (to simulate)")
    if frame is not None:
        return read_frame(frame, index), read_volume(volume, index), f"{volume.name} vs {frame.name}"
    from stream3d.simulate import simulate_frame
    from stream3d.specimen.catalog import build_specimen

    occupancy = build_specimen(cfg).occupancy(index)
    counts, potential = simulate_frame(occupancy, cfg, seed=seed, noise=noise,
                                       device=cfg.refine.device)
    return counts, potential.real, f"simulated {cfg.simulate.specimen}, frame {index}"


@app.command()
def popout(
    movie: Annotated[Path, typer.Argument(help="MRC file of raw counts: one frame (y, x) or a movie (t, y, x).")],
    frame: Annotated[int, typer.Option("--frame", "-f", help="Frame index in the movie (0 = first).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: popout.png, popout.npz.")] = Path("out/popout"),
    truth: Annotated[Optional[Path], typer.Option(
        help="truth.zarr from `stream3d simulate`: also print errors against the truth.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Pop-out 3D metrology of one frame: depth, thickness and an initial volume.

    Each popout.patch px patch's Thon rings are fitted for its effective defocus, which gives
    the height of its material above the exit plane (microscope.defocus - effective defocus);
    the low-frequency contrast gives thickness. Writes popout.png (frame, height, thickness,
    confidence; axes in Å) and popout.npz (volume (z, y, x) V, height Å, thickness Å,
    confidence). Example:

        stream3d simulate --out out/sim --set simulate.frames=3
        stream3d popout out/sim/movie.mrc --frame 2 --truth out/sim/truth.zarr --out out/po
    """
    from stream3d.popout.cli_job import run_popout

    with user_errors():
        cfg = load_config(config, set_)
        report = run_popout(movie, frame, out, cfg, truth=truth)
    for line in report:
        typer.echo(line)
@app.command()
def analyze(
    run: Annotated[Path, typer.Argument(
        help="Run store (RUN.zarr) from reconstruct / live, or a ground-truth store from simulate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html, metrics.csv and the PNGs.")],
    frame: Annotated[Optional[int], typer.Option(
        help="Store index t of the frame shown in orthogonal slices (default: last reconstructed).")] = None,
    line: Annotated[Optional[str], typer.Option(
        help="Kymograph line 'y0,x0,y1,x1' in nm (default: along the path of the growth "
             "tip that travelled furthest sideways, else along x through the row crossing "
             "most material).")] = None,
    array: Annotated[Optional[str], typer.Option(
        help="(t, z, y, x) array to analyse, e.g. popout (default: volume, else occupancy, else potential).")] = None,
    min_part: Annotated[float, typer.Option(
        help="Smallest connected part / object counted (nm³), so noise specks are neither "
             "parts nor tracked objects.")] = 5.0,
    resolution: Annotated[Optional[float], typer.Option(
        help="Lateral resolution (Å FWHM) at which surfaces are measured (default: a truth "
             "store's grid; a run's pop-out resolution).")] = None,
    mesh: Annotated[bool, typer.Option(
        "--mesh", help="Also write OUT/meshes/frame_NNNNN.ply, the material surface per frame (nm).")] = False,
    like: Annotated[Optional[Path], typer.Option(
        help="Report folder of another analysis: draw on its scales too (e.g. a run and its truth).")] = None,
    truth: Annotated[Optional[Path], typer.Option(
        help="truth.zarr of the simulated movie: add errors and truth / pop-out / refined pictures.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Metrics over time, tracked objects, growth fronts, pictures and an HTML report of a run store.

    Per frame: material volume (nm³), surface area (nm²), heights above the exit plane, centre
    of mass, connected parts, growth rate (nm³/s); material is above half sample.potential.
    Writes OUT/metrics.csv (empty cells for frames not reconstructed), OUT/objects.csv (3D
    objects per frame: volume, surface, centroid, faces), OUT/tracks.csv (objects linked over
    time with births, merges, splits, losses and growth rates), OUT/tips.csv (growth fronts
    and their speed), PNGs and OUT/index.html.
    The run's stored config is used; --config replaces it and --set amends it, e.g.
    --set sample.potential=4 moves the material threshold. A store still being written is
    analysed as far as it is reconstructed.
    """
    from stream3d.analysis.analyze import analyze as analyze_run

    with user_errors():
        line_nm = _parse_line(line) if line is not None else None
        result = analyze_run(run, out, array=array, config_path=config, overrides=tuple(set_ or ()),
                             frame=frame, line_nm=line_nm, min_part_volume=min_part,
                             resolution=resolution, mesh=mesh, like=like, truth=truth,
                             progress=True)
    if result.errors:
        from stream3d.analysis.truth import summary_lines

        for text in summary_lines(result.errors):
            typer.echo(text)
    analysed = int(result.table.analysed.sum())
    typer.echo(f"analysed {analysed} of {len(result.table.frame)} frames: {len(result.tracks)} "
               f"tracks, {len(result.tip_velocities)} growth fronts (tips); open {result.index}")


@app.command()
def view(
    run: Annotated[Path, typer.Argument(help="Run store (RUN.zarr), finished or being written.")],
    host: Annotated[str, typer.Option(help="Address to serve on; anything but loopback is "
                                      "reachable from other machines (a warning says so).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 = a free one).")] = 8765,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for RUN to be created (used by reconstruct/live --view).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print the URL.")] = False,
) -> None:
    """Serve a page that follows a run store while it is written: the newest raw frame, its
    pop-out and refined height maps and thickness map (nm, fixed colour scales), the refined
    volume in 3D, frames stored / refined, lag, frames/s and the loss over time, and a time
    slider over the stored frames. `/api/state` gives the run's state as JSON.

    Read-only: it never takes the writer's lock and reads only what it shows.

    Example: stream3d view out/run.zarr   (then open http://127.0.0.1:8765/)
    """
    from stream3d.viewer.server import serve
    from stream3d.viewer.state import check_store

    with user_errors():
        if port < 0 or port > 65535:
            raise UserError(f"--port {port} is not a TCP port (0..65535)")
        if wait:
            _wait_for_store(run)
        check_store(run)
        serve(run, host, port, announce=(lambda _: None) if quiet else typer.echo)


def _wait_for_store(run: Path) -> None:
    """Block until ``run`` is a run store (its creator renames it into place when complete)."""
    import time

    from stream3d.viewer.state import check_store

    while True:
        try:
            return check_store(run)
        except UserError:
            time.sleep(0.2)


@app.command()
def compare(
    run: Annotated[Path, typer.Argument(help="Run store (RUN.zarr) from reconstruct / live.")],
    truth: Annotated[Path, typer.Argument(help="truth.zarr written by stream3d simulate.")],
    csv_out: Annotated[Optional[Path], typer.Option(
        "--csv", help="Also write the per-frame table as CSV here.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for errors.csv and side-by-side pictures (truth, pop-out, "
                            "refined: x-z and y-z sections, height maps).")] = None,
) -> None:
    """Errors of a run against the 3D ground truth of the simulated movie it reconstructed.

    Per frame (matched by detector frame number): mean column height error (Å) and 3D IoU at
    half the material potential, of the pop-out volume and of the refined volume: the measures
    a reconstruction is judged by, never its loss.

    Example: stream3d compare out/demo/run.zarr out/demo/truth.zarr --csv errors.csv
    """
    from stream3d.analysis.truth import compare_to_truth, summary_lines, write_comparison, write_csv

    with user_errors():
        rows = compare_to_truth(run, truth)
        if csv_out is not None:
            write_csv(rows, csv_out)
        written = write_comparison(run, truth, out, rows) if out is not None else {}
    for line in summary_lines(rows):
        typer.echo(line)
    for path in written.values():
        typer.echo(f"wrote {path}")


@app.command()
def calibrate(
    movie: Annotated[Path, typer.Argument(help="A frame or movie of raw counts: MRC, TIFF, .npy "
                                          "(y, x) or (t, y, x), or a run store (.zarr).")],
    frames: Annotated[Optional[str], typer.Option(
        help="Frames A:B (Python slice) or N; their spectra are averaged. Default: all.")] = None,
    region: Annotated[Optional[str], typer.Option(
        help="Fit only pixels y0,x0,y1,x1 (e.g. a support film or cell window).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON only.")
                        ] = False,
    write: Annotated[Optional[Path], typer.Option(
        help="Write the config with the measured lens and dose here (TOML).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for spectrum.png, profile.png, calibration.json "
        "(and per_frame.csv).")] = None,
    per_frame: Annotated[bool, typer.Option(
        "--per-frame", help="Also fit every frame alone (defocus drift): per_frame.csv in --out.")
    ] = False,
    fit_cs: Annotated[bool, typer.Option("--fit-cs", help="Fit Cs too (else microscope.cs).")
                      ] = False,
    resolution: Annotated[Optional[str], typer.Option(
        help="Fitted band HIGH,LOW in Å, e.g. 3,30 (default: 2/3 Nyquist or the aperture, "
             "to 30 Å).")] = None,
    defocus_range: Annotated[Optional[str], typer.Option(
        help="Searched defocus MIN,MAX in Å (default 100 to 3 x microscope.defocus + 2000).")
    ] = None,
    tile: Annotated[Optional[int], typer.Option(
        help="Spectrum tile in px (default: half the frame, 64-512).")] = None,
    pixel_size: Annotated[Optional[float], typer.Option(
        help="Å per pixel (default: the file's, else sample.pixel_size).")] = None,
    height: Annotated[Optional[float], typer.Option(
        help="Height (Å above the exit plane) of what the rings were fitted on; --write "
             "records lens defocus = effective defocus + height. 0 for a support film or cell "
             "window at the exit plane; default: the middle of the cell "
             "(sample.slices x sample.slice_thickness / 2).")] = None,
    mtf: Annotated[bool, typer.Option(
        "--mtf", help="Measure the detector's MTF instead, from the noise power spectrum of "
        "the frames (a flat field, or --region on vacuum / solvent); --out writes mtf.txt "
        "for detector.mtf_file.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Measure the lens from the data: effective defocus, two-fold astigmatism, dose.

    Fits the Thon rings of the frames' average power spectrum (CTFFIND-like: coarse
    search, then a 2D fit) for the effective defocus, C12 and its angle phi12 (degrees
    from +x toward +y, the least underfocused direction), Cs with --fit-cs, each with a
    1-sigma error, and the resolution to which the fit holds. The fit reports the
    dominant scatterer: with material at several heights the strongest rings win, so
    calibrate on a support film or cell window with --region. The dose comes from the
    counts of the brightest blocks (away from material).

    With --mtf: the detector's MTF from the noise power spectrum instead (see --mtf).

    Example: stream3d calibrate movie.mrc --frames 0:10 --out out/cal --write lens.toml
    """
    import json

    from stream3d.calibrate.command import _jsonable, calibrate as run_calibrate, summary_lines

    if mtf:
        _calibrate_mtf(movie, frames, region, out, json_out, config, set_)
        return
    with user_errors():
        cfg = load_config(config, set_)
        result = run_calibrate(movie, cfg, frames=frames, region=region, fit_cs=fit_cs,
                               resolution=resolution, defocus_range=defocus_range, tile=tile,
                               pixel_size=pixel_size, per_frame=per_frame, out=out, write=write,
                               height=height)
    if json_out:
        payload = dict(result.summary)
        if per_frame:
            payload["per_frame"] = result.per_frame
        typer.echo(json.dumps(_jsonable(payload)))
        return
    for line in summary_lines(result):
        typer.echo(line)


def _calibrate_mtf(movie: Path, frames: Optional[str], region: Optional[str],
                   out: Optional[Path], json_out: bool, config, set_) -> None:
    """`calibrate --mtf`: the detector's MTF from the frames' noise power spectrum."""
    import json

    from stream3d.calibrate.command import _jsonable, calibrate_mtf, mtf_lines

    with user_errors():
        load_config(config, set_)
        result = calibrate_mtf(movie, frames=frames, region=region, out=out)
    if json_out:
        typer.echo(json.dumps(_jsonable(result.summary)))
        return
    for line in mtf_lines(result):
        typer.echo(line)


def _parse_line(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UserError(f"--line {text!r} must be four numbers y0,x0,y1,x1 in nm")
    return values




def _register_keys() -> None:
    from stream3d.keys_cli import keys

    app.command()(keys)


_register_keys()
@app.command()
def info(
    movie: Annotated[Path, typer.Argument(help="Movie file (MRC, TIFF, DM3/DM4, Velox or NCEM "
                                          "EMD, TIA SER/EMI) or a run store (.zarr).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """What a movie holds: frames, frame shape, dtype, pixel size (Å), frame interval (s),
    instrument, detector, dose (e/Å² per frame), and which values came from the file's
    metadata (the others from the config)."""
    from stream3d.io.info import movie_info, render

    with user_errors():
        facts = movie_info(movie, load_config(config, set_, auto_dose=True))
    if as_json:
        import json

        typer.echo(json.dumps(facts))
    else:
        typer.echo(render(facts))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="stream3d")


if __name__ == "__main__":
    sys.exit(main())
