"""Compute stages that see the configured view of each frame (``stream.roi``, ``stream.bin``).

The innermost wrapper of the real stages (pixel cleaning and the dose, which need the raw
frame, come first): pop-out and refinement get the cropped, binned frame and a config whose
``sample.pixel_size`` is the binned pixel's (:func:`stream3d.view.compute_config`). Both
wrappers are plain picklable objects, so a pop-out task runs the same on any dask worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream3d.view import compute_config, view_for


class ViewPopout:
    """``popout(view(frame), compute_config(config))``."""

    def __init__(self, popout: Any) -> None:
        self.popout = popout

    def __call__(self, frame: np.ndarray, config: Any, **kwargs: Any) -> Any:
        view = view_for(config, np.shape(frame))
        if view.whole:
            return self.popout(frame, config, **kwargs)
        return self.popout(view.apply(frame), compute_config(config), **kwargs)


class ViewRefiner:
    """A refiner built with the binned pixel size that refines the view of each raw frame."""

    def __init__(self, factory: Any, config: Any, device: Any, **kwargs: Any) -> None:
        self.config = config
        self.refiner = factory(compute_config(config), device, **kwargs)

    def refine(self, frame: np.ndarray, popout: Any) -> Any:
        view = view_for(self.config, np.shape(frame))
        return self.refiner.refine(frame if view.whole else view.apply(frame), popout)

    def use_config(self, config: Any) -> None:
        """The next frames' config (raw view), given to the real refiner as compute sees it."""
        self.config = config
        self.refiner.use_config(compute_config(config))

    def __getattr__(self, name: str) -> Any:  # warm state etc. of the real refiner
        refiner = self.__dict__.get("refiner")
        if refiner is None:
            raise AttributeError(name)
        return getattr(refiner, name)


class ViewRefinerFactory:
    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def __call__(self, config: Any, device: Any = None, **kwargs: Any) -> Any:
        """The refiner; ``kwargs`` (e.g. where tiles run) go to the real factory."""
        if config.stream.bin == 1 and not config.stream.roi:
            return self.factory(config, device, **kwargs)
        return ViewRefiner(self.factory, config, device, **kwargs)
