"""EK-FAC-preconditioned conjugate gradients on a curvature sample: ``auto``'s choice above 5,000 parameters.

EK-FAC alone is a fast but rough inverse (on the mnist-5k cnn at damping 1e-2
its v has cosine 0.42 to the exact solve). Here it only preconditions: a few
CG iterations (``krylov.py``, stopped on the true residual) solve the real
damped GGN system, with products over a seeded sample of ``pcg_sample``
curvature records (``operator_positions``), so each iteration costs a
fraction of an epoch's forward-backward. The EK-FAC factors are built once
per checkpoint and cached like ``ekfac``'s; after a cache hit the engine
passes the operator's records again (``operator_sample_field``).
``info`` carries the true residual on that operator and a converged flag.
"""

from __future__ import annotations

from unlearn_cli.influence.solvers.base import CurvatureSettings, Solver, curvature_matvec, operator_positions
from unlearn_cli.influence.solvers.kfac import EKFACSolver
from unlearn_cli.influence.solvers.krylov import conjugate_gradients
from unlearn_cli.ops.progress import Counter


class PCGSolver(Solver):
    """CG on (H_sample + d I) x = b, preconditioned by EK-FAC's (H + d I)^-1."""

    name = "pcg"
    key_fields = ("fisher_samples", "ekfac_sample", "pcg_sample", "pcg_tol", "pcg_maxiter")
    factorised = True
    operator_sample_field = "pcg_sample"

    def __init__(self, settings: CurvatureSettings, preconditioner: EKFACSolver, matvec, records: int):
        super().__init__(settings)
        self.preconditioner = preconditioner
        self.matvec = matvec
        self.records = records  # curvature records in the operator (0: none given, EK-FAC alone)

    @classmethod
    def build(cls, settings, fmodel, x, y, cached=None, progress=None):
        preconditioner = EKFACSolver(settings, fmodel, x, y, cached=cached, progress=progress)
        if x is None:  # a cache hit from an engine that passes no operator records
            return cls(settings, preconditioner, None, 0)
        if not cached:  # cold: x holds every curvature record; the operator takes its sample
            keep = operator_positions(len(x), settings.pcg_sample, settings.seed)
            x, y = x[keep], y[keep]
        return cls(settings, preconditioner, curvature_matvec(settings, fmodel, x, y), len(x))

    def solve(self, b):
        s = self.settings
        if self.matvec is None:
            self.info = {"solver_residual": None, "solver_converged": False, "solver_iterations": 0,
                         "solver_stop": "no operator records", "solver_records": 0}
            return self.preconditioner.solve(b)
        tick = Counter(self.progress, "PCG iterations", s.pcg_maxiter)
        x, info = conjugate_gradients(self.matvec, b, s.pcg_tol, s.pcg_maxiter,
                                      precondition=self.preconditioner.solve, tick=tick)
        tick.finish()
        self.info = {**info, "solver_records": self.records}
        return x

    def state(self):
        return self.preconditioner.state()
