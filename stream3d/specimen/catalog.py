"""The specimens ``stream3d simulate`` can build, by the name in ``[simulate] specimen``.

Each builder turns a :class:`~stream3d.config.Config` into a :class:`Specimen`: something with
``occupancy(t)`` giving the (z, y, x) material fraction at frame t on the config's grid
(``sample.slices`` x ``simulate.ny`` x ``simulate.nx`` voxels at ``sample.sampling``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.specimen.dendrite import Dendrite, DendriteParams
from stream3d.specimen.growing import GrowingDiscs, births
from stream3d.specimen.shapes import three_discs, tilted_slab, two_layers


class Specimen(Protocol):
    def occupancy(self, t: float) -> np.ndarray:
        """Material fraction (z, y, x), float32 in [0, 1], at frame ``t``."""


class Static:
    """A specimen that does not change: the same occupancy for every frame."""

    def __init__(self, occupancy: np.ndarray) -> None:
        self._occupancy = np.asarray(occupancy, dtype=np.float32)
        self._occupancy.setflags(write=False)  # shared by every frame: nobody may edit it

    def occupancy(self, t: float) -> np.ndarray:
        return self._occupancy


def grid(config: Config) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(shape (z, y, x), sampling (dz, dy, dx) Å) of a simulated volume."""
    return (config.sample.slices, config.simulate.ny, config.simulate.nx), config.sample.sampling


def _layer_heights(config: Config, count: int) -> np.ndarray:
    """Centre heights (Å) of ``count`` layers of ``thickness`` spread over the depth range."""
    sim = config.simulate
    half = sim.thickness / 2
    if sim.depth_high - sim.depth_low < sim.thickness:
        raise ValueError(f"simulate.thickness {sim.thickness:g} Å does not fit in the depth range "
                         f"({sim.depth_low:g}, {sim.depth_high:g}) Å")
    return np.linspace(sim.depth_low + half, sim.depth_high - half, count)


def dendrite(config: Config) -> Dendrite:
    """A growing dendrite (``[simulate]`` branches, growth, radii, depth range, seed)."""
    sim = config.simulate
    params = DendriteParams(branches=sim.branches, growth=sim.growth,
                            depth=(sim.depth_low, sim.depth_high),
                            radius=(sim.radius_min, sim.radius_max),
                            initial_length=sim.initial_length, seed=sim.seed)
    try:
        return Dendrite(params, *grid(config))
    except ValueError as exc:  # name the config section the user has to change
        raise UserError(f"[simulate] {exc}") from None


def discs(config: Config) -> Static:
    """Three discs at the bottom, middle and top of the depth range."""
    shape, sampling = grid(config)
    return Static(three_discs(shape, sampling, heights=tuple(_layer_heights(config, 3)),
                              thickness=config.simulate.thickness))


def growing_discs(config: Config) -> GrowingDiscs:
    """The three discs, born one after another, radius growing by simulate.growth Å per frame
    from simulate.initial_length Å."""
    shape, sampling = grid(config)
    sim = config.simulate
    return GrowingDiscs(shape, sampling, heights=tuple(_layer_heights(config, 3)),
                        thickness=sim.thickness, births=births(sim.frames),
                        r0=max(sim.initial_length, 2 * max(sampling[1:])), growth=sim.growth)


def tilted(config: Config) -> Static:
    """A slab rising across x from the bottom to the top of the depth range."""
    shape, sampling = grid(config)
    low, high = _layer_heights(config, 2)
    return Static(tilted_slab(shape, sampling, height_left=low, height_right=high,
                              thickness=config.simulate.thickness))


def layers(config: Config) -> Static:
    """Two overlapping layers, one at the bottom and one at the top of the depth range."""
    shape, sampling = grid(config)
    return Static(two_layers(shape, sampling, heights=tuple(_layer_heights(config, 2)),
                             thickness=config.simulate.thickness))


# One entry per name in config.SPECIMEN_KINDS (a test checks they agree).
BUILDERS: dict[str, Callable[[Config], Specimen]] = {
    "dendrite": dendrite,
    "discs": discs,
    "growing_discs": growing_discs,
    "tilted_slab": tilted,
    "two_layers": layers,
}


def tip_speed(config: Config) -> float | None:
    """Å per frame at which the simulated specimen's tips advance: a dendrite's branches grow
    from their tips at ``simulate.growth``; the other specimens have no tips to follow
    (growing discs grow in radius). None when there are none."""
    return float(config.simulate.growth) if config.simulate.specimen == "dendrite" else None


def build_specimen(config: Config) -> Specimen:
    """The specimen named by ``config.simulate.specimen``, on the config's grid."""
    return BUILDERS[config.simulate.specimen](config)
