"""The curvature of the training objective J at the trained weights, as products and as matrices.

``H`` is the Gauss-Newton matrix (``curvature=ggn``, default: positive
semi-definite, and what K-FAC approximates) or the true Hessian
(``curvature=hessian``: has small negative eigenvalues on a trained net, so it
needs enough damping). Both are of the mean cross-entropy; the recipe's L2
term and the damping are added by ``solvers.base.curvature_matvec``.

* ``ggn_matvec`` / ``hessian_matvec``: matrix-free curvature-vector products
  (what CG, LiSSA and the reported residuals use).
* ``ggn_rows`` / ``dense_ggn`` / ``dense_hessian``: the explicit matrix for
  the exact solver, built by per-layer pseudo-gradients (GGN = sum_i
  (B_i J_i)^T (B_i J_i) with B_i B_i^T = diag(p_i) - p_i p_i^T) or by batched
  Hessian-vector products, never by ``torch.func.hessian``.

The iHVP solvers that invert it live in ``influence/solvers/``.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.layers import pseudo_gradients
from unlearn_cli.influence.scores import FunctionalModel, chunks
from unlearn_cli.ops.progress import Counter, Progress

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



# -- explicit matrices ---------------------------------------------------------

def ggn_rows(fmodel: FunctionalModel, x: torch.Tensor, chunk: int = 512,
             progress: Progress | None = None) -> Iterator[torch.Tensor]:
    """Blocks of rows U (float64) with sum_i U_i^T U_i = sum_i J_i^T (diag p_i - p_i p_i^T) J_i.

    The rows are per-record pseudo-loss gradients taken through layer hooks (see
    layers.py); layers the hooks do not know fall back to batched Jacobians
    (vmap(jacrev)), which are slower. ``progress`` hears ``GGN rows`` (records done).
    """
    P = fmodel.size
    n = len(x)
    slices = list(chunks(n, chunk))
    if not slices:
        return
    tick = Counter(progress, "curvature: GGN rows", n)
    try:  # unknown layers show on the first block
        first = pseudo_gradients(fmodel, x[slices[0]]).reshape(-1, P).double()
    except BadInput:
        first = None
    if first is not None:
        tick(slices[0].stop - slices[0].start)
        yield first
        for sl in slices[1:]:
            block = pseudo_gradients(fmodel, x[sl]).reshape(-1, P).double()
            tick(sl.stop - sl.start)
            yield block
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
        tick(len(xb))
        yield (B @ J).reshape(-1, P)


def dense_ggn(fmodel: FunctionalModel, x: torch.Tensor, chunk: int = 512,
              progress: Progress | None = None) -> torch.Tensor:
    """(1/N) sum_i U_i^T U_i in float64: exactly (1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i."""
    P = fmodel.size
    G = torch.zeros(P, P, dtype=torch.float64, device=x.device)
    for U in ggn_rows(fmodel, x, chunk, progress):
        G += U.T @ U
    return G / len(x)


def dense_hessian(fmodel: FunctionalModel, x: torch.Tensor, y: torch.Tensor, columns: int = 128,
                  progress: Progress | None = None) -> torch.Tensor:
    """The Hessian of mean CE, column blocks at a time by vmapped HVPs (far cheaper than func.hessian)."""
    P = fmodel.size
    eye = torch.eye(P, dtype=x.dtype, device=x.device)
    tick = Counter(progress, "curvature: Hessian columns", P)
    blocks = []
    for sl in chunks(P, columns):
        blocks.append(vmap(lambda v: hessian_matvec(fmodel, x, y, v))(eye[sl]))
        tick(sl.stop - sl.start)
    H = torch.cat(blocks).double()
    return (H + H.T) / 2
