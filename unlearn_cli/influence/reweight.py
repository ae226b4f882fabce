"""The re-weighting problem of PUMA (equation 10), solved exactly.

    lambda* = argmin_l (sum_j l_j psi_j - s)^2 + a ||l||_1 + b ||l||_2^2,   s = sum_k psi_k

The psi are scalars, so the data term has a single residual r = psi^T l - s.
For a fixed r the optimality conditions give every weight in closed form,
l_j(r) = -soft(2 r psi_j, a) / (2 b), and r itself solves a one-dimensional,
strictly increasing, piecewise-linear equation whose breakpoints are
a / (2 |psi_j|). Sorting them finds the root exactly in O(n log n): no
iterations, no tolerance. The paper's SLSQP is kept as a reference.

psi is divided by its root-mean-square over D_up first so that ``l1`` and
``l2`` are scale-free (the same defaults work for any criterion and model);
the minimiser of the scaled problem is reported with the objective evaluated in
those units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unlearn_cli.errors import BadInput


@dataclass
class Reweighting:
    weights: np.ndarray     # lambda_j for each record of D_up
    residual: float         # psi^T lambda - s (scaled units): the first-order change of C left
    objective: float        # value of equation 10 (scaled units)
    scale: float            # rms of psi over D_up used for scaling
    nonzero: int            # records with lambda_j != 0
    solver: str


def objective_value(psi: np.ndarray, target: float, weights: np.ndarray, l1: float, l2: float) -> float:
    r = float(psi @ weights - target)
    return r * r + l1 * float(np.abs(weights).sum()) + l2 * float(weights @ weights)


def _scaled(psi_up: np.ndarray, psi_mk: np.ndarray) -> tuple[np.ndarray, float, float]:
    psi_up = np.asarray(psi_up, dtype=np.float64)
    scale = float(np.sqrt(np.mean(psi_up**2))) if len(psi_up) else 0.0
    if not np.isfinite(scale) or scale == 0.0:
        raise BadInput("every re-weight candidate has zero influence on the criterion; nothing to re-weight with")
    return psi_up / scale, float(np.sum(psi_mk)) / scale, scale


def solve_exact(psi: np.ndarray, target: float, l1: float, l2: float) -> np.ndarray:
    """Exact minimiser of (psi^T l - target)^2 + l1 ||l||_1 + l2 ||l||^2 (l2 > 0)."""
    if l2 <= 0:
        raise BadInput("lambda_l2 must be > 0 for the exact solver (it makes the minimiser unique)")
    if l1 < 0:
        raise BadInput("lambda_l1 must be >= 0")
    a, b = float(l1), float(l2)
    mag = np.abs(psi)
    if target == 0.0 or mag.max(initial=0.0) == 0.0:
        return np.zeros_like(psi)
    # With t = |r|: t + H(t)/(2b) = |target|, H(t) = sum_j |psi_j| max(2 t |psi_j| - a, 0).
    order = np.argsort(-mag)
    m_sorted = mag[order]
    breaks = np.where(m_sorted > 0, a / (2.0 * np.maximum(m_sorted, 1e-300)), np.inf)
    sq = np.cumsum(m_sorted**2)
    ab = np.cumsum(m_sorted)
    goal = abs(target)
    t = goal  # no record active: t = |target| (only when the first breakpoint is beyond it)
    if breaks[0] < goal:
        # With the top m records active: t (1 + sq_m / b) = goal + a ab_m / (2b).
        t_m = (goal + a * ab / (2.0 * b)) / (1.0 + sq / b)
        upper = np.append(breaks[1:], np.inf)
        ok = (t_m >= breaks) & (t_m <= upper)
        m = int(np.argmax(ok)) if ok.any() else len(psi) - 1
        t = float(t_m[m])
    r = -np.sign(target) * t
    z = 2.0 * r * psi
    return -np.sign(z) * np.maximum(np.abs(z) - a, 0.0) / (2.0 * b)


def solve_slsqp(psi: np.ndarray, target: float, l1: float, l2: float, maxiter: int = 500) -> np.ndarray:
    """The paper's choice: SLSQP on the split l = u - w, u, w >= 0 (smooth l1). Slow; reference only."""
    from scipy.optimize import minimize

    n = len(psi)

    def fun(z):
        u, w = z[:n], z[n:]
        lam = u - w
        r = psi @ lam - target
        value = r * r + l1 * z.sum() + l2 * lam @ lam
        g_lam = 2 * r * psi + 2 * l2 * lam
        return value, np.concatenate([g_lam + l1, -g_lam + l1])

    result = minimize(fun, np.zeros(2 * n), jac=True, method="SLSQP", bounds=[(0, None)] * (2 * n),
                      options={"maxiter": maxiter, "ftol": 1e-15})
    return result.x[:n] - result.x[n:]


def reweight(psi_up: np.ndarray, psi_mk: np.ndarray, l1: float, l2: float, solver: str = "exact") -> Reweighting:
    """Solve equation 10 for the remaining records' weights."""
    psi, target, scale = _scaled(psi_up, psi_mk)
    if solver == "exact":
        weights = solve_exact(psi, target, l1, l2)
    elif solver == "slsqp":
        weights = solve_slsqp(psi, target, l1, l2)
    else:
        raise BadInput(f"lambda_solver must be exact or slsqp, got '{solver}'")
    return Reweighting(
        weights=weights,
        residual=float(psi @ weights - target),
        objective=objective_value(psi, target, weights, l1, l2),
        scale=scale,
        nonzero=int(np.count_nonzero(weights)),
        solver=solver,
    )
