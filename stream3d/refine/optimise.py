"""The gradient loop: Adam with a decaying step, projection after every step, stopping rules.

Stops, in this order of precedence, when the data loss reaches the noise level (discrepancy
principle: going lower fits noise and texture), when the loss or a gradient is not finite
("nan"), when a step raised the objective far above the best so far ("diverged"), when the
objective stopped improving ("plateau"), or when the iteration budget is spent. The best state
seen (lowest objective) is what the parameterisation holds on return.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from stream3d.refine.parameterisations import Parameterisation

#: Objective of a volume: (data loss, data loss + regularisers), both scalar tensors.
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class StopRules:
    """When the loop ends (see the module docstring)."""

    max_iterations: int
    noise_level: float = 0.0  # data loss of the right answer; 0 disables the rule
    noise_factor: float = 1.0  # stop once data loss <= noise_factor x noise_level
    plateau_window: int = 5  # iterations compared for the plateau rule
    plateau_tolerance: float = 1e-3  # relative improvement over the window that counts as none
    divergence: float = 10.0  # objective > divergence x best -> diverged


@dataclass
class LoopReport:
    iterations: int = 0
    status: str = "max-iterations"
    loss_history: list[float] = field(default_factory=list)  # data loss before each step
    best_loss: float = math.inf  # data loss of the state kept
    evaluations: int = 0


def _finite_grads(groups: list[dict]) -> bool:
    return all(t.grad is None or bool(torch.isfinite(t.grad).all())
               for group in groups for t in group["params"])


def optimise(param: Parameterisation, groups: list[dict], objective: Objective, *,
             decay: float, rules: StopRules,
             callback: Callable[[int, Parameterisation], None] | None = None,
             stop: Callable[[int, Parameterisation], str | None] | None = None) -> LoopReport:
    """Minimise ``objective(param.volume())`` with projected Adam over ``groups``.

    ``groups`` are torch optimiser parameter groups, {"params": [tensors], "lr": step}, the
    step in the tensors' units per iteration (Å for slabs, V for voxels), multiplied by
    ``decay`` every iteration. ``callback(iteration, param)`` runs after every
    accepted step (for progress or ground-truth tracking); ``stop(iteration, param)`` may end
    the loop after a step by returning a status (e.g. a stage-specific convergence test).
    """
    report = LoopReport()
    optimiser = torch.optim.Adam(groups)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=decay)
    best_total, best_state = math.inf, param.snapshot()
    recent: list[float] = []
    iteration = 0
    while True:
        optimiser.zero_grad(set_to_none=True)
        try:
            data, total = objective(param.volume())
        except ValueError:  # the forward model refuses NaN / inf in the volume
            report.status = "nan"
            break
        report.evaluations += 1
        data_value, total_value = float(data.detach()), float(total.detach())
        if not (math.isfinite(data_value) and math.isfinite(total_value)):
            report.status = "nan"
            break
        if total_value > rules.divergence * best_total:
            report.status = "diverged"
            break
        report.loss_history.append(data_value)
        if total_value < best_total:
            best_total, best_state, report.best_loss = total_value, param.snapshot(), data_value
        if rules.noise_level > 0 and data_value <= rules.noise_factor * rules.noise_level:
            report.status = "noise-level"
            break
        verdict = stop(iteration, param) if stop is not None else None
        if verdict:
            report.status = verdict
            break
        recent.append(total_value)
        if len(recent) > rules.plateau_window:
            old = recent.pop(0)
            if old - total_value <= rules.plateau_tolerance * abs(old):
                report.status = "plateau"
                break
        if iteration >= rules.max_iterations:
            report.status = "max-iterations"
            break
        total.backward()
        if not _finite_grads(groups):
            report.status = "nan"
            break
        optimiser.step()
        scheduler.step()
        param.project()
        iteration += 1
        report.iterations = iteration
        if callback is not None:
            callback(iteration, param)
    param.restore(best_state)
    return report
