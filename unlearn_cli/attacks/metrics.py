"""Numbers that summarise a membership attack, and the forget-quality score.

Every function here is plain numpy on per-record scores (higher = "more
likely a member") and decisions (True = "member"); no torch, no models.

* ``roc_auc``: area under the ROC curve of members against non-members
  (Mann-Whitney U; ties count one half).
* ``tpr_at_fpr``: the best true-positive rate among thresholds whose
  false-positive rate is at most the target (Carlini et al. 2022 report this
  at 1% and 0.1%). With N non-members the smallest non-zero FPR is 1/N, so
  at 0.1% it needs 1000 of them to mean anything; ``n`` is reported beside it.
* ``epsilon_from_rates`` / ``record_epsilon`` / ``epsilon_score``: the NeurIPS
  2023 unlearning challenge's per-record privacy degree and its 2/2^n score.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

#: delta of the (epsilon, delta) reading of threshold attacks: the challenge's value.
DEFAULT_DELTA = 1e-5
#: Width of the epsilon bins of the challenge's score.
DEFAULT_BIN_WIDTH = 0.5


def _arr(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()


def roc_auc(members: Sequence[float], nonmembers: Sequence[float]) -> float | None:
    """P(score of a random member > score of a random non-member), ties half."""
    from scipy.stats import rankdata

    pos, neg = _arr(members), _arr(nonmembers)
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks handle ties
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def tpr_at_fpr(members: Sequence[float], nonmembers: Sequence[float], fpr: float) -> float | None:
    """Highest TPR over thresholds "member if score >= t" whose FPR <= ``fpr``."""
    pos, neg = _arr(members), _arr(nonmembers)
    if len(pos) == 0 or len(neg) == 0:
        return None
    thresholds = np.unique(np.concatenate([pos, neg, [np.inf]]))
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    fprs = (len(neg) - np.searchsorted(neg_sorted, thresholds, side="left")) / len(neg)
    tprs = (len(pos) - np.searchsorted(pos_sorted, thresholds, side="left")) / len(pos)
    ok = fprs <= fpr + 1e-12
    return float(tprs[ok].max()) if ok.any() else 0.0


def member_rate(decisions: Sequence[bool]) -> float | None:
    d = np.asarray(decisions, dtype=bool).ravel()
    return float(d.mean()) if d.size else None


def balanced_accuracy(member_decisions: Sequence[bool], nonmember_decisions: Sequence[bool]) -> float | None:
    """(TPR + TNR) / 2 of the attack's own member/non-member decisions."""
    tpr, fpr = member_rate(member_decisions), member_rate(nonmember_decisions)
    if tpr is None or fpr is None:
        return None
    return 0.5 * (tpr + 1.0 - fpr)


def separation(members: Sequence[float], nonmembers: Sequence[float],
               member_decisions: Sequence[bool], nonmember_decisions: Sequence[bool]) -> dict[str, float | None]:
    """AUC, TPR at 1% and 0.1% FPR and balanced accuracy of members vs non-members."""
    return {
        "auc": roc_auc(members, nonmembers),
        "tpr_at_1pct_fpr": tpr_at_fpr(members, nonmembers, 0.01),
        "tpr_at_0.1pct_fpr": tpr_at_fpr(members, nonmembers, 0.001),
        "balanced_accuracy": balanced_accuracy(member_decisions, nonmember_decisions),
    }


# --------------------------------------------------------------------------- forget quality


def epsilon_from_rates(fprs: Sequence[float], fnrs: Sequence[float], delta: float = DEFAULT_DELTA) -> float:
    """Privacy degree of one record from the (FPR, FNR) of a set of attacks.

    Per attack: eps = max(log((1-delta-FPR)/FNR), log((1-delta-FNR)/FPR)).
    As in the challenge's reference code, an attack with FPR = FNR = 0 (a
    perfect separation) gives infinity and one with exactly one of them 0 is
    discarded: with few models a single extreme sample would otherwise give
    infinity for two identical distributions. A term whose numerator is not
    positive is no evidence (minus infinity). The result is clamped at 0: an
    attack worse than chance says nothing, and the score must not exceed 1.
    """
    best = 0.0
    for fpr, fnr in zip(fprs, fnrs):
        if fpr == 0 and fnr == 0:
            return math.inf
        if fpr == 0 or fnr == 0:
            continue
        terms = []
        for num, den in ((1.0 - delta - fpr, fnr), (1.0 - delta - fnr, fpr)):
            terms.append(math.log(num / den) if num > 0 else -math.inf)
        best = max(best, *terms)
    return best


def threshold_rates(unlearned: Sequence[float], retrained: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of every threshold attack that calls "unlearned" on one side of t.

    Positives are the unlearned models' values, negatives the retrained ones';
    thresholds run over every observed value, in both directions (a method can
    leave its forget set more or less confident than retraining would).
    """
    u, r = _arr(unlearned), _arr(retrained)
    t = np.unique(np.concatenate([u, r]))
    fpr_up = (len(r) - np.searchsorted(np.sort(r), t, side="right")) / len(r)  # P(r > t)
    fnr_up = np.searchsorted(np.sort(u), t, side="right") / len(u)               # P(u <= t)
    fprs = np.concatenate([fpr_up, 1.0 - fpr_up])   # "unlearned if > t", then "if <= t"
    fnrs = np.concatenate([fnr_up, 1.0 - fnr_up])
    return fprs, fnrs


def record_epsilon(unlearned: Sequence[float], retrained: Sequence[float], delta: float = DEFAULT_DELTA) -> float:
    """Epsilon of the strongest threshold attack telling one record's statistic
    under unlearned models from the same under retrained models."""
    if len(_arr(unlearned)) == 0 or len(_arr(retrained)) == 0:
        raise ValueError("record_epsilon needs at least one unlearned and one retrained value")
    fprs, fnrs = threshold_rates(unlearned, retrained)
    return epsilon_from_rates(fprs, fnrs, delta)


def epsilon_score(epsilon: float, bin_width: float = DEFAULT_BIN_WIDTH) -> float:
    """2 / 2^n with n the 1-based index of epsilon's bin of width ``bin_width``.

    epsilon in [0, 0.5) scores 1, [0.5, 1) scores 1/2, ...; infinity (a
    perfect separation) scores 0. The challenge capped n at 13, giving 2^-12
    rather than 0 for infinity; 0 is the limit and reads more honestly.
    """
    if math.isinf(epsilon):
        return 0.0
    n = math.floor(max(epsilon, 0.0) / bin_width) + 1
    return 2.0 / 2.0**n


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DEFAULT_DELTA,
                       bin_width: float = DEFAULT_BIN_WIDTH) -> tuple[float, np.ndarray]:
    """Mean per-record score and the per-record epsilons.

    ``unlearned`` and ``retrained`` are (models, records) arrays of the same
    per-record statistic; 1 means indistinguishable from retraining.
    """
    u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError("unlearned and retrained must be (models, records) with the same records")
    eps = np.array([record_epsilon(u[:, j], r[:, j], delta) for j in range(u.shape[1])])
    scores = np.array([epsilon_score(e, bin_width) for e in eps])
    return float(scores.mean()) if len(scores) else math.nan, eps
