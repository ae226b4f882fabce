"""The likelihood-ratio attack (LiRA) of Carlini et al. (S&P 2022).

K reference models of the target's architecture and recipe are trained on
random halves of the attack population, balanced so that every record is IN
(trained on) for exactly half of them and OUT for the rest. For each record
the statistic is the logit-scaled confidence phi = log(p_y / (1 - p_y)),
computed stably from logits; its IN and OUT values over the references are
fitted with gaussians.

* online: score = log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out);
  member if the likelihood ratio exceeds 1 (score > 0).
* offline: score = (phi - mu_out) / s_out; member if the one-sided p-value
  under OUT is below ``offline_alpha``.
* Variance: global by default (``fixed_variance=true``): s_in and s_out are
  each one number, the root mean of the per-record variances over all
  records; ``fixed_variance=false`` fits them per record. Carlini et al.
  (2022, their "fixed variance" variant) find per-example variances better
  only from about 64 references: with K references each record has K/2 IN
  and K/2 OUT values, and a standard deviation from K/2 values is known only
  within a chi-square factor (K = 16: 0.66x to 2.04x at 95%), which at low FPR costs
  more than per-record calibration gains. The means stay per record: that
  is what makes LiRA per-example (Carlini et al.'s point against the global
  loss threshold).
* The report states the references used and the precision they imply
  (``reference_interval``): the 95% half-width of a per-record mean in units
  of the fitted standard deviation (1.96 / sqrt(K/2)) and the 95% factor
  range of a per-record standard deviation.

References depend only on the data set, its train split, the recipe, the
seed and K (``attacks.shadow`` keys its cache on exactly these), so every
target of the same data set and recipe (the unlearned model, the original,
the retrained reference, another method's output) reuses them.

The population is the train split together with the test split. With halves
of the train split alone the test records (the non-members every number is
measured against) would be OUT of every reference and online LiRA could not
score them; putting them IN half the references is what Carlini et al. do and
costs nothing, since references are never the model under attack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.attacks.base import Attack, Scored
from unlearn_cli.attacks.settings import LiraSettings
from unlearn_cli.ops.digests import derive_seed
from unlearn_cli.attacks.shadow import FitJob, fit_many
from unlearn_cli.attacks.signals import logit_confidence, model_logits

#: Floor on fitted standard deviations: a record every reference agrees on
#: exactly would otherwise divide by zero.
MIN_STD = 1e-6


def balanced_keep(k: int, n: int, seed: int) -> np.ndarray:
    """(k, n) bool: model i trains on record j; every column has k // 2 Trues."""
    rng = np.random.default_rng(seed)
    order = rng.random((k, n)).argsort(0)
    return order < k // 2


def _pooled_std(values: np.ndarray, mask: np.ndarray) -> float:
    """Root mean of per-record variances of the masked entries (records with >= 2)."""
    counts = mask.sum(0)
    ok = counts >= 2
    if not ok.any():
        masked = values[mask]
        return max(float(masked.std()), MIN_STD) if masked.size > 1 else 1.0
    mean = np.where(mask, values, 0.0).sum(0) / np.maximum(counts, 1)
    var = (np.where(mask, (values - mean) ** 2, 0.0).sum(0) / np.maximum(counts - 1, 1))[ok]
    return max(float(np.sqrt(var.mean())), MIN_STD)


def _per_record(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.maximum(mask.sum(0), 1)
    mean = np.where(mask, values, 0.0).sum(0) / counts
    var = np.where(mask, (values - mean) ** 2, 0.0).sum(0) / np.maximum(counts - 1, 1)
    return mean, np.maximum(np.sqrt(var), MIN_STD)


def reference_interval(k: int) -> dict[str, float | int]:
    """The precision K references give each record's gaussians (module docstring)."""
    from scipy.stats import chi2

    n_in, n_out = k // 2, k - k // 2
    dof = max(n_in - 1, 1)
    return {
        "references": k, "in_per_record": n_in, "out_per_record": n_out,
        "mean_half_width_in_std": 1.96 / float(np.sqrt(max(n_in, 1))),
        "per_record_std_factor_95": [float(np.sqrt(dof / chi2.ppf(0.975, dof))),
                                     float(np.sqrt(dof / chi2.ppf(0.025, dof)))],
    }


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray | float) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)


class LiraAttack(Attack):
    name = "lira"
    needs_recipe = True
    summary = "Carlini et al. likelihood-ratio attack on logit-scaled confidence, K reference models"
    Settings = LiraSettings
    #: The attack population (sorted data set rows); None until the first ``evaluate`` trains the references.
    population: np.ndarray | None = None

    def _prepare(self) -> None:
        from unlearn_cli.training.loop import Recipe, with_seed

        env, s = self.env, self.settings
        population = np.union1d(env.dataset.train_indices(), env.dataset.test_indices())
        k = s.references
        keep = balanced_keep(k, len(population), derive_seed(env.seed, "lira-keep", k))
        recipe = Recipe.from_dict(env.checkpoint.training)
        env.cache.expect(k)
        phi = np.empty((k, len(population)))
        labels = env.dataset.y[population]
        jobs = [FitJob("lira-reference", {"references": k, "index": i}, population[keep[i]],
                       with_seed(recipe, derive_seed(env.seed, "lira-reference", i))) for i in range(k)]
        for i, ref in enumerate(fit_many(env.cache, jobs, env.dataset, env.checkpoint.arch)):
            logits = model_logits(ref.build_model(env.device), env.dataset, population, env.device)
            phi[i] = logit_confidence(logits, labels)
        self.population, self.keep = population, keep
        self.mu_in, sd_in = _per_record(phi, keep)
        self.mu_out, sd_out = _per_record(phi, ~keep)
        if s.fixed_variance:
            self.sd_in: np.ndarray | float = _pooled_std(phi, keep)
            self.sd_out: np.ndarray | float = _pooled_std(phi, ~keep)
        else:
            self.sd_in, self.sd_out = sd_in, sd_out

    def _at(self, value: np.ndarray | float, where: np.ndarray) -> np.ndarray | float:
        return value[where] if isinstance(value, np.ndarray) else value

    def score_rows(self, predictor: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, decisions) for data set rows (all in the population)."""
        from scipy.stats import norm

        env, s = self.env, self.settings
        assert self.population is not None
        where = np.searchsorted(self.population, rows)
        phi = logit_confidence(model_logits(predictor, env.dataset, rows, env.device), env.dataset.y[rows])
        mu_out, sd_out = self.mu_out[where], self._at(self.sd_out, where)
        if s.mode == "offline":
            z = (phi - mu_out) / sd_out
            return z, z > norm.ppf(1.0 - s.offline_alpha)
        score = _log_normal(phi, self.mu_in[where], self._at(self.sd_in, where)) - _log_normal(phi, mu_out, sd_out)
        return score, score > 0.0

    def evaluate(self, checkpoint: Any, predictor: Any) -> Scored:
        if self.population is None:
            self._prepare()
        scores, decisions = self.by_split(lambda rows: self.score_rows(predictor, rows))
        s = self.settings
        extra = {"mode": s.mode, "references": s.references, "fixed_variance": s.fixed_variance,
                 "variance": "global" if s.fixed_variance else "per-record",
                 "reference_interval": reference_interval(s.references)}
        if s.fixed_variance:
            extra.update({"std_in": float(self.sd_in), "std_out": float(self.sd_out)})
        return Scored(scores, decisions, extra=extra)
