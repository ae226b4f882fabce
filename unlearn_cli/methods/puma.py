"""PUMA: Performance Unchanged Model Augmentation (Wu, Hashemi, Srinivasa, AAAI 2022).

Removes the marked records' influence by re-weighting the remaining records so
that the chosen criterion C is preserved to first order, then patches the
weights once: theta' = theta + eta (Phi_mk - Phi_up) (equations 9-12,
Algorithm 1). The curvature and v = H^-1 grad C are built once per checkpoint
(cached in a sidecar for factorised solvers), so a request costs passes over
the request and the re-weight sample, not over the data set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from unlearn_cli.errors import BadInput
from unlearn_cli.methods.base import Method, Outcome, Request


def _opt(default, doc, **extra):
    return field(default=default, metadata={"doc": doc, **extra})


@dataclass
class PumaConfig:
    criterion: str = _opt("cross-entropy", "performance criterion C to preserve",
                          choices=("cross-entropy", "accuracy", "ece"))
    eta: Optional[float] = _opt(None, "projection rate; unset = largest grid value within delta")
    delta: float = _opt(0.02, "allowed change of C on remaining records when choosing eta (eq. 2)")
    eta_min: float = _opt(1e-4, "smallest eta tried (the paper's own runs used 1e-2..1e-1; see details)")
    eta_max: float = _opt(1e3, "largest eta tried")
    eta_grid: int = _opt(6, "geometric grid points per decade between eta_min and eta_max")
    lambda_l1: float = _opt(1e-5, "l1 weight of eq. 10 (psi scaled to unit rms, so scale-free)")
    lambda_l2: float = _opt(1e-3, "l2 weight of eq. 10; > 0 keeps lambda unique")
    lambda_solver: str = _opt("exact", "exact single-residual solver, or the paper's slsqp (slow)",
                              choices=("exact", "slsqp"))
    reweight_sample: int = _opt(1000, "records of D_up (seeded sample of remaining); 0 = all remaining")
    check_sample: int = _opt(1000, "remaining records on which the change of C is checked; 0 = all")
    solver: str = _opt("auto", "iHVP solver: auto (exact up to 5k parameters, else ekfac), exact, cg, lissa, kfac, ekfac",
                       choices=("auto", "exact", "cg", "lissa", "kfac", "ekfac"))
    curvature: str = _opt("ggn", "Gauss-Newton (PSD) or the true hessian", choices=("ggn", "hessian"))
    damping: float = _opt(1e-2, "added to the curvature diagonal (on top of the recipe's weight decay)")
    curvature_sample: int = _opt(0, "train records used to build the curvature; 0 = all")
    fisher_samples: int = _opt(1, "kfac/ekfac: labels drawn per record for the factors; 0 = exact (one pass per class)")
    ekfac_sample: int = _opt(1000, "ekfac: records used for the eigenvalue correction; 0 = all")
    cg_tol: float = _opt(1e-8, "CG relative residual tolerance")
    cg_maxiter: int = _opt(500, "CG iteration limit")
    lissa_depth: int = _opt(5000, "LiSSA recursion depth")
    lissa_scale: Optional[float] = _opt(None, "LiSSA scale; unset = 1.5 x largest eigenvalue (power iteration)")
    lissa_batch: int = _opt(0, "LiSSA mini-batch; 0 = all curvature records (deterministic)")
    lissa_repeats: int = _opt(1, "LiSSA repeats averaged")
    cache: bool = _opt(True, "cache factorised curvature and v beside the checkpoint")

    def validate(self) -> None:
        if self.eta is not None and not self.eta > 0:
            raise BadInput(f"eta must be > 0, got {self.eta}")
        if not 0 < self.eta_min <= self.eta_max:
            raise BadInput(f"need 0 < eta_min <= eta_max, got {self.eta_min}, {self.eta_max}")
        if self.delta < 0:
            raise BadInput(f"delta must be >= 0, got {self.delta}")
        if self.damping < 0:
            raise BadInput(f"damping must be >= 0, got {self.damping}")
        for name in ("reweight_sample", "check_sample", "curvature_sample"):
            if getattr(self, name) < 0:
                raise BadInput(f"{name} must be >= 0")


class Puma(Method):
    name = "puma"
    summary = "re-weight remaining records to keep C unchanged, patch the weights once (Wu et al. 2022)"
    details = (
        "Algorithm 1 of the PUMA paper. Works on any plain checkpoint. The first request on a checkpoint "
        "builds the curvature (cached beside it for kfac/ekfac); later requests cost passes over the request "
        "and the re-weight sample only. eta trades removal strength against preservation: by default it is "
        "the largest eta on a geometric grid (1e-4..1e3, 6 per decade) whose change of C on a sample of "
        "remaining records stays within delta (eq. 2). The paper recommends eta in 1e-2..1e-1 for its models; "
        "the step eta*Phi scales with the gradients of the marked records, which vanish on a model that fits "
        "them confidently (measured on breast-cancer: no prediction moves at eta=0.1), so a fixed range "
        "either removes nothing or breaks the model, and the delta rule picks the scale per request. "
        "damping 1e-2: trained nets have a near-singular curvature (the moons MLP's GGN has 13 of 2338 "
        "eigenvalues above 1e-3), and smaller damping lets the null space dominate the step."
    )
    requires = "plain"
    Config = PumaConfig

    def preload(self) -> None:
        from unlearn_cli.influence import engine, patch  # noqa: F401

    def forget(self, request: Request, config: PumaConfig) -> Outcome:
        from unlearn_cli.influence.engine import InfluenceEngine
        from unlearn_cli.influence.patch import PatchSettings, puma_patch

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        engine = InfluenceEngine.for_request(request, config)
        timings.update(engine.timings)
        sample_up = engine.sample(request.retain_rows, config.reweight_sample, salt=1)
        sample_ck = engine.sample(request.retain_rows, config.check_sample, salt=2)
        settings = PatchSettings(
            eta=config.eta, delta=config.delta, eta_min=config.eta_min, eta_max=config.eta_max,
            eta_grid=config.eta_grid, lambda_l1=config.lambda_l1, lambda_l2=config.lambda_l2,
            lambda_solver=config.lambda_solver,
        )
        result = puma_patch(
            engine.fmodel, engine.objective, engine.criterion, engine.solver, engine.v,
            engine.rows(request.forget_rows), engine.rows(sample_up), engine.rows(sample_ck), settings,
            residual_matvec=engine.residual_matvec(),
        )
        timings.update(result.timings)
        state = engine.state_with(result.params)
        metrics = {**result.info, **engine.info}
        timings["method_s"] = time.perf_counter() - t0
        return Outcome(state=state, metrics=metrics, timings=timings)
