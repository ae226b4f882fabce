"""The exact solver: the explicit damped curvature matrix and its Cholesky factor, in float64.

Exact and cheap up to ~5k parameters (DESIGN.md); ``auto`` picks it there.
With the GGN and fewer rows N*C than parameters, the Woodbury identity gives
the same solve from the smaller (NC x NC) system.
"""

from __future__ import annotations

import math

import torch

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.curvature import dense_ggn, dense_hessian, ggn_rows
from unlearn_cli.influence.settings import EXACT_MAX_PARAMS
from unlearn_cli.influence.solvers.base import Solver

DUAL_MAX_ENTRIES = 50_000_000  # rows x parameters of U held for the dual form (400 MB in float64)


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
                 rows: torch.Tensor | None = None, progress=None):
        super().__init__(settings)
        self.rows: torch.Tensor | None = rows   # U / sqrt(N) in the dual form (with its factor, from state())
        if factor is None and settings.curvature == "ggn" and form != "primal" and settings.total_damping > 0:
            factor = self._dual_factor(fmodel, x, force=form == "dual", progress=progress)
        self.factor = factor if factor is not None else self._primal_factor(fmodel, x, y, progress)
        self.form = "dual" if self.rows is not None else "primal"

    @classmethod
    def build(cls, settings, fmodel, x, y, cached=None, progress=None):
        # Past 4x the auto limit the P x P matrix stops being cheap: only an explicit request may build it.
        if fmodel.size > 4 * EXACT_MAX_PARAMS and settings.solver == "exact":
            raise BadInput(
                f"solver=exact needs a {fmodel.size}x{fmodel.size} matrix; use --set solver=ekfac or cg"
            )
        cached = cached or {}
        return cls(settings, fmodel, x, y, factor=cached.get("factor"), rows=cached.get("rows"), progress=progress)

    def _dual_factor(self, fmodel, x, force: bool, progress=None) -> torch.Tensor | None:
        """Cholesky of U U^T + dI, keeping U in ``rows``; None when the primal system is the smaller."""
        rows = len(x) * int(fmodel(fmodel.params, x[:1]).shape[1])
        if not (force or (rows < fmodel.size and rows * fmodel.size <= DUAL_MAX_ENTRIES)):
            return None
        U = torch.cat(list(ggn_rows(fmodel, x, progress=progress))) / math.sqrt(len(x))
        K = U @ U.T
        K.diagonal().add_(self.settings.total_damping)
        self.rows = U
        return torch.linalg.cholesky(K)

    def _primal_factor(self, fmodel, x, y, progress=None) -> torch.Tensor:
        """Cholesky of the damped P x P matrix; an indefinite one is a clear error."""
        settings = self.settings
        if settings.curvature == "ggn":
            M = dense_ggn(fmodel, x, progress=progress)
        else:
            M = dense_hessian(fmodel, x, y, progress=progress)
        M.diagonal().add_(settings.total_damping)
        factor, info = torch.linalg.cholesky_ex(M)
        if int(info) != 0:
            low = float(torch.linalg.eigvalsh(M)[0])
            raise BadInput(
                f"the damped {settings.curvature} is not positive definite (smallest eigenvalue {low:.3g}); "
                f"raise --set damping= above {abs(low) + settings.damping:.3g} or use --set curvature=ggn"
            )
        return factor

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
