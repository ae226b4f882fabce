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
from dataclasses import dataclass

from unlearn_cli.influence.settings import CRITERION_CHOICES, InfluenceSettings, PatchSettings, redefault
from unlearn_cli.methods.base import Method, Outcome, Request
from unlearn_cli.options import MAX_COUNT, option

#: PUMA steps the weights along (H + dI)^-1 b, where debug-labels and calibrate only rank by it:
#: trained nets have a near-singular curvature (the moons MLP's GGN has 13 of 2338 eigenvalues above
#: 1e-3), and a damping below 1e-2 lets that null space dominate the step.
PUMA_DAMPING = 1e-2


@dataclass
class _CriterionOption:
    criterion: str = option("cross-entropy", "performance criterion C to preserve", choices=CRITERION_CHOICES)


@dataclass
class _AlgorithmOptions(PatchSettings, _CriterionOption):
    """C, Algorithm 1's eta and lambda, and the samples one request draws: PUMA's own options."""

    reweight_sample: int = option(1000, "records of D_up (seeded sample of remaining); 0 = all remaining",
                                  ge=0, le=MAX_COUNT)
    check_sample: int = option(1000, "remaining records on which the change of C is checked; 0 = all",
                               ge=0, le=MAX_COUNT)


@dataclass
class PumaConfig(InfluenceSettings, _AlgorithmOptions):
    """PUMA's options, listed in this order: C, eta and lambda, the samples, then the influence settings.

    Each field's range is declared with it (and checked before any work); ``validate`` holds the checks
    across fields, PatchSettings' eta_min <= eta_max and lambda_l2 > 0 for the exact lambda solver.
    """

    damping: float = redefault("damping", PUMA_DAMPING)


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
        import importlib

        for module in ("unlearn_cli.influence.engine", "unlearn_cli.influence.patch"):
            importlib.import_module(module)

    def forget(self, request: Request, config: PumaConfig) -> Outcome:
        from unlearn_cli.influence.engine import InfluenceEngine
        from unlearn_cli.influence.patch import puma_patch

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        engine = InfluenceEngine.for_request(request, config)
        timings.update(engine.timings)
        sample_up = engine.sample(request.retain_rows, config.reweight_sample, salt=1)
        sample_ck = engine.sample(request.retain_rows, config.check_sample, salt=2)
        result = puma_patch(
            engine.fmodel, engine.objective, engine.criterion, engine.solver, engine.v,
            engine.rows(request.forget_rows), engine.rows(sample_up), engine.rows(sample_ck), config,
            residual_matvec=engine.residual_matvec(), progress=request.progress,
        )
        timings.update(result.timings)
        state = engine.state_with(result.params)
        metrics = {**result.info, **engine.info}
        timings["method_s"] = time.perf_counter() - t0
        return Outcome(state=state, metrics=metrics, timings=timings)
