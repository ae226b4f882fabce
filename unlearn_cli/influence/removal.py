"""PUMA's removal in natural units, as re-linearised Newton steps (``puma_remove``).

Units. The model minimised J(theta) = (1/n) sum_i L_i + wd/2 ||theta||^2 over
the n records it stands on. Giving the k marked records weight 1 - eta and the
re-weight sample D_up weights 1 + lambda_j (equation 10) makes the objective
J_eta = (1/W) sum_i w_i L_i + wd/2 ||theta||^2 with W = sum_i w_i. At the
trained optimum sum_i grad L_i = -n wd theta, so one Newton step on J_eta is

    theta' = theta + H^-1 [ (eta sum_k grad L_k - sum_j lambda_j grad L_j) / W + (n - W)/W wd theta ]

with H the damped curvature of J. eta = 1 is the influence-function removal
step (the exact Newton removal step when H is J's Hessian over the remaining
records, lambda = 0); eta > 1 pushes the marked records further, which deep
nets need because their loss is far from quadratic around memorised records.
Equations 9-12 of the paper are this step with the sum instead of the mean
and without the weight-decay term; lambda scales with eta (equation 10 is
linear in the target), so the first step is linear in eta apart from W.

Removal loss. The marked records' weight moves on a removal loss R whose
gradient replaces grad L_k in the sums over k above and below: R = L (the
paper's; eta = 1 is then exactly the Newton removal step) or, by default,
R = L - U with U = -log(1 - p_y), i.e. minus the true class's log-odds. At a
record the model fits with p_y ~ 1, grad L ~ 0 and no eta moves it; grad R's
size in the logits is ~1 at any confidence. J_eta is then
sum_{i not k} L_i + (1 - eta) sum_k L_k + eta sum_k U_k: eta = 1 removes the
records and pushes their true class down with the same weight.

Steps. The first step is linear in the model; the records' losses are not.
Further steps are Newton steps on J_s with s = max(eta, 1): the removal
itself (the marked records at weight 0) when the walk chose eta <= 1, the
amplified objective (weight 1 - eta < 0) when it found plain removal too
weak. They are re-linearised at the current weights theta_t, whose
gradient of J_s is estimated as

    (1/W) [ G_0 - sum_k g_k(theta_0) + (R/m) sum_{j in S} (g_j(theta_t) - g_j(theta_0))
            + sum_k g_k(theta_t) - s sum_k r_k(theta_t) + s sum_j lambda_j g_j(theta_t) ] + wd theta_t

where r_k = grad R_k (g_k itself with the paper's loss), G_0 = -n wd theta_0
(the sum over the records at the optimum), R the remaining records and S
their seeded sample of size m (D_up): the change of the bulk is estimated on
the sample (exact at theta_0, unbiased away from it; exact when S is all of
them). Each step is theta_{t+1} = theta_t - alpha H^-1 grad
with alpha = 1, halved up to three times while it would make C worse than the
bound allows; new gradients, psi, v and lambda at every step. With the
paper's loss, on a convex model with eta = 1 the steps converge to the
optimum without the records (the retrained model). The walk stops when a step moves theta by less than
``step_tol`` of the total move, after ``max_steps``, or when even the smallest
alpha breaks the bound.

Preservation (equation 2, one-sided). C is measured on one record set (the
criterion set: a validation split, or a sample of remaining records); the
same set gives grad C, so lambda cancels the change it checks. C may not get
*worse* by more than delta (relative to C before by default, absolute as an
option); a C that improves never stops the walk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unlearn_cli.influence.criteria import Criterion, LogOdds, Objective
from unlearn_cli.influence.eta_walk import allowed_worsening, choose_eta
from unlearn_cli.influence.reweight import reweight
from unlearn_cli.influence.scores import FunctionalModel, criterion_grad, criterion_value, psi, weighted_grad
from unlearn_cli.influence.solvers.base import Solver

Rows = tuple[torch.Tensor, torch.Tensor]


@dataclass
class RemovalProblem:
    """Everything one removal needs: the model, J, C, (H + dI)^-1 and the record sets."""

    fmodel: FunctionalModel
    objective: Objective
    criterion: Criterion
    solver: Solver
    forget: Rows          # D_mk
    upweight: Rows        # D_up: a seeded sample of the remaining records (all when small)
    criterion_set: Rows   # where C, grad C and the preservation check are taken
    n_model: int          # records the model stands on (train minus earlier removals)
    n_remaining: int      # n_model minus this request
    #: (accuracy, confidence) the forgotten records should come down to (a retrained model's, estimated);
    #: the eta walk stops at the smallest eta that reaches it instead of pushing on to the bound
    target: tuple[float, float] | None = None


@dataclass
class RemovalResult:
    params: dict[str, torch.Tensor]
    eta: float
    path: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def puma_remove(problem: RemovalProblem, settings: Any, progress: Any = None) -> RemovalResult:
    """Multi-step PUMA removal (module docstring); ``settings`` are PUMA's options."""
    run = _Run(problem, settings, progress)
    return run.go()


class _Run:
    def __init__(self, problem: RemovalProblem, settings: Any, progress: Any):
        self.p, self.s, self.progress = problem, settings, progress
        self.timings: dict[str, float] = {}
        self.extra_info: dict[str, float] = {}
        fm = problem.fmodel
        self.theta0 = fm.flat().detach()
        self.wd = float(problem.objective.weight_decay)
        (self.x_mk, self.y_mk), (self.x_up, self.y_up) = problem.forget, problem.upweight
        self.k, self.m = len(self.y_mk), len(self.y_up)
        self.bulk_scale = problem.n_remaining / max(self.m, 1)   # R/m: each sampled record stands for R/m
        # the loss whose weight the removal moves on the marked records (L itself in the paper)
        self.removal_objective = (LogOdds(problem.objective.weight_decay)
                                  if getattr(settings, "removal_loss", "cross-entropy") == "log-odds"
                                  else problem.objective)
        self.same_loss = self.removal_objective is problem.objective

    def _tick(self, name: str, t0: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def _crit(self, params) -> float:
        x, y = self.p.criterion_set
        return criterion_value(self.p.fmodel, self.p.criterion, params, x, y)

    def _fast(self) -> Solver:
        """The solver for the steps after the first: a preconditioned solver's preconditioner (EK-FAC for
        pcg). The steps' fixed point is set by the gradients, not by the solver, so an approximate inverse
        only changes how fast they get there; the first step (eta's units) uses the accurate solve."""
        return getattr(self.p.solver, "preconditioner", self.p.solver)

    def _lambda(self, fmodel: FunctionalModel, solver: Solver | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """lambda for eta = 1 at the current weights (eq. 9-10; it scales with eta): one jvp pass, one solve."""
        s = self.s
        if not s.reweight or self.m == 0:
            return np.zeros(self.m), {"solver": "off", "n": self.m, "nonzero": 0}
        t0 = time.perf_counter()
        x_c, y_c = self.p.criterion_set
        _, grad_c = criterion_grad(fmodel, self.p.criterion, x_c, y_c)
        if "grad_c_theta_cosine" not in self.extra_info:  # near +-1: grad C is mostly the weight-decay pull
            theta = fmodel.flat()
            self.extra_info["grad_c_theta_cosine"] = float(grad_c @ theta / (grad_c.norm() * theta.norm() + 1e-30))
        v = (solver or self.p.solver).solve(grad_c)
        if self.same_loss:
            both = psi(fmodel, self.p.objective, torch.cat([self.x_mk, self.x_up]), torch.cat([self.y_mk, self.y_up]),
                       v, progress=self.progress)
            psi_mk, psi_up = both[: self.k], both[self.k:]
        else:
            psi_mk = psi(fmodel, self.removal_objective, self.x_mk, self.y_mk, v)
            psi_up = psi(fmodel, self.p.objective, self.x_up, self.y_up, v, progress=self.progress)
        self._tick("psi_s", t0)
        t0 = time.perf_counter()
        rw = reweight(psi_up.cpu().numpy(), psi_mk.cpu().numpy(), s.lambda_l1, s.lambda_l2, s.lambda_solver)
        self._tick("lambda_s", t0)
        return rw.weights, {"solver": rw.solver, "n": int(len(rw.weights)), "nonzero": rw.nonzero,
                            "sum": float(rw.weights.sum()), "max_abs": float(np.abs(rw.weights).max(initial=0.0)),
                            "psi_forget_sum": float(psi_mk.sum())}

    def _grads(self, fmodel: FunctionalModel, w_mk: float, w_up: np.ndarray, removal: float = 0.0) -> torch.Tensor:
        """sum_k (w_mk g_k + removal r_k) + sum_j w_up_j g_j at ``fmodel``'s weights, r_k the gradient of the
        removal loss (g_k itself unless ``removal_loss`` says otherwise): one backward pass (two then)."""
        t0 = time.perf_counter()
        dtype = self.x_mk.dtype if self.x_mk.is_floating_point() else torch.float32
        if self.same_loss:
            w_mk, removal = w_mk + removal, 0.0
        w = torch.cat([torch.full((self.k,), float(w_mk), dtype=dtype),
                       torch.as_tensor(w_up, dtype=dtype)]).to(self.x_mk.device)
        g = weighted_grad(fmodel, self.p.objective, torch.cat([self.x_mk, self.x_up]),
                          torch.cat([self.y_mk, self.y_up]), w)
        if removal and self.k:
            g = g + weighted_grad(fmodel, self.removal_objective, self.x_mk, self.y_mk,
                                  torch.full((self.k,), float(removal), dtype=dtype, device=self.x_mk.device))
        self._tick("gradient_s", t0)
        return g

    def _solve(self, b: torch.Tensor, solver: Solver | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = (solver or self.p.solver).solve(b)
        self._tick("solve_s", t0)
        return out

    def _weight_total(self, eta: float, lam: np.ndarray) -> float:
        return self.p.n_model - eta * self.k + eta * float(lam.sum())

    def go(self) -> RemovalResult:
        p, s, fm = self.p, self.s, self.p.fmodel
        c0 = self._crit(fm.params)
        bound = allowed_worsening(c0, s)
        lam1, lam_info = self._lambda(fm)
        # First step, linear in eta apart from W: Phi = H^-1 (sum_k g_k - sum_j lambda_j g_j), omega = H^-1 wd theta.
        phi = self._solve(self._grads(fm, 0.0, -lam1, removal=1.0))
        omega = self._solve(self.wd * self.theta0) if self.wd else torch.zeros_like(phi)

        def first_step(eta: float) -> torch.Tensor:
            w = self._weight_total(eta, lam1)
            return (eta / w) * phi + ((p.n_model - w) / w) * omega

        t0 = time.perf_counter()
        if s.eta is not None:
            eta, walk = float(s.eta), {"eta_tried": {}, "eta_position": "given"}
        else:
            reached = None if p.target is None else (lambda e: self._meets_target(self._forget_stats(first_step(e))))
            eta, walk = choose_eta(lambda e: self._crit(fm.shifted(first_step(e))) - c0, bound, s, reached)
        self._tick("eta_s", t0)
        if eta is None:
            return self._refused(c0, bound, walk, lam_info)
        delta = first_step(eta)
        path = [self._point(0, delta, c0, eta=eta)]
        if not walk.get("target_reached"):   # one step got there: further steps would only over-remove
            delta = self._more_steps(delta, eta, lam1, c0, bound, path, stop_at_target=s.eta is None)
        info = {"eta": eta, **walk, "criterion": p.criterion.name, "criterion_before": c0,
                "criterion_change": path[-1]["criterion_change"], "allowed_worsening": bound,
                "delta": s.delta, "delta_mode": s.delta_mode, "delta_met": True, "steps": len(path),
                "lambda": lam_info, "step_norm": float(delta.norm()), **self.extra_info,
                **p.solver.info}
        return RemovalResult(fm.shifted(delta), eta, path, info, self.timings)

    def _refused(self, c0: float, bound: float, walk: dict[str, Any], lam_info: dict[str, Any]) -> RemovalResult:
        """Even the smallest eta worsens C past the bound: nothing is changed and ``delta_met`` is False."""
        fm = self.p.fmodel
        smallest = min(walk["eta_tried"].items(), key=lambda kv: float(kv[0]))
        info = {"eta": None, **walk, "criterion": self.p.criterion.name, "criterion_before": c0,
                "criterion_change": smallest[1], "allowed_worsening": bound, "delta": self.s.delta,
                "delta_mode": self.s.delta_mode, "delta_met": False, "steps": 0, "lambda": lam_info,
                "step_norm": 0.0, **self.extra_info}
        return RemovalResult(dict(fm.params), float(smallest[0]), [], info, self.timings)

    def _forget_stats(self, delta: torch.Tensor) -> dict[str, float]:
        """The forgotten records' loss, accuracy and mean true-class confidence at theta + delta: one forward pass."""
        if not self.k:
            return {"forget_loss": 0.0, "forget_accuracy": 0.0, "forget_confidence": 0.0}
        with torch.no_grad():
            logits = self.p.fmodel(self.p.fmodel.shifted(delta), self.x_mk)
            probs = torch.softmax(logits, 1)
        return {"forget_loss": float(torch.nn.functional.cross_entropy(logits, self.y_mk)),
                "forget_accuracy": float((probs.argmax(1) == self.y_mk).float().mean()),
                "forget_confidence": float(probs.gather(1, self.y_mk[:, None]).mean())}

    def _meets_target(self, stats: dict[str, float]) -> bool:
        """Have the forgotten records' accuracy and mean true-class confidence come down to the target?"""
        return stats["forget_accuracy"] <= self.p.target[0] and stats["forget_confidence"] <= self.p.target[1]

    def _point(self, step: int, delta: torch.Tensor, c0: float, **how: float) -> dict[str, Any]:
        return {"step": step, **how, "criterion_change": self._crit(self.p.fmodel.shifted(delta)) - c0,
                **self._forget_stats(delta), "move": float(delta.norm())}

    def _more_steps(self, delta: torch.Tensor, eta: float, lam1: np.ndarray, c0: float, bound: float,
                    path: list[dict[str, Any]], stop_at_target: bool = True) -> torch.Tensor:
        """Re-linearised Newton steps on J_max(eta, 1) (module docstring) until converged, capped or bounded.

        Each step is the Newton step on that objective, taken whole when C stays within the bound, else
        halved up to three times (backtracking), else not taken.
        """
        p, s = self.p, self.s
        if s.max_steps <= 1:
            return delta
        fm0 = p.fmodel
        # G_0 - sum_k g_k(0) - (R/m) sum_S g_j(0), with G_0 = -n wd theta_0 at the trained optimum
        base = -p.n_model * self.wd * self.theta0 + self._grads(fm0, -1.0, np.full(self.m, -self.bulk_scale))
        strength = max(eta, 1.0)   # J_1, the removal itself, or J_eta when the walk found it too weak
        for step in range(1, s.max_steps):
            at = fm0.moved(delta)
            lam, _ = self._lambda(at, self._fast())
            # marked records at weight 1 - strength; sum_S ((R/m) + strength lambda_j) g_j(t): the bulk's change
            # plus the re-weighting
            g_t = self._grads(at, 1.0, self.bulk_scale + strength * lam, removal=-strength)
            w = self._weight_total(strength, lam)
            grad = (base + g_t) / w + self.wd * (self.theta0 + delta)
            newton = -self._solve(grad, self._fast())
            if not torch.isfinite(newton).all():
                break
            for alpha in (1.0, 0.5, 0.25, 0.125):
                point = self._point(step, delta + alpha * newton, c0, alpha=alpha)
                if point["criterion_change"] <= bound:
                    break
            else:
                break
            delta = delta + alpha * newton
            path.append(point)
            if alpha * float(newton.norm()) <= s.step_tol * float(delta.norm()):
                break
            if stop_at_target and p.target is not None and self._meets_target(point):
                break
        return delta
