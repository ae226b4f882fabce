"""The shadow-model attack of Shokri et al. (S&P 2017), set up as in the PUMA
paper's appendix A (the attack behind its Table 2).

* Five shadow models of the target's architecture and recipe, each trained for
  50 epochs on a random 9% ("less than 10%") of the train split.
* Each shadow contributes its training records (label member) and as many
  train records it did not see (label non-member); their outputs train one
  binary attack MLP with hidden layers (128, 64), through the one training loop.
* Attack input: the sorted log-softmax vector plus the true label's
  logit-scaled confidence (``signals.shokri_features``), standardised with
  the attack training set's statistics. One attack model serves every class:
  Shokri's per-class models need more shadow records per class than 9% of a
  small train split holds.
* A record is a member when the attack's P(member) > 0.5 (``threshold``).

Shadow models and the attack MLP are cached (``attacks.shadow``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from unlearn_cli.attacks.base import Attack, Env, Scored
from unlearn_cli.attacks.settings import ShokriSettings
from unlearn_cli.ops.digests import derive_seed
from unlearn_cli.attacks.shadow import FitJob, fit_many, model_meta
from unlearn_cli.attacks.signals import model_logits, shokri_features

#: Hidden widths of the attack classifier: PUMA appendix A (after Graves et al.).
ATTACK_HIDDEN = [128, 64]


class ShokriAttack(Attack):
    name = "shokri"
    needs_recipe = True
    summary = "Shokri et al. shadow models + attack MLP, PUMA appendix A set-up (Table 2)"
    Settings = ShokriSettings

    def __init__(self, env: Env, settings: ShokriSettings):
        super().__init__(env, settings)
        self._attack: Any = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._extra: dict[str, Any] = {}

    def shadow_rows(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(member rows, non-member rows) of shadow ``index``: disjoint, equal size."""
        train = self.env.dataset.train_indices()
        size = max(1, int(self.settings.shadow_fraction * len(train)))  # floor: "less than 10%"
        if 2 * size > len(train):
            size = len(train) // 2
        perm = np.random.default_rng(derive_seed(self.env.seed, "shokri-rows", index)).permutation(train)
        return np.sort(perm[:size]), np.sort(perm[size : 2 * size])

    def _prepare(self) -> None:
        import torch

        from unlearn_cli.models.registry import make_spec
        from unlearn_cli.training.loop import Recipe, init_model, train_model, with_seed

        env, s = self.env, self.settings
        if len(env.dataset.train_indices()) < 4:
            from unlearn_cli.errors import BadInput

            raise BadInput("the shokri attack needs at least 4 train records for its shadow models")
        arch = env.checkpoint.arch
        recipe = replace(Recipe.from_dict(env.checkpoint.training), epochs=s.shadow_epochs)
        env.cache.expect(s.shadows + 1)
        feats, labels, keys = [], [], []
        halves = [self.shadow_rows(i) for i in range(s.shadows)]
        jobs = [FitJob("shokri-shadow", {"index": i}, members,
                       with_seed(recipe, derive_seed(env.seed, "shokri-shadow", i)))
                for i, (members, _) in enumerate(halves)]
        for shadow, (members, nonmembers) in zip(fit_many(env.cache, jobs, env.dataset, arch), halves):
            keys.append(shadow.meta["cache"]["key"])
            model = shadow.build_model(env.device)
            for rows, label in ((members, 1), (nonmembers, 0)):
                logits = model_logits(model, env.dataset, rows, env.device)
                feats.append(shokri_features(logits, env.dataset.y[rows]))
                labels.append(np.full(len(rows), label, dtype=np.int64))
        x, y = np.concatenate(feats), np.concatenate(labels)
        mean, std = x.mean(0), x.std(0)
        std[std < 1e-8] = 1.0  # a constant feature (e.g. a clipped one) carries nothing
        spec = make_spec("mlp", (x.shape[1],), 2, hidden=ATTACK_HIDDEN, activation="relu")
        attack_recipe = Recipe(optimizer="adam", lr=s.attack_lr, epochs=s.attack_epochs,
                               batch_size=s.attack_batch_size, weight_decay=0.0,
                               seed=derive_seed(env.seed, "shokri-attack", 0))

        def make() -> tuple[dict[str, Any], dict[str, Any]]:
            model = init_model(spec, attack_recipe.seed)
            xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
            train_model(model, xt, torch.from_numpy(y), attack_recipe, device=env.device)
            meta = model_meta(spec, attack_recipe, env.dataset,
                              {"feature_mean": mean.tolist(), "feature_std": std.tolist()})
            return model.state_dict(), meta

        # The shadows' keys fix their members; the seed fixes their non-members.
        material = {"shadows": keys, "seed": env.seed, "arch": spec, "recipe": attack_recipe.to_dict()}
        attack_ckpt = env.cache.get_or_make("shokri-attack", material, make)
        self._attack = attack_ckpt.build_model(env.device)
        self._mean = np.asarray(attack_ckpt.meta["cache"]["feature_mean"])
        self._std = np.asarray(attack_ckpt.meta["cache"]["feature_std"])
        p = self._member_probability(x)
        self._extra = {
            "shadow_models": s.shadows,
            "shadow_train_size": int(len(self.shadow_rows(0)[0])),
            # How well the attack separates the shadows' own members: its ceiling.
            "attack_train_accuracy": float(((p > s.threshold) == (y == 1)).mean()),
        }

    def _member_probability(self, features: np.ndarray) -> np.ndarray:
        import torch

        from unlearn_cli.models.predict import predict_logits

        if len(features) == 0:
            return np.zeros(0)
        xt = torch.from_numpy(((features - self._mean) / self._std).astype(np.float32)).to(self.env.device)
        return torch.softmax(predict_logits(self._attack, xt), 1)[:, 1].double().numpy()

    def evaluate(self, checkpoint: Any, predictor: Any) -> Scored:
        if self._attack is None:
            self._prepare()
        env = self.env

        def score_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits = model_logits(predictor, env.dataset, rows, env.device)
            p = self._member_probability(shokri_features(logits, env.dataset.y[rows]))
            return p, p > self.settings.threshold

        scores, decisions = self.by_split(score_rows)
        return Scored(scores, decisions, extra=dict(self._extra))
