"""Label-issue rankers: each orders the train split, most suspicious first (plugins of ``unlearn.rankers``).

A ranker is a :class:`Ranker` subclass registered in the ``unlearn.rankers``
entry-point group (the five below register there too). It declares what its
score means, which end is suspicious, whether it needs the weights of one
model, and ``order``, its place in listings; ``rank`` returns the score per
record, the ordering and details for the report.

* ``loo`` (default): out-of-sample evidence without training k models: the
  exact leave-one-out margin of a Gaussian-kernel ridge regression of the
  given labels on the inputs the model reads (``loo.py`` says why not a
  Newton step of the model itself). Lowest margin first.
* ``puma``: Algorithm 2 with its direction oriented (``PumaRanker``): psi_i =
  grad C^T H^-1 grad L_i (equation 9) for every train record from the
  engine's cached v = H^-1 grad C, by ONE forward-mode pass, plus the
  prediction confidence; the k most harmful records by psi minus the k most
  and k least confident ones form the candidate set S, kept only if it passes
  the paper's mean-influence check; S first, then every other record.
* ``puma-paper``: Algorithm 2 exactly as listed (most negative psi first).
* ``kfold`` (``kfold.py``): cleanlab's recipe: k models of the checkpoint's architecture and
  recipe, each trained on k-1 folds, give out-of-fold p(given label); lowest
  first. Costs k trainings; for when the user asks.
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

MAX_FOLDS = 20


@dataclass
class RankSettings(InfluenceSettings):
    """The influence settings plus C and Algorithm 2's k; the report lists the command's own options."""

    # C is the soft error by default, not the training cross-entropy: see ``PumaRanker``.
    criterion: str = option("accuracy", "C for puma and grad-dot", choices=CRITERION_CHOICES)
    k: int = option(20, "Algorithm 2's k: size of the low-influence and confidence sets", ge=1, le=MAX_COUNT)
    folds: int = option(5, "kfold ranker: models trained, each without one fold", ge=2, le=MAX_FOLDS)
    seed: int = option(0, "seeds the curvature sample and the solvers' draws", ge=0, le=MAX_SEED)

    REPORTED: ClassVar[tuple[str, ...]] = ("criterion", "k", "solver", "damping", "cache", "seed")
    #: debug-labels sets these from its flags; range errors name the flag
    FLAGS: ClassVar[Mapping[str, str]] = {"damping": "--damping", "k": "--top", "folds": "--folds", "seed": "--seed"}


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
    """One way to order the train split; ``rank`` may put out-of-sample probabilities in
    details["oos_probs"] (used for the estimate of how many labels are wrong)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    score: ClassVar[str] = ""           # what the score column holds
    ascending: ClassVar[bool] = True    # True: the lowest score is the most suspicious
    needs_plain: ClassVar[bool] = False  # needs the weights of one model (influence rankers)
    order: ClassVar[int] = 100          # place in listings (debug-labels --evaluate rows, messages)
    costly: ClassVar[bool] = False      # trains models: --evaluate runs it only when named

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


class LooRanker(Ranker):
    """Leave-one-out margin of a kernel smoother on the model's inputs (``loo.py``): no training, no Hessian."""

    name = "loo"
    summary = "out-of-sample: exact leave-one-out of a Gaussian-kernel smoother of the labels (default)"
    score = "leave-one-out margin"
    order = 0

    def rank(self, given):
        from unlearn_cli.data.tensors import tensors
        from unlearn_cli.diagnostics.loo import kernel_loo, loo_margin, pseudo_probabilities

        labels = given.dataset.y[given.rows]
        x, _ = tensors(given.dataset, given.rows, "cpu")
        tick = Counter(given.progress, "leave-one-out", 1)
        loo, info = kernel_loo(x.numpy(), labels, given.dataset.num_classes, seed=given.settings.seed)
        tick()
        score = loo_margin(loo, labels)
        info["oos_probs"] = pseudo_probabilities(loo)
        return score, np.argsort(score, kind="stable"), info


def orient(influence: np.ndarray, confidence: np.ndarray, k: int) -> tuple[int, dict[str, Any]]:
    """+1 when harmful records have psi < 0 (the paper's reading), -1 when the model's own doubts say otherwise.

    Algorithm 2 assumes a record that hurts C has psi < 0 (removing it lowers
    C). A model that fits its flipped labels gives them psi > 0 instead
    (measured; the issue's breast-cancer run). The direction is read off the
    data, not assumed: L_cf, the k records whose given label the model finds
    least probable, are the records most likely to be wrong by the model's own
    account; psi's harmful end is the end they lie on, i.e. -1 when their mean
    psi rank is above the middle.
    """
    n = len(influence)
    k = max(1, min(int(k), n))
    low = np.argsort(confidence, kind="stable")[:k]
    ranks = np.empty(n)
    ranks[np.argsort(influence, kind="stable")] = np.arange(n) / max(n - 1, 1)
    position = float(ranks[low].mean()) if n else 0.5
    direction = 1 if position <= 0.5 else -1
    return direction, {"direction": "negative psi first (the paper's)" if direction == 1 else
                       "positive psi first (the model fits its flips)",
                       "low_confidence_mean_psi_rank": position}


class PumaRanker(Ranker):
    """Algorithm 2 (``algorithms.py``) with its direction read off the data (``orient``).

    Sign of psi (equations 4-9). Up-weighting record i by eps moves the optimum
    by d theta = -eps H^-1 grad L_i (equations 6-7), so C moves by dC = -eps
    psi_i (equation 8). Removing i is eps = -1/n: dC_remove = +psi_i / n. A
    record that hurts C is one whose removal lowers C, i.e. psi_i < 0; that is
    the paper's direction (``puma-paper`` keeps it). It fails when the model
    fits its flips: their psi is then positive, and ``orient`` flips the order.

    C is the soft error 1 - mean_i p(y_i|x_i) over the train split by default,
    not the training cross-entropy. At a minimum of J = CE + wd/2 ||theta||^2
    the gradient of the train CE is just -wd theta, and CE is unbounded: a
    flipped record's own term (1/n) grad L_i^T H^-1 grad L_i > 0 dominates its
    psi. The soft error is bounded: on a record whose given label the model
    contradicts, p(1-p) ~ 0, so its own term vanishes and psi_i measures what
    the record does to the others.
    """

    name = "puma"
    summary = "Algorithm 2 of the PUMA paper, direction oriented by the model's least confident records"
    score = "psi (influence on C)"
    needs_plain = True
    order = 1
    oriented: ClassVar[bool] = True

    def rank(self, given):
        from unlearn_cli.influence.scores import psi

        engine = _engine(given)
        x, y = engine.rows(given.rows)
        influence = psi(engine.fmodel, engine.objective, x, y, engine.v, progress=given.progress)
        influence = influence.double().cpu().numpy()
        confidence = given.given_confidence()
        direction, why = orient(influence, confidence, given.settings.k) if self.oriented else (1, {
            "direction": "negative psi first (the paper's, as listed)"})
        order, a2 = algorithm2_order(direction * influence, confidence, given.settings.k)
        info = {"criterion": given.settings.criterion, "algorithm2": a2, "orientation": why, "engine": engine.info,
                "engine_timings": dict(engine.timings)}
        return influence, order, info


class PumaPaper(PumaRanker):
    """Algorithm 2 exactly as the paper lists it: the most negative psi first."""

    name = "puma-paper"
    summary = "Algorithm 2 as listed in the paper (most negative psi first)"
    order = 2
    oriented = False


class SelfConfidence(Ranker):
    name = "self-confidence"
    summary = "probability of the given label"
    score = "p(given label)"
    order = 3

    def rank(self, given):
        score = given.given_confidence()
        return score, np.argsort(score, kind="stable"), {}


class Margin(Ranker):
    name = "margin"
    summary = "p(given label) - largest other probability"
    score = "normalised margin"
    order = 4

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
    order = 5

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
    order = 6

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
