"""Conjugate gradients, plain or preconditioned, that stop on the TRUE residual.

The products run in the model's float32, but the Krylov vectors (x, r, p, z)
and their dot products are float64: the recursive residual r_k = r_{k-1} -
alpha A p drifts from b - A x in float32 (on the mnist-5k cnn CG claimed
1e-8 where the true residual was 5.9e-7). So the true residual b - A x is
computed every ``RECHECK`` iterations, whenever the recursion claims the
tolerance, and at the iteration limit; only it stops the iteration, and the
iterate with the smallest one is returned and reported. Products in float32
put a floor under the true residual: when a check finds the recursion more
than 1/``GAP`` times below the truth, rounding (not the iteration) sets what
is left, so the solve stops as ``stalled`` instead of running on.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from unlearn_cli.errors import BadInput

Operator = Callable[[torch.Tensor], torch.Tensor]

RECHECK = 10   # iterations between true-residual checks (one extra product each)
GAP = 0.1      # a recursive residual this far below the true one: the products' rounding dominates


def conjugate_gradients(matvec: Operator, b: torch.Tensor, tol: float, maxiter: int,
                        precondition: Operator | None = None,
                        tick: Callable[[], None] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """x with ||A x - b|| / ||b|| <= tol if reachable, and what the solve did.

    ``matvec`` and ``precondition`` take and return vectors in b's dtype. The info keys:
    ``solver_residual`` (true relative residual of the returned x), ``solver_converged``
    (it is <= tol), ``solver_iterations``, ``solver_stop`` (tolerance, stalled or maxiter).
    """
    dtype = b.dtype
    A = (lambda v: matvec(v.to(dtype)).double())
    M = (lambda v: v) if precondition is None else (lambda v: precondition(v.to(dtype)).double())
    b64 = b.double()
    b_norm = float(b64.norm())
    if b_norm == 0:
        return torch.zeros_like(b), _info(0.0, True, 0, "tolerance")
    x = torch.zeros_like(b64)
    r = b64.clone()
    z = M(r)
    p = z.clone()
    rz = float(r @ z)
    best_x, best, stop, it = x, 1.0, "maxiter", 0
    for it in range(1, maxiter + 1):
        if tick is not None:
            tick()
        Ap = A(p)
        curv = float(p @ Ap)
        if curv <= 0:
            raise BadInput(f"CG met non-positive curvature ({curv:.3g}) at iteration {it}; "
                           "raise --set damping= or use --set curvature=ggn")
        alpha = rz / curv
        x = x + alpha * p
        r -= alpha * Ap
        recursive = float(r.norm()) / b_norm
        if recursive <= tol or it % RECHECK == 0 or it == maxiter:
            residual = float((b64 - A(x)).norm()) / b_norm
            if residual < best:
                best_x, best = x, residual
            if residual <= tol:
                stop = "tolerance"
                break
            if not recursive > GAP * residual:  # rounding, not the iteration, now sets what is left
                stop = "stalled"
                break
        z = M(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return best_x.to(dtype), _info(best, best <= tol, it, stop)


def _info(residual: float, converged: bool, iterations: int, stop: str) -> dict[str, Any]:
    return {"solver_residual": residual, "solver_converged": bool(converged),
            "solver_iterations": iterations, "solver_stop": stop}
