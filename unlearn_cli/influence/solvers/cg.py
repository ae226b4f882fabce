"""Conjugate gradients on matrix-free curvature-vector products: no matrix, one pass per iteration.

The iteration (``krylov.py``) stops on the true residual b - A x, which
``info`` reports with a converged flag.
"""

from __future__ import annotations

from unlearn_cli.influence.solvers.base import Solver, curvature_matvec
from unlearn_cli.influence.solvers.krylov import conjugate_gradients
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
        tick = Counter(self.progress, "CG iterations", self.settings.cg_maxiter)
        x, self.info = conjugate_gradients(self.matvec, b, self.settings.cg_tol, self.settings.cg_maxiter, tick=tick)
        tick.finish()  # converged before cg_maxiter
        return x
