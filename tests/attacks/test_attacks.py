"""The attacks on a model that memorised its train split and on one that never saw it.

Done-when of issue #5: on the over-fitted model loss and LiRA reach AUC >= 0.7
(train records vs test records); on the never-trained-on model AUC stays in
0.5 +/- 0.1. Shadow/reference models are cached: a second run trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from unlearn_cli.attacks.registry import run_attack
from unlearn_cli.attacks.settings import ForgetQualitySettings, LiraSettings, LossSettings, ShokriSettings
from unlearn_cli.errors import BadInput
from unlearn_cli.options import parse_options

from noise_fixtures import noise  # noqa: F401  (a session fixture; tests/attacks is on sys.path)

SPLIT_KEYS = {"n", "member_rate", "mean_score"}
TOP_KEYS = {"auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy", "models_trained", "models_reused"}
# 4 references keep the suite fast; the module docstring of lira.py explains the default of 16.
LIRA_SMALL = dict(references=4)


def attack(name, settings, dataset, ckpt, cache, **kw):
    forget = dataset.train_indices()[:30]
    return run_attack(name, settings, dataset=dataset, checkpoint=ckpt, forget_rows=forget, cache_dir=cache, **kw)


def report_shape(entry: dict) -> None:
    assert TOP_KEYS <= set(entry)
    for split in ("forget", "retain", "test"):
        assert SPLIT_KEYS <= set(entry[split])
    assert entry["forget"]["n"] == 30 and entry["test"]["n"] == 300 and entry["retain"]["n"] == 270


def test_loss_attack_separates_an_overfitted_model(noise) -> None:
    dataset, overfit, _, cache = noise
    result = attack("loss", LossSettings(), dataset, overfit, cache)
    report_shape(result.target)
    print("loss overfit AUC forget/retain:", result.target["auc"], result.target["retain"]["auc"])
    assert result.target["auc"] >= 0.7
    assert result.target["retain"]["auc"] >= 0.7
    assert result.target["forget"]["member_rate"] > result.target["test"]["member_rate"]
    assert result.target["models_trained"] == 0        # a population attack trains nothing


def test_loss_attack_is_chance_on_a_model_that_never_saw_the_members(noise) -> None:
    dataset, _, untrained, cache = noise
    result = attack("loss", LossSettings(), dataset, untrained, cache)
    print("loss untrained AUC forget/retain:", result.target["auc"], result.target["retain"]["auc"])
    assert abs(result.target["retain"]["auc"] - 0.5) <= 0.1


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_lira_separates_overfitted_and_not_untrained(noise, mode: str) -> None:
    dataset, overfit, untrained, cache = noise
    settings = LiraSettings(mode=mode, **LIRA_SMALL)
    over = attack("lira", settings, dataset, overfit, cache, reference=untrained)
    report_shape(over.target)
    report_shape(over.reference)
    print(f"lira {mode} AUC overfit forget/retain:", over.target["auc"], over.target["retain"]["auc"],
          "untrained retain:", over.reference["retain"]["auc"])
    assert over.target["auc"] >= 0.7
    assert over.target["retain"]["auc"] >= 0.7
    assert abs(over.reference["retain"]["auc"] - 0.5) <= 0.1
    # Both models face the same reference models; only the first mode's run trains them.
    assert over.target["models_trained"] + over.target["models_reused"] == 4


def test_lira_per_record_variance_option(noise) -> None:
    dataset, overfit, _, cache = noise
    result = attack("lira", LiraSettings(fixed_variance=False, **LIRA_SMALL), dataset, overfit, cache)
    assert result.target["models_trained"] == 0       # same references as the other LiRA runs
    assert result.target["retain"]["auc"] >= 0.7


def test_shokri_caches_shadow_and_attack_models(noise, tmp_path) -> None:
    dataset, overfit, _, _ = noise
    settings = ShokriSettings(shadows=2, shadow_epochs=30, attack_epochs=30)
    first = attack("shokri", settings, dataset, overfit, tmp_path)
    assert first.target["models_trained"] == 3 and first.target["models_reused"] == 0
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    second = attack("shokri", settings, dataset, overfit, tmp_path)
    assert second.target["models_trained"] == 0 and second.target["models_reused"] == 3
    for split in ("forget", "retain", "test"):
        assert second.target[split]["member_rate"] == first.target[split]["member_rate"]
    # On memorised noise the shadow members are confidently right: the attack flags train records.
    assert first.target["forget"]["member_rate"] > first.target["test"]["member_rate"]


def test_a_corrupt_cache_file_is_retrained(noise, tmp_path) -> None:
    dataset, overfit, _, _ = noise
    settings = ShokriSettings(shadows=1, shadow_epochs=5, attack_epochs=5)
    attack("shokri", settings, dataset, overfit, tmp_path)
    victim = sorted(tmp_path.glob("shokri-shadow-*.safetensors"))[0]
    victim.write_bytes(b"not a checkpoint")
    warnings: list[str] = []
    again = attack("shokri", settings, dataset, overfit, tmp_path, warn=warnings.append)
    assert again.target["models_trained"] == 1
    assert any("unreadable cache file" in w for w in warnings)


def test_settings_reject_unknown_and_bad_values() -> None:
    with pytest.raises(BadInput, match="unknown setting bogus for attack 'lira'; valid: retain_sample, references"):
        parse_options(LiraSettings, {"bogus": "1"}, owner="attack 'lira'", word="setting")
    with pytest.raises(BadInput, match="attack 'lira' setting 'mode' must be one of online, offline, got 'sideways'"):
        parse_options(LiraSettings, {"mode": "sideways"}, owner="attack 'lira'", word="setting")
    with pytest.raises(BadInput, match="attack 'shokri' setting 'shadows' expects int, got 'five'"):
        parse_options(ShokriSettings, {"shadows": "five"}, owner="attack 'shokri'", word="setting")
    with pytest.raises(BadInput, match="shadow_fraction"):
        parse_options(ShokriSettings, {"shadow_fraction": "0.9"}, owner="attack 'shokri'", word="setting")
    s = parse_options(LiraSettings, {"references": "8", "fixed_variance": "false"}, owner="attack 'lira'", word="setting")
    assert s.references == 8 and s.fixed_variance is False
    assert parse_options(LossSettings, {"threshold": "0.25"}, owner="attack 'loss'", word="setting").threshold == 0.25


# --------------------------------------------------------------------------- forget quality


@dataclass
class NoConfig:
    pass


class FakeRetrain:
    """Retrains on the remaining records with the request's seed: exact unlearning."""

    name = "fake-retrain"
    requires = "plain"
    Config = NoConfig

    def forget(self, request, config):
        from unlearn_cli.methods.base import Outcome
        from unlearn_cli.training.loop import Recipe, with_seed
        from unlearn_cli.training.fit import fit

        ckpt = request.checkpoint
        recipe = with_seed(Recipe.from_dict(ckpt.training), request.seed)
        model, _ = fit(request.dataset, request.retain_rows, ckpt.arch, recipe)
        return Outcome(state=model.state_dict())


class FakeNothing:
    """Returns the original weights: no unlearning at all."""

    name = "fake-nothing"
    requires = "plain"
    Config = NoConfig
    calls: list = []

    def forget(self, request, config):
        from unlearn_cli.methods.base import Outcome

        FakeNothing.calls.append(request)
        return Outcome(state=dict(request.checkpoint.state))


def unlearned_checkpoint(ckpt, method_name: str):
    from unlearn_cli.models.checkpoint import Checkpoint

    meta = {**ckpt.meta, "lineage": [{"method": method_name, "config": {}}]}
    return Checkpoint(ckpt.state, meta, ckpt.path, ckpt.sha256)


def test_forget_quality_scores_exact_retraining_one_and_doing_nothing_near_zero(noise, tmp_path) -> None:
    dataset, overfit, _, _ = noise
    settings = ForgetQualitySettings(models=4)
    exact = attack("forget-quality", settings, dataset, unlearned_checkpoint(overfit, "fake-retrain"),
                   tmp_path, method=FakeRetrain())
    assert exact.target["forgetting_quality"] == 1.0
    assert exact.target["forget"]["forgetting_quality"] == 1.0
    assert exact.target["models_trained"] == 12           # 4 originals, 4 retrained, 4 unlearned
    assert exact.target["retain"]["member_rate"] is None  # no OUT models exist for retain records

    nothing = attack("forget-quality", settings, dataset, unlearned_checkpoint(overfit, "fake-nothing"),
                     tmp_path, method=FakeNothing())
    print("forget quality exact / nothing:", exact.target["forgetting_quality"],
          nothing.target["forgetting_quality"])
    assert nothing.target["forgetting_quality"] < 0.3
    assert nothing.target["models_trained"] == 4          # originals and retrained come from the cache
    assert nothing.target["models_reused"] == 8
    # The method saw the request as the plugin protocol promises.
    req = FakeNothing.calls[-1]
    assert set(req.forget_rows.tolist()) == set(dataset.train_indices()[:30].tolist())
    assert len(req.retain_rows) == 270 and not set(req.retain_rows.tolist()) & set(req.forget_rows.tolist())
    # The over-fitted checkpoint still remembers its forget records; the test records look like retraining.
    assert nothing.target["forget"]["member_rate"] > nothing.target["test"]["member_rate"]


def test_forget_quality_needs_a_lineage(noise, tmp_path) -> None:
    dataset, overfit, _, _ = noise
    with pytest.raises(BadInput, match="no lineage"):
        attack("forget-quality", ForgetQualitySettings(models=2), dataset, overfit, tmp_path, method=FakeRetrain())
