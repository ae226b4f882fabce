"""Forget quality: is a method's output distinguishable from retraining?

The evaluation of the NeurIPS 2023 machine unlearning challenge, scaled down
for small models. K original models (the checkpoint's recorded architecture
and recipe, K seeds) are each unlearned by the checkpoint's own method (the
last removal in its lineage: method and config; a later calibrate step is not one), and K models are retrained
from scratch without the forget set with the same K seeds. Model i of both
families shares seed i, so a method that retrains exactly scores 1.

For each forget record the statistic is the logit-scaled confidence phi of its
true label under each model; the strongest threshold attack telling the K
unlearned values from the K retrained ones gives the record's epsilon
(delta 1e-5, ``metrics.record_epsilon``), binned by 0.5 into a score 2/2^n;
the mean over records is the forgetting quality (1 = like retraining,
0 = perfectly separable).

Beside that score the attacked checkpoint itself gets member rates: a
record is a member when its phi under the checkpoint is above what the K
retrained models give it (offline likelihood test with a pooled variance, one-
sided at ``offline_alpha``). That applies to forget and test records (OUT of
every retrained model); retain records are IN every retrained model, so no
such test exists for them and their member rate is null.

It trains 2K models and runs the method K times: meant for small models.
Methods that need a SISA or update-log checkpoint are not supported yet.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from unlearn_cli import __version__
from unlearn_cli.data.ids import id_set_digest
from unlearn_cli.errors import BadInput
from unlearn_cli.attacks.base import Attack, Scored
from unlearn_cli.attacks.lira import _pooled_std
from unlearn_cli.attacks.metrics import forgetting_quality
from unlearn_cli.attacks.settings import ForgetQualitySettings
from unlearn_cli.ops.digests import derive_seed
from unlearn_cli.attacks.shadow import FitJob, fit_many, model_meta
from unlearn_cli.attacks.signals import logit_confidence, model_logits


class ForgetQualityAttack(Attack):
    name = "forget-quality"
    needs_recipe = True
    attacks_original = False
    summary = "NeurIPS 2023 challenge score: K unlearned vs K retrained models, per-record epsilon"
    Settings = ForgetQualitySettings

    def _resolve_method(self, checkpoint: Any) -> tuple[str, Any, Any]:
        """The checkpoint's last method (``env.method`` when the caller passes its own) and its config."""
        from unlearn_cli.options import parse_options

        removals = checkpoint.removals
        if not removals:
            raise BadInput(f"{checkpoint.path}: forget-quality needs an unlearned checkpoint; this one has "
                           "no lineage entry that removed records (run unlearn forget first)")
        last = removals[-1]
        name = last.get("method")
        if not name:
            raise BadInput(f"{checkpoint.path}: the last lineage entry names no method")
        method = self.env.method
        if method is None:
            from unlearn_cli.methods.registry import get

            method = get(name)
        requires = getattr(method, "requires", "plain")
        if requires != "plain":
            raise BadInput(f"forget-quality supports methods that work on plain checkpoints; "
                           f"'{name}' requires a '{requires}' checkpoint")
        return name, method, parse_options(method.Config, last.get("config") or {}, owner=f"method '{name}'")

    def _phi(self, ckpt: Any, rows: np.ndarray) -> np.ndarray:
        env = self.env
        model = ckpt.build_model(env.device)
        return logit_confidence(model_logits(model, env.dataset, rows, env.device), env.dataset.y[rows])

    def evaluate(self, checkpoint: Any, predictor: Any) -> Scored:
        from unlearn_cli.methods.base import Request
        from unlearn_cli.options import as_dict
        from unlearn_cli.training.loop import Recipe, with_seed

        env, s = self.env, self.settings
        name, method, config = self._resolve_method(checkpoint)
        splits = env.splits
        if len(splits.forget) == 0:
            raise BadInput("forget-quality needs at least one forget record")
        if len(splits.remaining) == 0:
            raise BadInput("forget-quality cannot retrain without any remaining train record")
        last = (checkpoint.removals or [{}])[-1]
        recorded = last.get("removed_ids_digest")
        # A digest keyed with the operator's ledger key cannot be recomputed here: compare plain ones only.
        plain = last.get("key_id") is None
        if recorded and plain and recorded != id_set_digest(env.dataset.ids[r] for r in splits.forget):
            env.warn("the attacked IDs are not the set the checkpoint's last removal recorded; "
                     "forget quality is measured for the IDs given")
        arch, recipe = checkpoint.arch, Recipe.from_dict(checkpoint.training)
        train = env.dataset.train_indices()
        forget_digest = hashlib.sha256(splits.forget.tobytes()).hexdigest()
        k = s.models
        env.cache.expect(3 * k)
        cfg = as_dict(config)
        scored_rows = np.concatenate([splits.forget, splits.test])
        u_phi, r_phi = [], []
        seeds = [derive_seed(env.seed, "forget-quality", i) for i in range(k)]
        jobs = [FitJob(role, {"index": i}, rows, with_seed(recipe, seeds[i])) for i in range(k)
                for role, rows in (("fq-original", train), ("fq-retrained", splits.remaining))]
        models = fit_many(env.cache, jobs, env.dataset, arch)
        for i in range(k):
            seed_i = seeds[i]
            original, retrained = models[2 * i], models[2 * i + 1]

            def unlearn(original: Any = original, seed_i: int = seed_i) -> tuple[dict, dict]:
                request = Request(checkpoint=original, dataset=env.dataset, forget_rows=splits.forget,
                                  retain_rows=splits.remaining, device=env.device, seed=seed_i,
                                  warn=env.warn)
                outcome = method.forget(request, config)
                meta = model_meta(original.arch, Recipe.from_dict(original.training), env.dataset)
                meta["lineage"] = [{"method": name, "config": cfg}]
                return outcome.state, meta

            material = {"original": original.meta["cache"]["key"], "method": name, "config": cfg,
                        "forget_sha256": forget_digest, "seed": seed_i, "tool_version": __version__}
            unlearned = env.cache.get_or_make("fq-unlearned", material, unlearn)
            u_phi.append(self._phi(unlearned, splits.forget))
            r_phi.append(self._phi(retrained, scored_rows))
        u = np.stack(u_phi)
        r_all = np.stack(r_phi)
        n_forget = len(splits.forget)
        score, eps = forgetting_quality(u, r_all[:, :n_forget], s.delta, s.bin_width)
        scores, decisions = self._membership(predictor, scored_rows, r_all, n_forget)
        finite = eps[np.isfinite(eps)]
        extra = {
            "forgetting_quality": score,
            "method": name,
            "models": k,
            "epsilon_median": float(np.median(eps)),
            "epsilon_infinite": int((~np.isfinite(eps)).sum()),
            "epsilon_max_finite": float(finite.max()) if finite.size else None,
        }
        return Scored(scores, decisions, extra=extra,
                      split_extra={"forget": {"forgetting_quality": score}})

    def _membership(self, predictor: Any, rows: np.ndarray, r_phi: np.ndarray,
                    n_forget: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Offline test of the attacked model against the retrained models (module docstring)."""
        from scipy.stats import norm

        env, s = self.env, self.settings
        phi = logit_confidence(model_logits(predictor, env.dataset, rows, env.device), env.dataset.y[rows])
        sd = _pooled_std(r_phi, np.ones_like(r_phi, dtype=bool))
        z = (phi - r_phi.mean(0)) / sd
        member = z > norm.ppf(1.0 - s.offline_alpha)
        return ({"forget": z[:n_forget], "retain": None, "test": z[n_forget:]},
                {"forget": member[:n_forget], "retain": None, "test": member[n_forget:]})
