"""One ``Refiner`` per stream: refines each frame, tile by tile, warm-started from the previous
volume.

A frame larger than ``refine.tile`` is refined as overlapping tiles (:mod:`stream3d.refine.tiles`)
so memory follows the tile, not the frame. Each tile is one independent call of
:func:`refine_tile` on its crop of the frame, of pop-out's volume and of the previous stitched
volume; the Refiner is the one owner of the state (the stitched previous volume, and each
tile's per-pixel loss over its crop: a warm start compares a tile's new loss with the loss it
left on its own crop, whose edges carry the same wrap-around) and stitches every tile's
interior back. The tiles run in this
thread (:class:`LocalTiles`) or as dask tasks on GPU workers (:mod:`stream3d.refine.distributed`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from stream3d.config import Config
from stream3d.device import resolve_device
from stream3d.errors import UserError
from stream3d.refine.measurement import measured_intensity, uniform_volume
from stream3d.refine.model import ImagingModel
from stream3d.refine.pipeline import frame_heights, refine_volume
from stream3d.refine.result import RefineResult
from stream3d.refine.tiles import Tile, check_tile, frame_plan
from stream3d.refine.warmstart import residual_map, warm_start

if TYPE_CHECKING:  # pop-out is built beside this package; only its volume is used here
    from stream3d.popout import PopoutResult

#: The warm start judges a scene change on square tiles (px) of this many ``refine.window``
#: widths, at least :data:`SCENE_TILE_MIN_PX`: large enough to average the texture's speckle,
#: small enough that one new object does not turn the whole frame cold. Set by hand with the
#: first warm start (benchmarks/warm_start.py's movie); no measurement of it is on record.
SCENE_TILE_WINDOWS = 4
SCENE_TILE_MIN_PX = 16


@dataclass
class TileJob:
    """One tile's inputs (crops): raw counts (y, x), pop-out's volume (z, y, x) V, the warm
    state, the previous volume (V) and its per-pixel loss on its own frame (None: cold), and
    the texture spectrum pop-out measured on the frame (() = none), and the absorption ratio
    pop-out measured the thickness with (None = ``sample.absorption``)."""

    frame: np.ndarray
    popout: np.ndarray
    previous: np.ndarray | None = None
    reference: np.ndarray | None = None
    texture: tuple[float, ...] = ()
    absorption: float | None = None


@dataclass
class TileOutcome:
    """One tile's refinement over its whole crop, and the per-pixel data loss it leaves."""

    result: RefineResult
    reference: np.ndarray


def refine_tile(job: TileJob, config: Config, device: str | torch.device | None = None,
                callback: Callable | None = None) -> TileOutcome:
    """Refine one tile (or a whole frame): cold start from ``refine.init``, or a warm start
    from ``job.previous`` where the scene did not change. A plain function of its inputs, so
    it runs as a dask task; ``device`` None uses ``refine.device`` where it runs."""
    settings = config.refine
    dev = resolve_device(settings.device if device is None else device)
    config = _absorbing(config, job.absorption)
    model = ImagingModel.from_config(config)
    start, warm = _cold_start(job.frame, job.popout, model, config), False
    previous = job.previous
    if previous is not None and previous.shape == job.popout.shape and settings.iterations > 0:
        measured = measured_intensity(job.frame, model, dev)
        warmed = warm_start(measured, previous, job.popout, model, kind=settings.loss,
                            reference=job.reference, threshold=settings.scene_change,
                            tile=max(SCENE_TILE_WINDOWS * settings.window, SCENE_TILE_MIN_PX),
                            blend=settings.warm_blend)
        warm = warmed.warm
        if warm:
            start = warmed.volume
    support = _support(job.popout)
    if warm:
        support |= _support(previous)
    result = refine_volume(job.frame, start, config, device=dev,
                           support=support if support.any() else None, warm=warm,
                           callback=callback, texture=tuple(job.texture))
    measured = measured_intensity(job.frame, model, dev)
    reference = residual_map(measured, result.volume, model, kind=settings.loss)
    return TileOutcome(result, reference)


class TileRunner(Protocol):
    """Runs ``refine_tile`` on every job; yields (job index, outcome) as each finishes."""

    def run(self, jobs: Sequence[TileJob], config: Config, device: torch.device,
            callback: Callable | None) -> Iterator[tuple[int, TileOutcome]]: ...


class LocalTiles:
    """Tiles one after the other in this thread, on the Refiner's device."""

    def run(self, jobs: Sequence[TileJob], config: Config, device: torch.device,
            callback: Callable | None) -> Iterator[tuple[int, TileOutcome]]:
        for index, job in enumerate(jobs):
            yield index, refine_tile(job, config, device, callback)


class Refiner:
    """Refines the frames of one stream in order, each starting from the previous depths.

    The first frame (and any frame after :meth:`reset`, or after a scene change detected from
    the data loss) starts from ``refine.init``: pop-out's volume or a uniform one. Material may
    only be in pop-out's support or the previous volume's. ``tiles`` runs the tiles (default:
    here, one after the other).
    """

    def __init__(self, config: Config, device: str | torch.device | None = None, *,
                 tiles: TileRunner | None = None) -> None:
        check_tile(config)
        self.config = config
        self.device = resolve_device(config.refine.device if device is None else device)
        self.tiles: TileRunner = tiles if tiles is not None else LocalTiles()
        self.previous: np.ndarray | None = None  # the last frame's stitched volume (V)
        #: Per tile, the per-pixel loss its refinement left on its crop of the last frame.
        self.references: list[np.ndarray] | None = None
        # torch.optim's first optimiser imports torch._dynamo (~10 s on a laptop CPU): pay it
        # now, before frames arrive, not inside the first frame's refinement.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        #: Optional callback(stage, iteration, param) after every optimiser step (progress,
        #: or errors against a known truth); see :func:`refine_volume`. Whole-frame and local
        #: tiles only (a dask task cannot call back).
        self.callback = None

    def reset(self) -> None:
        """Forget the previous volume: the next frame starts cold."""
        self.previous = None
        self.references = None

    def move(self, step: tuple[int, int]) -> None:
        """Move the warm state by ``step`` (dy, dx) whole pixels, the specimen's drift since
        the previous frame (stream3d.register): the previous volume and its per-pixel loss
        maps follow the specimen. Columns entering at the edges hold no material (pop-out's
        alone there) and the loss maps' mean (the scene-change test sees nothing unusual)."""
        from stream3d.register import moved

        if self.previous is None or not any(step):
            return
        self.previous = moved(self.previous, step, 0.0)
        if self.references is not None:
            self.references = [moved(r, step, float(np.mean(r))) for r in self.references]

    def use_config(self, config: Config) -> None:
        """Refine the next frames with ``config`` (e.g. the frame's tracked lens defocus);
        the tile plan must stay the same (same frame shape and ``refine.tile``)."""
        self.config = config

    def refine(self, frame: np.ndarray, popout: "PopoutResult") -> RefineResult:
        """Refine one frame (raw counts (y, x)) given pop-out's result for it."""
        clock = time.perf_counter()
        popout_volume = np.asarray(popout.volume, dtype=np.float32)
        if popout_volume.ndim != 3 or popout_volume.shape[1:] != np.shape(frame):
            raise UserError(f"pop-out volume shape {popout_volume.shape} does not match the "
                            f"frame {np.shape(frame)}")
        frame = np.asarray(frame)
        plan = frame_plan(frame.shape, self.config)
        warm = (self.previous is not None and self.previous.shape == popout_volume.shape
                and self.references is not None and len(self.references) == len(plan))
        texture = tuple(getattr(popout, "texture", ()))
        absorption = getattr(popout, "absorption", None)
        config = self.config
        if config.sample.membranes and config.refine.heights:
            # The spectral height likelihood has no term for a support membrane's rings yet:
            # they lie under every region's and pulled discs 80-170 Å down toward the
            # membrane (benchmarks/membrane.py). Pop-out's heights, which take them out, stay.
            config = config.replace("refine", heights=False)
        if len(plan) > 1 and _heights_on_frame(config):
            # Heights once, on the whole frame: tiles fitting their own cut the objects that
            # cross their borders into regions whose heights scatter apart (seams).
            popout_volume = frame_heights(frame, popout_volume, _absorbing(config, absorption),
                                          device=self.device, texture=texture)
            config = config.replace("refine", heights=False)
        jobs = [TileJob(frame[t.crop], popout_volume[(slice(None), *t.crop)],
                        self.previous[(slice(None), *t.crop)] if warm else None,
                        self.references[i] if warm else None, texture, absorption)
                for i, t in enumerate(plan)]
        if len(plan) == 1:  # the whole frame: exactly the untiled refinement
            outcome = next(iter(self.tiles.run(jobs, config, self.device, self.callback)))[1]
            self.previous, self.references = outcome.result.volume, [outcome.reference]
            return outcome.result
        release_freed_memory()
        volume = np.zeros(popout_volume.shape, np.float32)
        loss = np.zeros(frame.shape, np.float32)  # per pixel, from each tile's interior
        results: list[RefineResult | None] = [None] * len(plan)
        references: list[np.ndarray | None] = [None] * len(plan)
        for index, outcome in self.tiles.run(jobs, config, self.device, self.callback):
            tile = plan[index]
            volume[(slice(None), *tile.inner)] = \
                outcome.result.volume[(slice(None), *tile.inner_in_crop)]
            loss[tile.inner] = outcome.reference[tile.inner_in_crop]
            # Keep the figures, not the crop's volume (it is stitched): memory stays one tile.
            results[index] = dataclasses.replace(outcome.result, volume=None)
            references[index] = outcome.reference
        self.previous, self.references = volume, references
        return _combined(volume, loss, plan, results, time.perf_counter() - clock)


def _combined(volume: np.ndarray, loss_map: np.ndarray, plan: Sequence[Tile],
              results: Sequence[RefineResult], seconds: float) -> RefineResult:
    """The frame's result from its tiles': the stitched volume, its mean per-pixel loss, the
    loss history averaged over the tiles (weighted by interior pixels), the usual status."""
    weights = np.array([(t.inner_y[1] - t.inner_y[0]) * (t.inner_x[1] - t.inner_x[0])
                        for t in plan], float)
    length = max(len(r.loss_history) for r in results)
    history = [float(np.average([r.loss_history[min(i, len(r.loss_history) - 1)]
                                 if r.loss_history else r.loss for r in results],
                                weights=weights)) for i in range(length)]
    statuses = Counter(r.status for r in results)
    status = "nan" if "nan" in statuses else statuses.most_common(1)[0][0]
    warm = sum(r.warm for r in results)
    loss = float(loss_map.mean())
    crop = plan[0].crop_y[1] - plan[0].crop_y[0], plan[0].crop_x[1] - plan[0].crop_x[0]
    ended = ", ".join(f"{n} {s}" for s, n in statuses.most_common())
    return RefineResult(
        volume=volume, loss=loss, loss_history=history,
        iterations=max(r.iterations for r in results), seconds=seconds, status=status,
        warm=warm > 0, evaluations=sum(r.evaluations for r in results),
        message=(f"{len(plan)} tiles of {crop[0]} x {crop[1]} px ({warm} warm): {ended} "
                 f"(loss {loss:.4g})"))


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``); False where there is
    no glibc. Why: pop-out's worker threads free their transient arrays into their own malloc
    arenas, which keep the pages; measured on a 2048² frame, 0.6 GiB of the 1.6 GiB resident
    after pop-out was such free memory, and the tiles' allocations came on top of it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def _cold_start(frame: np.ndarray, popout_volume: np.ndarray, model: ImagingModel,
                config: Config) -> np.ndarray:
    # iterations = 0 means pop-out only (DESIGN.md), whatever the start would have been.
    if config.refine.init == "uniform" and config.refine.iterations > 0:
        return uniform_volume(frame, model, config.sample.slices)
    return popout_volume


def _absorbing(config: Config, absorption: float | None) -> Config:
    """``config`` with pop-out's measured absorption ratio (None: ``sample.absorption``): the
    electrons the frame shows lost, so the model darkens material as much."""
    if absorption is None or absorption == config.sample.absorption:
        return config
    return config.replace("sample", absorption=absorption)


def _heights_on_frame(config: Config) -> bool:
    """Whether a tiled frame's heights are fitted once on the whole frame: heights on, a
    refinement to do, from pop-out's start (a uniform start has no heights to move)."""
    r = config.refine
    return r.heights and r.iterations > 0 and r.init == "popout"


def _support(volume: np.ndarray) -> np.ndarray:
    """Columns holding any material."""
    return np.asarray(volume).sum(axis=0) > 0

