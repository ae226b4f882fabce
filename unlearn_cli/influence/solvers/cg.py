"""Conjugate gradients on matrix-free curvature-vector products: no matrix, one pass per iteration."""

from __future__ import annotations

import math

import torch

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.solvers.base import Solver, curvature_matvec
from unlearn_cli.ops.progress import Counter


class CGSolver(Solver):
    name = "cg"
    key_fields = ("cg_tol", "cg_maxiter")

    def __init__(self, settings, matvec):
        super().__init__(settings)
        self.matvec = matvec

    @classmethod
    def build(cls, settings, fmodel, x, y, cached=None, progress=None):
        return cls(settings, curvature_matvec(settings, fmodel, x, y))

    def solve(self, b):
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = float(r @ r)
        b_norm = math.sqrt(float(b @ b)) or 1.0
        it = 0
        tick = Counter(self.progress, "CG iterations", self.settings.cg_maxiter)
        for it in range(1, self.settings.cg_maxiter + 1):
            tick()
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
        tick.finish()  # converged before cg_maxiter
        self.info = {"cg_iterations": it}
        return x
