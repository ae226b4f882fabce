"""Algorithm 1 of the PUMA paper as one function: ``puma_patch``.

Given the cached v = H^-1 grad C (the "HVP" of the paper, equation 9):

1. psi for D_mk and D_up by one forward-mode pass each (equation 9);
2. lambda* from equation 10 (exact single-residual solver);
3. b = sum_k grad L_k - sum_j lambda_j grad L_j by one backward pass;
4. Phi = (H + dI)^-1 b (equation 12, both projections in one solve by linearity);
5. theta' = theta + eta Phi (equation 11) at a given eta, and the change of C
   it makes on the check records (forward passes only).

This is the paper's single step in its own units, as ``calibrate`` (Algorithm 3)
uses it with its own eta grid. PUMA's removal (natural units, the one-sided eta
walk, re-linearised steps) is ``removal.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from unlearn_cli.influence.criteria import Criterion, Objective
from unlearn_cli.influence.reweight import reweight
from unlearn_cli.influence.scores import FunctionalModel, criterion_value, psi, weighted_grad
from unlearn_cli.influence.settings import PatchSettings
from unlearn_cli.influence.solvers.base import Solver, relative_residual
from unlearn_cli.ops.progress import Progress


@dataclass
class PatchResult:
    params: dict[str, torch.Tensor]   # theta'
    direction: torch.Tensor           # Phi_mk - Phi_up (flat)
    eta: float
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def puma_patch(
    fmodel: FunctionalModel,
    objective: Objective,
    criterion: Criterion,
    solver: Solver,
    v: torch.Tensor,
    forget: tuple[torch.Tensor, torch.Tensor],
    upweight: tuple[torch.Tensor, torch.Tensor],
    check: tuple[torch.Tensor, torch.Tensor],
    settings: PatchSettings,
    residual_matvec: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Progress | None = None,
) -> PatchResult:
    """Algorithm 1 (module docstring); ``progress`` hears the psi pass (the solver reports its own)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    (x_mk, y_mk), (x_up, y_up), (x_ck, y_ck) = forget, upweight, check
    both = psi(fmodel, objective, torch.cat([x_mk, x_up]), torch.cat([y_mk, y_up]), v,
               progress=progress)  # one jvp pass
    psi_mk, psi_up = both[: len(y_mk)], both[len(y_mk):]
    timings["psi_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rw = reweight(psi_up.cpu().numpy(), psi_mk.cpu().numpy(), settings.lambda_l1, settings.lambda_l2,
                  settings.lambda_solver)
    timings["lambda_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    x_all = torch.cat([x_mk, x_up])
    y_all = torch.cat([y_mk, y_up])
    lam = torch.as_tensor(rw.weights, dtype=x_all.dtype, device=x_all.device)
    w = torch.cat([torch.ones(len(y_mk), dtype=x_all.dtype, device=x_all.device), -lam])
    b = weighted_grad(fmodel, objective, x_all, y_all, w)
    timings["gradient_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    direction = solver.solve(b)
    timings["solve_s"] = time.perf_counter() - t0
    residual = None
    if residual_matvec is not None:
        t0 = time.perf_counter()
        residual = relative_residual(residual_matvec, direction, b)
        timings["residual_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    c0 = criterion_value(fmodel, criterion, fmodel.params, x_ck, y_ck)

    def change(eta: float) -> float:
        return criterion_value(fmodel, criterion, fmodel.shifted(eta * direction), x_ck, y_ck) - c0

    if settings.eta is None:  # calibrate walks its own grid; PUMA's walk is influence/removal.py's
        raise ValueError("puma_patch needs eta; choose it with removal.choose_eta or the caller's own grid")
    eta, eta_info = float(settings.eta), {"delta": None, "delta_met": None}
    measured = change(eta)
    timings["eta_s"] = time.perf_counter() - t0

    # First-order prediction of the change of C (equation 8): v^T (eta * b) = eta (sum psi_k - sum lambda psi_j).
    predicted = float(eta * (v @ b))
    info = {
        "eta": eta,
        **eta_info,
        "criterion": criterion.name,
        "criterion_before": c0,
        "criterion_change": measured,
        "criterion_change_predicted": predicted,
        "psi_forget_sum": float(psi_mk.sum()),
        "lambda": {
            "solver": rw.solver,
            "n": int(len(rw.weights)),
            "nonzero": rw.nonzero,
            "sparsity": 1.0 - rw.nonzero / max(len(rw.weights), 1),
            "residual_scaled": rw.residual,
            "objective": rw.objective,
            "l1": settings.lambda_l1,
            "l2": settings.lambda_l2,
            "sum": float(rw.weights.sum()),
            "max_abs": float(np.abs(rw.weights).max(initial=0.0)),
        },
        "step_norm": float(eta * direction.norm()),
        "solve_residual": residual,
        **solver.info,
    }
    if residual is not None and not math.isfinite(residual):
        info["solve_residual"] = None
    return PatchResult(fmodel.shifted(eta * direction), direction, eta, info, timings)
