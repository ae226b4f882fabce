"""Finding mislabelled training records: PUMA's Algorithm 2 and the rankers it is compared with.

Every ranker orders the whole train split, most suspicious first, so the
orderings can be compared by the paper's protocol (Figure 4 / Table 3): flip
the labels of a share of the train split, train, rank, and count the share of
flipped records found after inspecting 5, 10, 20, 30, 50% of the data.

Rankers (``RANKERS``):

* ``puma``: Algorithm 2. psi_i = grad C^T H^-1 grad L_i (equation 9) for every
  train record from the engine's cached v = H^-1 grad C, by ONE forward-mode
  pass (no per-record Hessian work), plus the prediction confidence; the k
  lowest-influence records minus the k most and k least confident ones form the
  candidate set S, kept only if it passes the paper's mean-influence check.
  S is ranked first (by influence), then every other record by influence.
* ``grad-dot``: the paper's "NTK" baseline, psi with the Hessian replaced by
  the identity: grad C^T grad L_i.
* ``influence``: Koh & Liang (2017) self-influence grad L_i^T H^-1 grad L_i,
  one iHVP per record (batched for the exact solver). Slow; for small models.
* ``self-confidence``: p(given label | x), lowest first.
* ``margin``: p(given label | x) - max over other classes, lowest first
  (the normalised margin of Northcutt et al.).

The last two need only predictions, so they work on any checkpoint kind (SISA
ensembles included); the influence rankers need a plain checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from unlearn_cli.errors import BadInput

FRACTIONS = (0.05, 0.10, 0.20, 0.30, 0.50)  # shares of the data inspected, as in Figure 4


@dataclass(frozen=True)
class RankerInfo:
    name: str
    summary: str
    score: str              # what the score column holds
    ascending: bool         # True: the lowest score is the most suspicious
    needs_plain: bool       # needs the weights of one model (influence rankers)


RANKERS: dict[str, RankerInfo] = {r.name: r for r in (
    RankerInfo("puma", "Algorithm 2 of the PUMA paper: influence on C from the cached iHVP, confidence filter",
               "psi (influence on C)", True, True),
    RankerInfo("self-confidence", "probability of the given label", "p(given label)", True, False),
    RankerInfo("margin", "p(given label) - largest other probability", "normalised margin", True, False),
    RankerInfo("grad-dot", "the paper's NTK: influence on C with the Hessian replaced by the identity",
               "grad C . grad L", True, True),
    RankerInfo("influence", "Koh & Liang self-influence, one iHVP per record (slow; small models)",
               "self-influence", False, True),
)}


def check_ranker(name: str) -> RankerInfo:
    if name not in RANKERS:
        raise BadInput(f"unknown ranker '{name}'; choose one of: {', '.join(RANKERS)}")
    return RANKERS[name]


@dataclass
class RankSettings:
    criterion: str = "accuracy"   # C for puma and grad-dot; the soft error, see _influence_sign_note
    k: int = 20                   # Algorithm 2's k: size of the low-influence and confidence sets
    solver: str = "auto"          # iHVP solver (exact up to 5k parameters, else ekfac)
    damping: float = 1e-3         # added to the curvature diagonal on top of the recipe's weight decay
    cache: bool = True            # cache factorised curvature beside the checkpoint (kfac/ekfac)
    seed: int = 0


@dataclass
class Ranking:
    ranker: str
    rows: np.ndarray            # dataset rows of the train split, in data order
    score: np.ndarray           # the ranker's score for each of ``rows``
    order: np.ndarray           # positions into ``rows``, most suspicious first (a permutation)
    confidence: np.ndarray      # p(given label | x) for each of ``rows``
    predicted: np.ndarray       # predicted class for each of ``rows``
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def ranked_rows(self) -> np.ndarray:
        return self.rows[self.order]


# -- Algorithm 2 ---------------------------------------------------------------

def algorithm2(influence: np.ndarray, confidence: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The candidate set S of Algorithm 2 (positions, lowest influence first) and what led to it.

    L_if = the k lowest influences, L_cf / H_cf = the k lowest / highest
    confidences; S = L_if minus (L_cf u H_cf); S is emptied when its mean
    influence exceeds that of L_if n L_cf (the listing's final check).
    """
    influence = np.asarray(influence, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    n = len(influence)
    k = max(0, min(int(k), n))
    by_influence = np.argsort(influence, kind="stable")
    lif = by_influence[:k]
    lcf = np.argsort(confidence, kind="stable")[:k]
    hcf = np.argsort(-confidence, kind="stable")[:k]
    excluded = np.zeros(n, dtype=bool)
    excluded[lcf] = True
    excluded[hcf] = True
    candidates = lif[~excluded[lif]]
    in_lcf = np.zeros(n, dtype=bool)
    in_lcf[lcf] = True
    low_low = lif[in_lcf[lif]]
    mean_s = float(influence[candidates].mean()) if len(candidates) else None
    mean_ll = float(influence[low_low].mean()) if len(low_low) else None
    passed = None if mean_s is None or mean_ll is None else mean_s <= mean_ll
    chosen = candidates if passed is not False else candidates[:0]
    return chosen, {
        "k": k,
        "low_influence": int(len(lif)),
        "candidates": int(len(candidates)),
        "low_influence_low_confidence": int(len(low_low)),
        "mean_influence_candidates": mean_s,
        "mean_influence_low_confidence": mean_ll,
        "check_passed": passed,
        "selected": int(len(chosen)),
    }


def algorithm2_order(influence: np.ndarray, confidence: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A full ordering from Algorithm 2: S first (by influence), then every other record by influence."""
    chosen, info = algorithm2(influence, confidence, k)
    by_influence = np.argsort(np.asarray(influence, dtype=np.float64), kind="stable")
    rest = by_influence[~np.isin(by_influence, chosen)]
    return np.concatenate([chosen, rest]).astype(np.int64), info


# -- rankers -------------------------------------------------------------------

# Sign of psi (equations 4-9). Up-weighting record i by eps moves the optimum by
# d theta = -eps H^-1 grad L_i (equations 6-7), so C moves by dC = -eps psi_i
# (equation 8). Removing i is eps = -1/n: dC_remove = +psi_i / n. A record that
# hurts C is one whose removal lowers C, i.e. psi_i < 0, so Algorithm 2's "top
# low influences" are the most negative psi and they are ranked first.
#
# C is the soft error 1 - mean_i p(y_i|x_i) over the train split by default,
# not the training cross-entropy. At a minimum of J = CE + wd/2 ||theta||^2 the
# gradient of the train CE is just -wd theta, and CE is unbounded: a flipped
# record's own term (1/n) grad L_i^T H^-1 grad L_i > 0 dominates its psi (taking
# it out raises its own, large, loss), which gives it the sign of a helpful
# record. The soft error is bounded: on a record whose given label the model
# contradicts, p(1-p) ~ 0, so its own term vanishes and psi_i measures what the
# record does to the others, which is what a mislabelled record harms
# (measured on the synthetic sets in benchmarks/results/debug_labels.md).


def _probabilities(checkpoint: Any, dataset: Any, rows: np.ndarray, device: Any) -> np.ndarray:
    import torch

    from unlearn_cli.models.predict import predict_logits
    from unlearn_cli.models.predict import load_predictor
    from unlearn_cli.data.tensors import tensors

    predictor = load_predictor(checkpoint, device)
    x, _ = tensors(dataset, rows, device)
    return torch.softmax(predict_logits(predictor, x).double(), 1).numpy()


def _given_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return probs[np.arange(len(labels)), labels]


def _engine(checkpoint: Any, dataset: Any, device: Any, settings: RankSettings):
    from unlearn_cli.influence.curvature import CurvatureSettings
    from unlearn_cli.influence.engine import InfluenceEngine

    curvature = CurvatureSettings(solver=settings.solver, damping=settings.damping, seed=settings.seed)
    return InfluenceEngine.build(checkpoint, dataset, device=device, criterion=settings.criterion,
                                 settings=curvature, cache=settings.cache, seed=settings.seed)


def _rank_puma(checkpoint, dataset, rows, device, settings, probs):
    from unlearn_cli.influence.scores import psi

    engine = _engine(checkpoint, dataset, device, settings)
    x, y = engine.rows(rows)
    influence = psi(engine.fmodel, engine.objective, x, y, engine.v).double().cpu().numpy()
    confidence = _given_confidence(probs, dataset.y[rows])
    order, a2 = algorithm2_order(influence, confidence, settings.k)
    info = {"criterion": settings.criterion, "algorithm2": a2, "engine": engine.info,
            "engine_timings": dict(engine.timings)}
    return influence, order, info


def _rank_grad_dot(checkpoint, dataset, rows, device, settings, probs):
    from unlearn_cli.influence.criteria import Objective, get_criterion
    from unlearn_cli.influence.scores import FunctionalModel, criterion_grad, psi
    from unlearn_cli.data.tensors import tensors

    fmodel = FunctionalModel.of(checkpoint.build_model(device))
    objective = Objective(weight_decay=float(checkpoint.training.get("weight_decay", 0.0)))
    criterion = get_criterion(settings.criterion)
    x, y = tensors(dataset, rows, device)
    _, grad_c = criterion_grad(fmodel, criterion, x, y)
    score = psi(fmodel, objective, x, y, grad_c).double().cpu().numpy()
    return score, np.argsort(score, kind="stable"), {"criterion": settings.criterion, "parameters": fmodel.size}


def _rank_self_influence(checkpoint, dataset, rows, device, settings, probs):
    import torch

    from unlearn_cli.influence.curvature import ExactSolver
    from unlearn_cli.influence.scores import per_record_grads

    engine = _engine(checkpoint, dataset, device, settings)
    x, y = engine.rows(rows)
    size = engine.fmodel.size
    chunk = max(1, min(512, 16_000_000 // max(size, 1)))  # bounds the (chunk x parameters) gradient block
    exact = isinstance(engine.solver, ExactSolver)
    out = []
    for start in range(0, len(rows), chunk):
        grads = per_record_grads(engine.fmodel, engine.objective, x[start:start + chunk], y[start:start + chunk])
        if exact:  # every record's iHVP in one batched triangular solve
            solved = engine.solver.solve_many(grads.T).T
        else:
            solved = torch.stack([engine.solver.solve(g) for g in grads]).double()
        out.append((grads.double() * solved).sum(1).cpu())
    score = torch.cat(out).numpy() if out else np.zeros(0)
    return score, np.argsort(-score, kind="stable"), {"engine": engine.info, "batched_exact_solve": exact}


def _rank_confidence(checkpoint, dataset, rows, device, settings, probs):
    score = _given_confidence(probs, dataset.y[rows])
    return score, np.argsort(score, kind="stable"), {}


def _rank_margin(checkpoint, dataset, rows, device, settings, probs):
    labels = dataset.y[rows]
    given = _given_confidence(probs, labels)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    score = given - others.max(1)
    return score, np.argsort(score, kind="stable"), {}


_IMPLEMENTATIONS: dict[str, Callable] = {
    "puma": _rank_puma,
    "self-confidence": _rank_confidence,
    "margin": _rank_margin,
    "grad-dot": _rank_grad_dot,
    "influence": _rank_self_influence,
}


def rank(ranker: str, checkpoint: Any, dataset: Any, *, device: Any = "cpu",
         settings: RankSettings | None = None) -> Ranking:
    """Order the train split of ``dataset``, most suspicious first, with one ranker."""
    info = check_ranker(ranker)
    settings = settings or RankSettings()
    if info.needs_plain and checkpoint.kind != "plain":
        raise BadInput(
            f"ranker '{ranker}' needs the weights of one model; {_name(checkpoint)} is a '{checkpoint.kind}' "
            "checkpoint (an ensemble): use --ranker self-confidence or --ranker margin"
        )
    if settings.k < 1:
        raise BadInput(f"--top must be >= 1, got {settings.k}")
    rows = dataset.train_indices()
    t0 = time.perf_counter()
    probs = _probabilities(checkpoint, dataset, rows, device)
    score, order, details = _IMPLEMENTATIONS[ranker](checkpoint, dataset, rows, device, settings, probs)
    seconds = time.perf_counter() - t0
    return Ranking(ranker, rows, np.asarray(score, dtype=np.float64), np.asarray(order, dtype=np.int64),
                   _given_confidence(probs, dataset.y[rows]), probs.argmax(1), seconds, details)


def _name(checkpoint: Any) -> str:
    return checkpoint.path.name if getattr(checkpoint, "path", None) is not None else "the checkpoint"


# -- the evaluation protocol (Figure 4 / Table 3) --------------------------------

def flip_labels(dataset: Any, rate: float, seed: int) -> tuple[Any, np.ndarray]:
    """A copy of ``dataset`` with round(rate * n_train) train labels changed to another class.

    The new class is uniform over the other classes. Features, ids and splits
    are shared with the original; its labels array is never touched.
    """
    if not 0.0 < rate < 1.0:
        raise BadInput(f"--flip-rate must be between 0 and 1 (exclusive), got {rate}")
    if dataset.num_classes < 2:
        raise BadInput(f"{dataset.name}: flipping labels needs at least two classes")
    train = dataset.train_indices()
    count = int(round(rate * len(train)))
    if count < 1:
        raise BadInput(f"--flip-rate {rate} flips no record of the {len(train)} in {dataset.name}'s train split")
    rng = np.random.default_rng([int(seed), 6])
    flipped = np.sort(rng.choice(train, size=count, replace=False))
    labels = dataset.y.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, dataset.num_classes, size=count)) % dataset.num_classes
    return dataclasses.replace(dataset, y=labels), flipped


def share_found(ranked_rows: np.ndarray, flipped: np.ndarray, fractions=FRACTIONS) -> list[float]:
    """Share of ``flipped`` among the first round(f * n) of ``ranked_rows``, for each f."""
    n = len(ranked_rows)
    hit = np.isin(ranked_rows, flipped)
    total = max(int(hit.sum()), 1)
    found = np.concatenate([[0], np.cumsum(hit)])
    return [float(found[int(round(f * n))] / total) for f in fractions]


def optimal_curve(n: int, flipped: int, fractions=FRACTIONS) -> list[float]:
    return [min(1.0, int(round(f * n)) / max(flipped, 1)) for f in fractions]


def random_curve(n: int, fractions=FRACTIONS) -> list[float]:
    """Expected share found by inspecting records in a uniformly random order."""
    return [int(round(f * n)) / n for f in fractions]


def default_arch(dataset: Any) -> str:
    return "cnn" if len(dataset.input_shape) == 3 else "mlp"


def evaluate(
    dataset: Any,
    rankers: list[str],
    *,
    flip_rate: float = 0.1,
    seed: int = 0,
    device: Any = "cpu",
    epochs: int | None = None,
    k: int | None = None,
    settings: RankSettings | None = None,
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_ranker: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The Figure 4 / Table 3 protocol on one data set; nothing is written to disk.

    Flips labels of a copy of the train split, trains the manifest's default
    recipe (mlp, or cnn for image input), ranks with each ranker and reports the
    share of flipped records found at each inspected fraction with each
    ranker's seconds, beside the optimal and random curves. ``k`` is Algorithm
    2's k (default: the number of flipped records). ``variants`` adds rankings
    under their own labels with changed settings, e.g.
    ``{"puma (C=cross-entropy)": ("puma", {"criterion": "cross-entropy"})}``.
    """
    from unlearn_cli.models.predict import predict_logits
    from unlearn_cli.models.checkpoint import Checkpoint
    from unlearn_cli.training.loop import default_recipe
    from unlearn_cli.models.registry import arch_spec_for
    from unlearn_cli.training.fit import base_meta, fit
    from unlearn_cli.data.tensors import tensors

    runs = [(name, name, {}) for name in rankers]
    runs += [(label, ranker, overrides) for label, (ranker, overrides) in (variants or {}).items()]
    for _, name, _ in runs:
        check_ranker(name)
    if k is not None and k < 1:
        raise BadInput(f"--top must be >= 1, got {k}")
    if epochs is not None and epochs < 1:
        raise BadInput(f"--epochs must be >= 1, got {epochs}")
    corrupted, flipped = flip_labels(dataset, flip_rate, seed)
    train = corrupted.train_indices()
    arch = default_arch(dataset)
    spec = arch_spec_for(corrupted, arch, None, None)
    recipe = default_recipe(arch, seed=seed, epochs=epochs)
    t0 = time.perf_counter()
    model, losses = fit(corrupted, train, spec, recipe, device=device, progress=progress)
    train_s = time.perf_counter() - t0
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    checkpoint = Checkpoint(state, base_meta(spec, recipe, corrupted, corrupted.manifest_path), None, None)

    def accuracy(rows: np.ndarray, labels: np.ndarray) -> float | None:
        if len(rows) == 0:
            return None
        x, _ = tensors(corrupted, rows, device)
        return float((predict_logits(model, x).argmax(1).numpy() == labels[rows]).mean())

    base = dataclasses.replace(settings or RankSettings(), k=k or len(flipped), cache=False, seed=seed)
    results: dict[str, Any] = {}
    for label, name, overrides in runs:
        if on_ranker is not None:
            on_ranker(label)
        ranking = rank(name, checkpoint, corrupted, device=device, settings=dataclasses.replace(base, **overrides))
        results[label] = {
            "found": share_found(ranking.ranked_rows(), flipped),
            "seconds": ranking.seconds,
            "top_k_precision": float(np.isin(ranking.ranked_rows()[: len(flipped)], flipped).mean()),
            "info": _evaluation_info(ranking),
        }
    n = len(train)
    return {
        "dataset": dataset.name,
        "n_train": int(n),
        "flip_rate": float(flip_rate),
        "flipped": int(len(flipped)),
        "seed": int(seed),
        "arch": spec,
        "recipe": recipe.to_dict(),
        "train_s": train_s,
        "final_train_loss": losses[-1] if losses else None,
        "model": {
            "test_accuracy": accuracy(corrupted.test_indices(), dataset.y),
            "train_accuracy_given_labels": accuracy(train, corrupted.y),
            "flipped_fitted": accuracy(flipped, corrupted.y),
        },
        "k": int(base.k),
        "fractions": list(FRACTIONS),
        "optimal": optimal_curve(n, len(flipped)),
        "random": random_curve(n),
        "rankers": results,
    }


def _evaluation_info(ranking: Ranking) -> dict[str, Any]:
    keep = {}
    if "algorithm2" in ranking.info:
        keep["algorithm2"] = ranking.info["algorithm2"]
    if "criterion" in ranking.info:
        keep["criterion"] = ranking.info["criterion"]
    engine = ranking.info.get("engine")
    if engine:
        keep["solver"] = engine.get("solver")
        keep["damping"] = engine.get("damping")
        keep["parameters"] = engine.get("parameters")
    return keep
