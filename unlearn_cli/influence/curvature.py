"""Inverse curvature-vector products (iHVPs) for influence functions.

The curvature is that of the training objective J (mean cross-entropy plus the
recipe's L2 term) at the trained weights, plus a reported ``damping``:

    solve(b) = (H + (weight_decay + damping) I)^-1 b

``H`` is the Gauss-Newton matrix (``curvature=ggn``, default: positive
semi-definite, and what K-FAC approximates) or the true Hessian
(``curvature=hessian``: has small negative eigenvalues on a trained net, so it
needs enough damping). Solvers:

* ``exact``: the explicit matrix, built by batched Jacobians (GGN = sum_i
  (B_i J_i)^T (B_i J_i) with B_i B_i^T = diag(p_i) - p_i p_i^T) or by batched
  Hessian-vector products, never by ``torch.func.hessian``; then Cholesky.
* ``cg``: conjugate gradients on matrix-free curvature-vector products.
* ``lissa``: the stochastic Neumann recursion of Koh & Liang (2017), with
  divergence detection.
* ``kfac`` / ``ekfac``: Kronecker-factored GGN per Linear/Conv2d layer
  (Martens & Grosse 2015; Grosse & Martens 2016), with EK-FAC's eigenvalue
  correction (George et al. 2018); BatchNorm affine parameters get a diagonal.
  Built once per checkpoint and cached in a sidecar, so later requests pay no
  curvature cost.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.scores import FunctionalModel, chunks

SOLVERS = ("auto", "exact", "cg", "lissa", "kfac", "ekfac")
DUAL_MAX_ENTRIES = 50_000_000  # rows x parameters of U held for the dual form (400 MB in float64)
EXACT_MAX_PARAMS = 5000  # explicit matrix + Cholesky is exact and cheap below this (DESIGN.md)


@dataclass
class CurvatureSettings:
    solver: str = "auto"
    curvature: str = "ggn"
    damping: float = 1e-3
    weight_decay: float = 0.0
    cg_tol: float = 1e-8
    cg_maxiter: int = 500
    lissa_depth: int = 5000
    lissa_scale: float | None = None
    lissa_batch: int = 0          # 0 = every record in each step (deterministic)
    lissa_repeats: int = 1
    sample: int = 0               # records used to build the curvature; 0 = all train records
    fisher_samples: int = 1       # kfac/ekfac: labels drawn per record (0 = exact, one pass per class)
    ekfac_sample: int = 1000      # ekfac: records for the eigenvalue correction; 0 = all
    seed: int = 0

    def resolved_solver(self, n_params: int) -> str:
        if self.solver == "auto":
            return "exact" if n_params <= EXACT_MAX_PARAMS else "ekfac"
        return self.solver

    @property
    def total_damping(self) -> float:
        return float(self.weight_decay + self.damping)

    def key(self, n_params: int) -> dict[str, Any]:
        """Everything the cached factors depend on."""
        solver = self.resolved_solver(n_params)
        keep = {"solver": solver, "curvature": self.curvature, "damping": self.damping,
                "weight_decay": self.weight_decay, "sample": self.sample, "seed": self.seed}
        if solver == "cg":
            keep.update(cg_tol=self.cg_tol, cg_maxiter=self.cg_maxiter)
        if solver in ("kfac", "ekfac"):
            keep.update(fisher_samples=self.fisher_samples)
            if solver == "ekfac":
                keep.update(ekfac_sample=self.ekfac_sample)
        if solver == "lissa":
            keep.update(lissa_depth=self.lissa_depth, lissa_scale=self.lissa_scale,
                        lissa_batch=self.lissa_batch, lissa_repeats=self.lissa_repeats)
        return keep


# -- matrix-free curvature-vector products ----------------------------------

def ggn_matvec(fmodel: FunctionalModel, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """(1/N) sum_i J_i^T A_i J_i v with A_i = diag(p_i) - p_i p_i^T (CE's output Hessian).

    J v comes from the double-backward trick (the vjp of a vjp is linear in its
    cotangent) with plain autograd: torch.func's transforms cost ~1.4 s of
    one-time set-up per process on a small CNN, more than the product itself.
    Cotangents enter as ``(z * u).sum()`` rather than ``grad_outputs=``: torch
    checks a ``grad_outputs`` tensor through its symbolic-shapes module, whose
    first import (sympy) costs ~0.6 s per process.
    """
    params = {k: p.detach().requires_grad_(True) for k, p in fmodel.params.items()}
    plist = list(params.values())
    tangent = list(fmodel.unflat(v).values())
    out = torch.zeros_like(v)
    n = len(y)
    for sl in chunks(n, chunk):
        z = fmodel(params, x[sl])
        u = torch.zeros_like(z, requires_grad=True)
        jt_u = torch.autograd.grad((z * u).sum(), plist, create_graph=True)
        (jv,) = torch.autograd.grad(sum((a * t).sum() for a, t in zip(jt_u, tangent)), u)
        p = torch.softmax(z.detach(), 1)
        w = p * jv - p * (p * jv).sum(1, keepdim=True)
        g = torch.autograd.grad((z * (w / n)).sum(), plist, allow_unused=True)
        out += torch.cat([(gi if gi is not None else torch.zeros_like(pi)).reshape(-1) for gi, pi in zip(g, plist)])
    return out


def hessian_matvec(fmodel: FunctionalModel, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """H v for the mean cross-entropy, by forward-over-reverse AD."""
    tangent = fmodel.unflat(v)
    out = torch.zeros_like(v)
    n = len(y)
    for sl in chunks(n, chunk):
        xb, yb = x[sl], y[sl]

        def loss(params):
            return F.cross_entropy(fmodel(params, xb), yb, reduction="sum") / n

        _, hv = jvp(grad(loss), (fmodel.params,), (tangent,))
        out += fmodel.flat(hv)
    return out


def curvature_matvec(settings: CurvatureSettings, fmodel, x, y) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H + total_damping I) v on the given records."""
    base = ggn_matvec if settings.curvature == "ggn" else hessian_matvec
    d = settings.total_damping
    return lambda v: base(fmodel, x, y, v) + d * v


# -- explicit matrices ---------------------------------------------------------

def ggn_rows(fmodel: FunctionalModel, x: torch.Tensor, chunk: int = 512) -> Iterator[torch.Tensor]:
    """Blocks of rows U (float64) with sum_i U_i^T U_i = sum_i J_i^T (diag p_i - p_i p_i^T) J_i.

    The rows are per-record pseudo-loss gradients taken through layer hooks (see
    kfac.py); layers the hooks do not know fall back to batched Jacobians
    (vmap(jacrev)), which are slower.
    """
    from unlearn_cli.influence.kfac import pseudo_gradients

    P = fmodel.size
    n = len(x)
    slices = list(chunks(n, chunk))
    if not slices:
        return
    try:  # unknown layers show on the first block
        first = pseudo_gradients(fmodel, x[slices[0]]).reshape(-1, P).double()
    except BadInput:
        first = None
    if first is not None:
        yield first
        for sl in slices[1:]:
            yield pseudo_gradients(fmodel, x[sl]).reshape(-1, P).double()
        return
    from torch.func import jacrev

    def logits_one(params, xi):
        return fmodel(params, xi[None])[0]

    jac_fn = vmap(jacrev(logits_one), in_dims=(None, 0))
    for sl in chunks(n, chunk // 2):
        xb = x[sl]
        with torch.no_grad():
            p = torch.softmax(fmodel(fmodel.params, xb), 1).double()
        jac = jac_fn(fmodel.params, xb)
        J = torch.cat([jac[k].reshape(len(xb), p.shape[1], -1) for k in fmodel.params], 2).double()
        sq = p.sqrt()
        B = torch.diag_embed(sq) - sq[:, :, None] * p[:, None, :]
        yield (B @ J).reshape(-1, P)


def dense_ggn(fmodel: FunctionalModel, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """(1/N) sum_i U_i^T U_i in float64: exactly (1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i."""
    P = fmodel.size
    G = torch.zeros(P, P, dtype=torch.float64, device=x.device)
    for U in ggn_rows(fmodel, x, chunk):
        G += U.T @ U
    return G / len(x)


def dense_hessian(fmodel: FunctionalModel, x: torch.Tensor, y: torch.Tensor, columns: int = 128) -> torch.Tensor:
    """The Hessian of mean CE, column blocks at a time by vmapped HVPs (far cheaper than func.hessian)."""
    P = fmodel.size
    eye = torch.eye(P, dtype=x.dtype, device=x.device)
    blocks = [vmap(lambda v: hessian_matvec(fmodel, x, y, v))(eye[sl]) for sl in chunks(P, columns)]
    H = torch.cat(blocks).double()
    return (H + H.T) / 2


# -- solvers ---------------------------------------------------------------------

class Solver(ABC):
    """Applies (H + d I)^-1; ``state`` is what the sidecar cache stores."""

    name = ""

    def __init__(self, settings: CurvatureSettings):
        self.settings = settings
        self.info: dict[str, Any] = {}

    @abstractmethod
    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """(H + d I)^-1 b."""

    def state(self) -> dict[str, torch.Tensor]:
        return {}


class ExactSolver(Solver):
    """(H + dI)^-1 b from a Cholesky factor, in float64.

    With the GGN, H = U^T U / N for the N*C rows U of ``ggn_rows``. When there are
    fewer rows than parameters (a few hundred records of a wide MLP), the
    Woodbury identity gives the same solve from an (NC x NC) system instead of a
    (P x P) one: (U^T U + dI)^-1 = (I - U^T (UU^T + dI)^-1 U) / d with U scaled
    by 1/sqrt(N). ``form`` forces one or the other ("auto" picks the smaller).
    """

    name = "exact"

    def __init__(self, settings, fmodel, x, y, factor: torch.Tensor | None = None, form: str = "auto",
                 rows: torch.Tensor | None = None):
        super().__init__(settings)
        self.rows: torch.Tensor | None = rows   # U / sqrt(N) in the dual form (with its factor, from state())
        d = settings.total_damping
        if factor is None and settings.curvature == "ggn" and form != "primal" and d > 0:
            rows = len(x) * int(fmodel(fmodel.params, x[:1]).shape[1])
            if form == "dual" or (rows < fmodel.size and rows * fmodel.size <= DUAL_MAX_ENTRIES):
                U = torch.cat(list(ggn_rows(fmodel, x))) / math.sqrt(len(x))
                K = U @ U.T
                K.diagonal().add_(d)
                self.rows, factor = U, torch.linalg.cholesky(K)
        if factor is None:
            M = dense_ggn(fmodel, x) if settings.curvature == "ggn" else dense_hessian(fmodel, x, y)
            M.diagonal().add_(d)
            factor, info = torch.linalg.cholesky_ex(M)
            if int(info) != 0:
                low = float(torch.linalg.eigvalsh(M)[0])
                raise BadInput(
                    f"the damped {settings.curvature} is not positive definite (smallest eigenvalue {low:.3g}); "
                    f"raise --set damping= above {abs(low) + settings.damping:.3g} or use --set curvature=ggn"
                )
        self.factor = factor
        self.form = "dual" if self.rows is not None else "primal"

    def solve_many(self, B: torch.Tensor) -> torch.Tensor:
        """(H + dI)^-1 B for a (P, k) block of right-hand sides, in float64."""
        B = B.double()
        if self.rows is None:
            return torch.cholesky_solve(B, self.factor)
        t = torch.cholesky_solve(self.rows @ B, self.factor)
        return (B - self.rows.T @ t) / self.settings.total_damping

    def solve(self, b):
        return self.solve_many(b[:, None])[:, 0].to(b.dtype)

    def state(self):
        return {"factor": self.factor} if self.rows is None else {"factor": self.factor, "rows": self.rows}


class CGSolver(Solver):
    name = "cg"

    def __init__(self, settings, matvec):
        super().__init__(settings)
        self.matvec = matvec

    def solve(self, b):
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = float(r @ r)
        b_norm = math.sqrt(float(b @ b)) or 1.0
        it = 0
        for it in range(1, self.settings.cg_maxiter + 1):
            Ap = self.matvec(p)
            curv = float(p @ Ap)
            if curv <= 0:
                raise BadInput(
                    f"CG met non-positive curvature ({curv:.3g}) at iteration {it}; "
                    "raise --set damping= or use --set curvature=ggn"
                )
            alpha = rs / curv
            x += alpha * p
            r -= alpha * Ap
            rs_new = float(r @ r)
            if math.sqrt(rs_new) / b_norm < self.settings.cg_tol:
                break
            p = r + (rs_new / rs) * p
            rs = rs_new
        self.info = {"cg_iterations": it}
        return x


class LissaSolver(Solver):
    """h <- b + h - (H h + d h)/scale; (H + d I)^-1 b = h/scale at the fixed point.

    Converges when scale exceeds the largest eigenvalue of H + d I; a growing
    norm means it does not, which is reported instead of returning garbage.
    """

    name = "lissa"

    def __init__(self, settings, fmodel, x, y):
        super().__init__(settings)
        self.fmodel, self.x, self.y = fmodel, x, y
        self.full = curvature_matvec(settings, fmodel, x, y)
        self.scale = settings.lissa_scale or 1.5 * self._largest_eigenvalue()

    def _largest_eigenvalue(self, iterations: int = 30) -> float:
        gen = torch.Generator().manual_seed(self.settings.seed)
        v = torch.randn(self.fmodel.size, generator=gen).to(self.x)
        v /= v.norm()
        value = 1.0
        for _ in range(iterations):
            w = self.full(v)
            value = float(w.norm())
            v = w / (value or 1.0)
        return value

    def solve(self, b):
        s = self.settings
        gen = torch.Generator().manual_seed(s.seed)
        n = len(self.y)
        estimates = []
        b_norm = float(b.norm()) or 1.0
        for _ in range(max(1, s.lissa_repeats)):
            h = b.clone()
            for step in range(s.lissa_depth):
                if s.lissa_batch and s.lissa_batch < n:
                    idx = torch.randint(n, (s.lissa_batch,), generator=gen).to(self.x.device)
                    Hh = curvature_matvec(s, self.fmodel, self.x[idx], self.y[idx])(h)
                else:
                    Hh = self.full(h)
                h = b + h - Hh / self.scale
                norm = float(h.norm())
                if not math.isfinite(norm) or norm > 1e8 * b_norm:
                    raise BadInput(
                        f"LiSSA diverged at step {step + 1} (norm {norm:.3g}); raise --set lissa_scale= above the "
                        f"largest curvature eigenvalue (it was {self.scale:.3g}) or use --set solver=cg"
                    )
            estimates.append(h / self.scale)
        self.info = {"lissa_scale": self.scale, "lissa_depth": s.lissa_depth}
        return torch.stack(estimates).mean(0)


def build_solver(settings: CurvatureSettings, fmodel: FunctionalModel, x, y, cached: dict | None = None) -> Solver:
    solver = settings.resolved_solver(fmodel.size)
    if solver not in SOLVERS or solver == "auto":
        raise BadInput(f"unknown solver '{settings.solver}'; choose one of: {', '.join(SOLVERS)}")
    if settings.curvature not in ("ggn", "hessian"):
        raise BadInput(f"curvature must be ggn or hessian, got '{settings.curvature}'")
    if solver == "exact":
        if fmodel.size > 4 * EXACT_MAX_PARAMS and settings.solver == "exact":
            raise BadInput(
                f"solver=exact needs a {fmodel.size}x{fmodel.size} matrix; use --set solver=ekfac or cg"
            )
        cached = cached or {}
        return ExactSolver(settings, fmodel, x, y, factor=cached.get("factor"), rows=cached.get("rows"))
    if solver == "cg":
        return CGSolver(settings, curvature_matvec(settings, fmodel, x, y))
    if solver == "lissa":
        return LissaSolver(settings, fmodel, x, y)
    from unlearn_cli.influence.kfac import KFACSolver

    return KFACSolver(settings, fmodel, x, y, eigen_correction=(solver == "ekfac"), cached=cached)


def relative_residual(matvec: Callable[[torch.Tensor], torch.Tensor], solution: torch.Tensor, b: torch.Tensor) -> float:
    """||(H + dI) x - b|| / ||b||: how well the solve satisfied its equation."""
    b_norm = float(b.norm())
    if b_norm == 0:
        return 0.0
    return float((matvec(solution) - b).norm()) / b_norm

