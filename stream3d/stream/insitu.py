"""Per-frame registration and lens tracking on the compute side of a run (issue 23).

* Registration (``stream.register``): every frame's drift against the run's first frame
  (:mod:`stream3d.register`), measured as a dask task beside its pop-out. Before a frame is
  refined, the refiner's warm state is moved by the drift since the previous refined frame; a
  jump beyond ``stream.max_shift`` Å is a new scene: the refiner forgets its state (cold start).
* Lens tracking (``microscope.track_defocus``): :class:`stream3d.calibrate.FocusTracker` fits
  each frame's Thon rings in order, each fit started from the last. One image gives the
  *effective* defocus of its dominant scatterer, not the lens's; ``microscope.defocus`` is the
  lens at the run's first frame, and the change of the fitted effective defocus since that frame
  is taken as the lens's: lens(t) = defocus + (fit(t) - fit(first frame)). The frame's pop-out
  and refinement run with lens(t) (``config.replace("microscope", defocus=...)``).

Both are stored per frame (``shift`` (t, 2) Å, ``defocus`` (t,) Å) and shown in the status line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream3d.config import Config
from stream3d.popout.membrane import BARE_SHARE

log = logging.getLogger("stream3d.stream")


@dataclass
class FramePlan:
    """What compute needs for one frame besides pop-out: its config (lens), its lens defocus
    (Å, None when not tracked) and its shift (a future of (dy, dx) Å, or None)."""

    config: Config
    defocus: float | None = None
    shift: Any = None


class InSitu:
    """Registration and lens tracking of one run; ``first_frame()`` reads the run's frame 0
    (a resumed run's reference), ``client`` runs the shift measurements as tasks named by
    ``key()`` (the pop-outs' key cycle: dask's key caches stay bounded in a day-long run)."""

    def __init__(self, config: Config, client: Any,
                 first_frame: Callable[[], np.ndarray], key: Callable[[], str]) -> None:
        self.config, self.client, self.first_frame = config, client, first_frame
        self.key = key
        self.register = config.stream.register
        self.track = config.microscope.track_defocus
        self._registration: Any = None  # scattered Registration of the reference frame
        self._tracker: Any = None
        self._reference_fit: float | None = None  # effective defocus (Å) fitted on frame 0
        self._last_shift: tuple[float, float] | None = None  # Å, of the last refined frame
        self._state_at: tuple[int, int] = (0, 0)  # px (compute grid) where the warm state sits
        self.latest_shift: tuple[float, float] | None = None  # for the status line
        self.latest_defocus: float | None = None
        self.new_scenes = 0

    @property
    def active(self) -> bool:
        return self.register or self.track

    # ------------------------------------------------------------------ before pop-out
    def plan(self, t: int, frame: np.ndarray) -> FramePlan:
        """Frame ``t``'s config and shift measurement (submitted now, in frame order)."""
        plan = FramePlan(self.config)
        if self.track:
            plan.defocus = self._lens_defocus(t, frame)
            plan.config = self.config.replace("microscope", defocus=plan.defocus)
        if self.register:
            if self._registration is None:
                from stream3d.register import Registration

                reference = frame if t == 0 else np.asarray(self.first_frame(), np.float32)
                self._registration = self.client.scatter(
                    Registration.from_config(reference, self.config), broadcast=True)
            from stream3d.register import measure_shift

            plan.shift = self.client.submit(measure_shift, self._registration, frame,
                                            key=self.key())
        return plan

    def _lens_defocus(self, t: int, frame: np.ndarray) -> float:
        from stream3d.calibrate import FocusTracker
        from stream3d.calibrate.command import options_from

        nominal = self.config.microscope.defocus
        if self._tracker is None:
            options = options_from(self.config, fit_cs=False, resolution=None,
                                   defocus_range=None)
            # Over a support membrane only its bare areas are fitted: their rings move with
            # the lens alone, while the mixed rings of the whole field also follow the growing
            # objects' share of it (the in situ suite's movie with a membrane: the whole
            # field's fit drifted -16 Å in 7 frames of growth, the bare areas' scattered
            # within 11 Å without a trend). The same share of the tiles as pop-out takes for
            # bare membrane.
            bare = BARE_SHARE if self.config.sample.membranes else None
            self._tracker = FocusTracker(options, pixel_size=self.config.sample.pixel_size,
                                         tile=_bare_tile(self.config, frame) if bare else None,
                                         bare=bare)
            first = frame if t == 0 else np.asarray(self.first_frame(), np.float32)
            lens = self._tracker.update(first)
            if lens.fit is None:
                log.warning("microscope.track_defocus: the run's first frame has no Thon rings "
                            "to fit (%s); frames keep microscope.defocus until one has", lens.error)
            else:
                self._reference_fit = lens.defocus
            if t == 0:
                return nominal
        lens = self._tracker.update(frame)
        if not math.isfinite(lens.defocus):
            return nominal
        if self._reference_fit is None:  # the first frame with rings is the reference
            self._reference_fit = lens.defocus
        return nominal + (lens.defocus - self._reference_fit)

    # ------------------------------------------------------------------ before refinement
    def before_refine(self, t: int, plan: FramePlan, refiner: Any) -> tuple[float, float] | None:
        """Wait for frame ``t``'s shift, move (or reset) the refiner's warm state, give it the
        frame's config; returns the shift (Å) to store (None when not measured)."""
        use_config = getattr(refiner, "use_config", None)
        if self.track and use_config is not None:
            use_config(plan.config)
        self.latest_defocus = plan.defocus if plan.defocus is not None else self.latest_defocus
        if plan.shift is None:
            return None
        shift = tuple(float(v) for v in plan.shift.result())
        if not all(math.isfinite(v) for v in shift):
            return None
        self.latest_shift = shift
        pixel = self.config.sample.pixel_size * self.config.stream.bin  # compute grid, Å
        at = (int(round(shift[0] / pixel)), int(round(shift[1] / pixel)))
        if self._last_shift is not None:
            jump = math.hypot(shift[0] - self._last_shift[0], shift[1] - self._last_shift[1])
            if jump > self.config.stream.max_shift:
                self.new_scenes += 1
                log.info("frame %d: the field jumped %.1f Å (> stream.max_shift = %g Å): a new "
                         "scene, cold start", t, jump, self.config.stream.max_shift)
                _call(refiner, "reset")
            else:
                _call(refiner, "move", (at[0] - self._state_at[0], at[1] - self._state_at[1]))
        self._last_shift, self._state_at = shift, at
        return shift


def _bare_tile(config: Config, frame: np.ndarray) -> int:
    """px, the tiles in which lens tracking looks for bare membrane: pop-out's patches (the
    scale at which it tells material from background), or the calibration's default tile
    where that is smaller (a small frame)."""
    from stream3d.calibrate.spectrum import choose_tile

    return min(config.popout.patch, choose_tile(np.shape(frame)))


def _call(refiner: Any, name: str, *args: Any) -> None:
    """``refiner.name(*args)`` when the refiner has it (stage doubles may not)."""
    method = getattr(refiner, name, None)
    if method is not None:
        method(*args)
