"""The influence engine's settings: one dataclass, one default per field and one reason for it.

``InfluenceSettings`` says how (H + dI)^-1 is applied: which curvature H,
which damping d, which iHVP solver and each solver's knobs, how many records
build the curvature, and whether factorised curvature is cached. PUMA's
``PumaConfig``, label ranking's ``RankSettings`` and calibration's
``CalibrationSettings`` inherit it, so the ``--set`` keys users type are its
field names. A command that needs another default re-declares that one field
with its reason (PUMA's damping, ``methods/puma.py``). ``PatchSettings`` are
Algorithm 1's own (eta and lambda), which PUMA's options embed the same way.

Cheap to import (no torch): option lists are built from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterable, Mapping, Optional, Sequence

from unlearn_cli.errors import BadInput
from unlearn_cli.options import MAX_COUNT, check_ranges, option

#: Solvers as help texts, option choices and messages list them: auto (the
#: default) first, then the exact solve, the matrix-free iterative ones, the
#: factorised ones. Registered in the ``unlearn.solvers`` entry-point group.
SOLVER_CHOICES = ("auto", "exact", "cg", "lissa", "kfac", "ekfac", "pcg")

#: Criteria C as listed: the paper's default (C = J's cross-entropy) first.
#: Registered in the ``unlearn.criteria`` entry-point group.
CRITERION_CHOICES = ("cross-entropy", "accuracy", "ece")

#: auto picks the explicit damped matrix and its Cholesky factor up to this
#: many parameters (exact and cheap there, DESIGN.md), EK-FAC above: fast but rough (v at cosine 0.43 to
#: the exact solve on the mnist-5k cnn); ``pcg`` (EK-FAC-preconditioned CG) reaches 0.98-0.99 there but
#: each solve costs 6-20 GGN products over the curvature records, more than a retrain of that model
#: for PUMA's several solves (benchmarks/results/solver_accuracy.md).
EXACT_MAX_PARAMS = 5000

#: Damping of the influence scores (debug-labels, calibrate, the engine's own
#: default). The scores rank records rather than move the weights, so the
#: damping only has to make the Gauss-Newton matrix (PSD, and singular on a
#: trained net) invertible while staying below the curvature directions that
#: matter: on the moons MLP 13 of 2338 GGN eigenvalues exceed 1e-3.
SCORE_DAMPING = 1e-3

# Sanity bounds of the declared ranges: far above any useful value, low enough that a typo is refused
# before work instead of overflowing float32 weights or running for days.
#: damping, on curvature eigenvalues that are O(1) at most on a trained net: beyond this the step is ~0
MAX_DAMPING = 1e6
#: eta: the default grid spans 1e-4..1e3; a step of eta * Phi beyond 1e6 only breaks the weights
MIN_ETA, MAX_ETA = 1e-12, 1e6
#: geometric grid points per decade (6 by default): MAX_ETA / MIN_ETA spans 18 decades
MAX_GRID_PER_DECADE = 100
#: delta and the lambda weights: changes of C and penalties, O(1) in use
MAX_WEIGHT = 1e6
#: kfac/ekfac labels drawn per record: each is a pass over the curvature records
MAX_FISHER_SAMPLES = 1000
#: CG iterations and LiSSA depth: each is a Hessian-vector product over the curvature records
MAX_ITERATIONS = 1_000_000
#: LiSSA repeats averaged: each is a full recursion
MAX_REPEATS = 1000


def listed(registered: Iterable[str], listing: Sequence[str]) -> list[str]:
    """Registered plugin names in ``listing``'s order; names it does not know (another package's) follow by name."""
    registered = set(registered)
    return [n for n in listing if n in registered] + sorted(registered - set(listing))


@dataclass
class InfluenceSettings:
    """How the engine applies (H + dI)^-1; every field is a ``--set`` key of PUMA."""

    solver: str = option("auto", "iHVP solver: auto (exact up to 5k parameters, else ekfac), exact, cg, lissa, "
                                 "kfac, ekfac, pcg (accurate, slow)", choices=SOLVER_CHOICES)
    curvature: str = option("ggn", "Gauss-Newton (PSD) or the true hessian", choices=("ggn", "hessian"))
    damping: float = option(SCORE_DAMPING, "added to the curvature diagonal (on top of the recipe's weight decay)",
                            ge=0, le=MAX_DAMPING)
    curvature_sample: int = option(100_000, "train records used to build the curvature (a seeded sample above "
                                            "it: the factors are means, so 100k pins them; a cold PUMA request "
                                            "on 425k records took 2.1 s to build them from all); 0 = all",
                                   ge=0, le=MAX_COUNT)
    fisher_samples: int = option(1, "kfac/ekfac: labels drawn per record for the factors; 0 = exact "
                                    "(one pass per class)", ge=0, le=MAX_FISHER_SAMPLES)
    ekfac_sample: int = option(1000, "ekfac: records used for the eigenvalue correction; 0 = all",
                               ge=0, le=MAX_COUNT)
    cg_tol: float = option(1e-6, "CG true relative residual tolerance (float32 products stall near 1e-7)", gt=0, le=1)
    cg_maxiter: int = option(500, "CG iteration limit", ge=1, le=MAX_ITERATIONS)
    pcg_sample: int = option(0, "pcg: curvature records in the operator CG solves (EK-FAC preconditions); "
                                "0 = all (a 1,000 sample cut cosine to the exact v to 0.64 on mnist-5k)",
                             ge=0, le=MAX_COUNT)
    pcg_tol: float = option(0.03, "pcg: true relative residual tolerance (0.09 left v at cosine 0.87 to the "
                                  "exact solve on mnist-5k at damping 1e-2, 0.06 at 0.95)", gt=0, le=1)
    pcg_maxiter: int = option(20, "pcg: iteration limit (each is a GGN product over pcg_sample records)",
                              ge=1, le=MAX_ITERATIONS)
    lissa_depth: int = option(5000, "LiSSA recursion depth", ge=1, le=MAX_ITERATIONS)
    lissa_scale: Optional[float] = option(None, "LiSSA scale; unset = 1.5 x largest eigenvalue (power iteration)",
                                          gt=0, le=1e12)
    lissa_batch: int = option(0, "LiSSA mini-batch; 0 = all curvature records (deterministic)", ge=0, le=MAX_COUNT)
    lissa_repeats: int = option(1, "LiSSA repeats averaged", ge=1, le=MAX_REPEATS)
    cache: bool = option(True, "cache factorised curvature and v beside the checkpoint")
    curvature_refresh: float = option(0.05, "a forget child reuses its parent's cached curvature while the "
                                            "records removed since it was built are at most this fraction",
                                      ge=0, le=1)

    #: the fields a command's report lists under "config" (its own options), in order; empty: every field
    REPORTED: ClassVar[tuple[str, ...]] = ()
    #: field -> the command-line flag a command sets it from, named in range errors instead of the field
    FLAGS: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self) -> None:
        # Commands build these from their own flags (debug-labels --damping), not only through
        # parse_options: the declared ranges hold however the object is made.
        check_ranges(self, flags=self.FLAGS)

    def reported(self) -> dict[str, Any]:
        names = self.REPORTED or tuple(f.name for f in fields(self))
        return {name: getattr(self, name) for name in names}


def redefault(name: str, default: Any) -> Any:
    """``InfluenceSettings``' field ``name`` (same doc, same choices) with the default a command needs instead."""
    return field_like(InfluenceSettings, name, default)


def field_like(options_cls: type, name: str, default: Any) -> Any:
    """Field ``name`` of ``options_cls`` (same doc, choices and range) with another default."""
    metadata = dict(options_cls.__dataclass_fields__[name].metadata)
    bounds = metadata.pop("range", None)
    if bounds is None:
        return option(default, **metadata)
    return option(default, **metadata, **bounds.as_option())


@dataclass
class PatchSettings:
    """How Algorithm 1 picks eta and lambda; PUMA's options embed these fields (``methods/puma.py``)."""

    eta: Optional[float] = option(None, "projection rate; unset = largest grid value within delta",
                                  ge=MIN_ETA, le=MAX_ETA)
    delta: float = option(0.02, "allowed change of C on remaining records when choosing eta (eq. 2)",
                          ge=0, le=MAX_WEIGHT)
    eta_min: float = option(1e-4, "smallest eta tried (the paper's own runs used 1e-2..1e-1; see details)",
                            ge=MIN_ETA, le=MAX_ETA)
    eta_max: float = option(1e3, "largest eta tried", ge=MIN_ETA, le=MAX_ETA)
    eta_grid: int = option(6, "geometric grid points per decade between eta_min and eta_max",
                           ge=1, le=MAX_GRID_PER_DECADE)
    lambda_l1: float = option(1e-5, "l1 weight of eq. 10 (psi scaled to unit rms, so scale-free)",
                              ge=0, le=MAX_WEIGHT)
    lambda_l2: float = option(1e-3, "l2 weight of eq. 10; > 0 keeps lambda unique (the exact solver needs it)",
                              ge=0, le=MAX_WEIGHT)
    lambda_solver: str = option("exact", "exact single-residual solver, or the paper's slsqp (slow)",
                                choices=("exact", "slsqp"))

    def __post_init__(self) -> None:
        check_ranges(self)

    def validate(self) -> None:
        """Checks across fields (each field's own range is declared above)."""
        check_eta_and_lambda(self)


def check_eta_and_lambda(settings: Any) -> None:
    """eta_min <= eta_max, and lambda_l2 > 0 for the exact lambda solver (PatchSettings and PUMA's options)."""
    if settings.eta_min > settings.eta_max:
        raise BadInput(f"need eta_min <= eta_max, got {settings.eta_min:g} > {settings.eta_max:g}")
    if settings.lambda_solver == "exact" and not settings.lambda_l2 > 0:
        raise BadInput("option 'lambda_l2' must be > 0 for lambda_solver=exact (it makes lambda unique), "
                       f"got {settings.lambda_l2:g}; use lambda_solver=slsqp for 0")
