"""Label-issue rankers: each orders the train split, most suspicious first (plugins of ``unlearn.rankers``).

A ranker is a :class:`Ranker` subclass registered in the ``unlearn.rankers``
entry-point group (the five below register there too). It declares what its
score means, which end is suspicious, whether it needs the weights of one
model, and ``order``, its place in listings; ``rank`` returns the score per
record, the ordering and details for the report.

* ``puma``: Algorithm 2. psi_i = grad C^T H^-1 grad L_i (equation 9) for every
  train record from the engine's cached v = H^-1 grad C, by ONE forward-mode
  pass (no per-record Hessian work), plus the prediction confidence; the k
  lowest-influence records minus the k most and k least confident ones form the
  candidate set S, kept only if it passes the paper's mean-influence check.
  S is ranked first (by influence), then every other record by influence.
* ``self-confidence``: p(given label | x), lowest first.
* ``margin``: p(given label | x) - max over other classes, lowest first
  (the normalised margin of Northcutt et al.).
* ``grad-dot``: the paper's "NTK" baseline, psi with the Hessian replaced by
  the identity: grad C^T grad L_i.
* ``influence``: Koh & Liang (2017) self-influence grad L_i^T H^-1 grad L_i,
  one iHVP per record (batched for the exact solver). Slow; for small models.

The two confidence rankers need only predictions, so they work on any
checkpoint kind (SISA ensembles included); the influence rankers need a plain
checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Mapping

import numpy as np

from unlearn_cli import plugins
from unlearn_cli.diagnostics.algorithms import algorithm2_order
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.progress import Counter, Progress
from unlearn_cli.influence.settings import CRITERION_CHOICES, InfluenceSettings
from unlearn_cli.options import MAX_COUNT, MAX_SEED, option


@dataclass
class RankSettings(InfluenceSettings):
    """The influence settings plus C and Algorithm 2's k; the report lists the command's own options."""

    # C is the soft error by default, not the training cross-entropy: see ``PumaRanker``.
    criterion: str = option("accuracy", "C for puma and grad-dot", choices=CRITERION_CHOICES)
    k: int = option(20, "Algorithm 2's k: size of the low-influence and confidence sets", ge=1, le=MAX_COUNT)
    seed: int = option(0, "seeds the curvature sample and the solvers' draws", ge=0, le=MAX_SEED)

    REPORTED: ClassVar[tuple[str, ...]] = ("criterion", "k", "solver", "damping", "cache", "seed")
    #: debug-labels sets these from its flags; range errors name the flag
    FLAGS: ClassVar[Mapping[str, str]] = {"damping": "--damping", "k": "--top", "seed": "--seed"}


@dataclass
class RankInput:
    """What every ranker is handed: the checkpoint, the train rows, and the predictions on them."""

    checkpoint: Any
    dataset: Any
    rows: np.ndarray            # dataset rows of the train split, in data order
    device: Any
    settings: RankSettings
    probs: np.ndarray           # predicted class probabilities for each of ``rows``
    progress: Progress | None = None  # ``ops.progress``: the curvature build, psi and per-record passes

    def given_confidence(self) -> np.ndarray:
        return given_confidence(self.probs, self.dataset.y[self.rows])


class Ranker(ABC):
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    score: ClassVar[str] = ""           # what the score column holds
    ascending: ClassVar[bool] = True    # True: the lowest score is the most suspicious
    needs_plain: ClassVar[bool] = False  # needs the weights of one model (influence rankers)
    order: ClassVar[int] = 100          # place in listings (debug-labels --evaluate rows, messages)

    @abstractmethod
    def rank(self, given: RankInput) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(score per row, positions most suspicious first, details for the report)."""


def given_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return probs[np.arange(len(labels)), labels]


def _engine(given: RankInput):
    from unlearn_cli.influence.engine import InfluenceEngine

    s = given.settings
    return InfluenceEngine.build(given.checkpoint, given.dataset, device=given.device, criterion=s.criterion,
                                 settings=s, seed=s.seed, progress=given.progress)


class PumaRanker(Ranker):
    """Algorithm 2 (``algorithms.py``).

    Sign of psi (equations 4-9). Up-weighting record i by eps moves the optimum
    by d theta = -eps H^-1 grad L_i (equations 6-7), so C moves by dC = -eps
    psi_i (equation 8). Removing i is eps = -1/n: dC_remove = +psi_i / n. A
    record that hurts C is one whose removal lowers C, i.e. psi_i < 0, so
    Algorithm 2's "top low influences" are the most negative psi and they are
    ranked first.

    C is the soft error 1 - mean_i p(y_i|x_i) over the train split by default,
    not the training cross-entropy. At a minimum of J = CE + wd/2 ||theta||^2
    the gradient of the train CE is just -wd theta, and CE is unbounded: a
    flipped record's own term (1/n) grad L_i^T H^-1 grad L_i > 0 dominates its
    psi (taking it out raises its own, large, loss), which gives it the sign of
    a helpful record. The soft error is bounded: on a record whose given label
    the model contradicts, p(1-p) ~ 0, so its own term vanishes and psi_i
    measures what the record does to the others, which is what a mislabelled
    record harms (measured on the synthetic sets in
    benchmarks/results/debug_labels.md).
    """

    name = "puma"
    summary = "Algorithm 2 of the PUMA paper: influence on C from the cached iHVP, confidence filter"
    score = "psi (influence on C)"
    needs_plain = True
    order = 1

    def rank(self, given):
        from unlearn_cli.influence.scores import psi

        engine = _engine(given)
        x, y = engine.rows(given.rows)
        influence = psi(engine.fmodel, engine.objective, x, y, engine.v, progress=given.progress)
        influence = influence.double().cpu().numpy()
        order, a2 = algorithm2_order(influence, given.given_confidence(), given.settings.k)
        info = {"criterion": given.settings.criterion, "algorithm2": a2, "engine": engine.info,
                "engine_timings": dict(engine.timings)}
        return influence, order, info


class SelfConfidence(Ranker):
    name = "self-confidence"
    summary = "probability of the given label"
    score = "p(given label)"
    order = 2

    def rank(self, given):
        score = given.given_confidence()
        return score, np.argsort(score, kind="stable"), {}


class Margin(Ranker):
    name = "margin"
    summary = "p(given label) - largest other probability"
    score = "normalised margin"
    order = 3

    def rank(self, given):
        labels = given.dataset.y[given.rows]
        others = given.probs.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        score = given.given_confidence() - others.max(1)
        return score, np.argsort(score, kind="stable"), {}


class GradDot(Ranker):
    name = "grad-dot"
    summary = "the paper's NTK: influence on C with the Hessian replaced by the identity"
    score = "grad C . grad L"
    needs_plain = True
    order = 4

    def rank(self, given):
        from unlearn_cli.data.tensors import tensors
        from unlearn_cli.influence.criteria import Objective, get_criterion
        from unlearn_cli.influence.scores import FunctionalModel, criterion_grad, psi

        checkpoint, criterion = given.checkpoint, given.settings.criterion
        fmodel = FunctionalModel.of(checkpoint.build_model(given.device))
        objective = Objective(weight_decay=float(checkpoint.training.get("weight_decay", 0.0)))
        x, y = tensors(given.dataset, given.rows, given.device)
        _, grad_c = criterion_grad(fmodel, get_criterion(criterion), x, y)
        score = psi(fmodel, objective, x, y, grad_c, progress=given.progress).double().cpu().numpy()
        return score, np.argsort(score, kind="stable"), {"criterion": criterion, "parameters": fmodel.size}


class SelfInfluence(Ranker):
    name = "influence"
    summary = "Koh & Liang self-influence, one iHVP per record (slow; small models)"
    score = "self-influence"
    ascending = False
    needs_plain = True
    order = 5

    def rank(self, given):
        import torch

        from unlearn_cli.influence.scores import per_record_grads
        from unlearn_cli.influence.solvers.exact import ExactSolver

        engine = _engine(given)
        x, y = engine.rows(given.rows)
        size = engine.fmodel.size
        chunk = max(1, min(512, 16_000_000 // max(size, 1)))  # bounds the (chunk x parameters) gradient block
        exact = isinstance(engine.solver, ExactSolver)
        out = []
        tick = Counter(given.progress, "self-influence", len(given.rows))
        for start in range(0, len(given.rows), chunk):
            grads = per_record_grads(engine.fmodel, engine.objective, x[start:start + chunk], y[start:start + chunk])
            if exact:  # every record's iHVP in one batched triangular solve
                solved = engine.solver.solve_many(grads.T).T
            else:
                solved = torch.stack([engine.solver.solve(g) for g in grads]).double()
            out.append((grads.double() * solved).sum(1).cpu())
            tick(len(grads))
        score = torch.cat(out).numpy() if out else np.zeros(0)
        return score, np.argsort(-score, kind="stable"), {"engine": engine.info, "batched_exact_solve": exact}


@lru_cache(maxsize=None)
def registered() -> dict[str, type[Ranker]]:
    """Every registered ranker by name, in listing order."""
    found = plugins.load_all("rankers")
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def __getattr__(name: str):
    # ``RANKERS`` reads the registry on first use: importing this module scans no entry points.
    if name == "RANKERS":
        return registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_ranker(name: str) -> type[Ranker]:
    found = registered()
    if name not in found:
        raise BadInput(f"unknown ranker '{name}'; choose one of: {', '.join(found)}")
    return found[name]
