"""Hostile option values (issue #15): every number finite and in its declared range, refused before any work.

Each CLI case goes through ``harness.refuse``: exit 2, one short stderr line
naming the option, no traceback, every input byte-identical, and nothing
written where the command would have written (the output folder stays empty:
no checkpoint, ledger, sidecar, ids file or cache). The unit tests below walk
every registered method, attack and the influence settings, so a new numeric
option without a declared range fails the suite.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from harness import refuse
from unlearn_cli import plugins
from unlearn_cli.errors import BadInput
from unlearn_cli.options import Range, check_ranges, describe, parse_options


@pytest.fixture(scope="module")
def world(blobs_manifest: Path, blobs_checkpoint: Path, tmp_path_factory) -> dict[str, Any]:
    """The blobs checkpoint, its data, a request of five train IDs and two hostile config files."""
    from unlearn_cli.data.manifest import load_manifest

    here = tmp_path_factory.mktemp("hostile-options")
    dataset = load_manifest(blobs_manifest)
    ids = here / "forget.txt"
    ids.write_text("".join(f"{dataset.ids[i]}\n" for i in dataset.train_indices()[:5]))
    configs = {}
    for name, text in {"nan": "delta: .nan\n", "inf": "eta_max: .inf\n", "grid": "eta_grid: 1.0e9\n",
                       "neg": "lissa_depth: -1\n"}.items():
        configs[name] = here / f"{name}.yaml"
        configs[name].write_text(text)
    inputs = [blobs_checkpoint, blobs_manifest, blobs_manifest.parent / "blobs.safetensors", ids,
              *configs.values()]
    return {"ckpt": blobs_checkpoint, "manifest": blobs_manifest, "ids": ids, "configs": configs,
            "inputs": inputs}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _nothing_written(folder: Path, allowed: set[str] = frozenset()) -> None:
    left = {p.name for p in folder.rglob("*")} - set(allowed)
    assert not left, f"a refused run wrote {sorted(left)}"


# --------------------------------------------------------------------------- forget --set

FORGET_SETS = [
    # the named cases
    ("puma", "delta=nan", "option 'delta' must be in [0, 1e6], got nan"),
    ("puma", "delta=inf", "option 'delta'"),
    ("puma", "lambda_l2=nan", "option 'lambda_l2'"),
    ("puma", "lissa_depth=-1", "option 'lissa_depth' must be in [1, 1e6], got -1"),
    ("puma", "damping=nan", "option 'damping'"),
    ("puma", "eta_max=inf", "option 'eta_max'"),
    ("puma", "eta_grid=1e9", "option 'eta_grid' must be in [1, 100], got 1000000000"),
    ("puma", "fisher_samples=-1", "option 'fisher_samples'"),
    ("puma", "eta=inf", "option 'eta'"),
    ("salun", "weight_decay=nan", "option 'weight_decay'"),
    # more of PUMA's and the influence engine's
    ("puma", "eta=nan", "option 'eta'"),
    ("puma", "eta=-1", "option 'eta'"),
    ("puma", "eta_min=0", "option 'eta_min'"),
    ("puma", "eta_min=1e-300", "option 'eta_min'"),
    ("puma", "delta=-0.1", "option 'delta'"),
    ("puma", "lambda_l1=-inf", "option 'lambda_l1'"),
    ("puma", "lambda_l2=0", "lambda_solver=exact"),
    ("puma", "damping=-1", "option 'damping'"),
    ("puma", "damping=1e300", "option 'damping'"),
    ("puma", "fisher_samples=1e9", "option 'fisher_samples'"),
    ("puma", "cg_tol=nan", "option 'cg_tol'"),
    ("puma", "cg_maxiter=0", "option 'cg_maxiter'"),
    ("puma", "lissa_scale=-inf", "option 'lissa_scale'"),
    ("puma", "lissa_repeats=0", "option 'lissa_repeats'"),
    ("puma", "ekfac_sample=nan", "option 'ekfac_sample' expects int"),
    ("puma", "reweight_sample=-1", "option 'reweight_sample'"),
    ("puma", "check_sample=1e12", "option 'check_sample'"),
    ("puma", "curvature_sample=99999999999999999999999", "option 'curvature_sample'"),
    # the fine-tuning methods
    ("salun", "sparsity=nan", "option 'sparsity' must be in (0, 1], got nan"),
    ("salun", "lr=inf", "option 'lr'"),
    ("salun", "momentum=1", "option 'momentum' must be in [0, 1), got 1.0"),
    ("salun", "batch_size=0", "option 'batch_size'"),
    ("neggrad", "alpha=nan", "option 'alpha'"),
    ("neggrad", "lr=-0.1", "option 'lr'"),
    ("neggrad", "weight_decay=inf", "option 'weight_decay'"),
    ("boundary-shrink", "bound=inf", "option 'bound'"),
    ("boundary-shrink", "lr=nan", "option 'lr'"),
    ("boundary-expand", "momentum=nan", "option 'momentum'"),
    ("boundary-expand", "epochs=0", "option 'epochs'"),
    ("finetune", "epochs=1e9", "option 'epochs'"),
    ("finetune", "lr=0", "option 'lr'"),
    ("amnesiac", "repair_epochs=-1", "option 'repair_epochs'"),
    ("amnesiac", "repair_lr=nan", "option 'repair_lr'"),
]


@pytest.mark.parametrize("method, pair, expect", FORGET_SETS, ids=[f"{m}:{p}" for m, p, _ in FORGET_SETS])
def test_forget_refuses_a_hostile_set_before_any_work(world, out, method, pair, expect):
    refuse(["forget", world["ckpt"], world["ids"], "--method", method, "--set", pair,
            "--out", out / "model.unlearned.safetensors"], world["inputs"], expect=expect)
    _nothing_written(out)


@pytest.mark.parametrize("config, expect", [
    ("nan", "option 'delta'"), ("inf", "option 'eta_max'"), ("grid", "option 'eta_grid'"),
    ("neg", "option 'lissa_depth'"),
])
def test_forget_refuses_a_hostile_config_file(world, out, config, expect):
    refuse(["forget", world["ckpt"], world["ids"], "--method", "puma", "--config", world["configs"][config],
            "--out", out / "model.unlearned.safetensors"], world["inputs"], expect=expect)
    _nothing_written(out)


def test_eta_min_above_eta_max_is_refused(world, out):
    refuse(["forget", world["ckpt"], world["ids"], "--method", "puma", "--set", "eta_min=10", "--set", "eta_max=1",
            "--out", out / "m.safetensors"], world["inputs"], expect="eta_min <= eta_max")
    _nothing_written(out)


# --------------------------------------------------------------------------- attack --set

ATTACK_SETS = [
    ("shokri", "threshold=nan", "attack 'shokri' setting 'threshold' must be in [0, 1], got nan"),
    ("shokri", "shadow_fraction=2", "setting 'shadow_fraction' must be in (0, 0.5], got 2.0"),
    ("shokri", "shadows=0", "setting 'shadows'"),
    ("shokri", "attack_lr=inf", "setting 'attack_lr'"),
    ("shokri", "retain_sample=-1", "setting 'retain_sample'"),
    ("lira", "references=0", "attack 'lira' setting 'references' must be in [2, 1024], got 0"),
    ("lira", "offline_alpha=1", "setting 'offline_alpha'"),
    ("loss", "threshold=nan", "attack 'loss' setting 'threshold'"),
    ("loss", "threshold=-1", "setting 'threshold'"),
    ("forget-quality", "models=1", "setting 'models'"),
    ("forget-quality", "delta=nan", "setting 'delta'"),
    ("forget-quality", "bin_width=0", "setting 'bin_width'"),
]


@pytest.mark.parametrize("attack, pair, expect", ATTACK_SETS, ids=[f"{a}:{p}" for a, p, _ in ATTACK_SETS])
def test_attack_refuses_a_hostile_setting_before_training_any_model(world, out, attack, pair, expect):
    refuse(["attack", world["ckpt"], "--ids", world["ids"], "--attack", attack, "--set", pair,
            "--cache-dir", out / "cache"], world["inputs"], expect=expect)
    _nothing_written(out)


# --------------------------------------------------------------------------- debug-labels, calibrate

@pytest.mark.parametrize("args, expect", [
    (["--damping", "nan"], "--damping must be in [0, 1e6], got nan"),
    (["--damping", "inf"], "--damping"),
], ids=["nan", "inf"])
def test_debug_labels_refuses_a_non_finite_damping(world, out, args, expect):
    refuse(["debug-labels", world["ckpt"], *args, "--out", out / "suspects.txt"], world["inputs"], expect=expect)
    _nothing_written(out)


@pytest.mark.parametrize("args, expect", [
    (["--damping", "nan"], "--damping must be in [0, 1e6], got nan"),
    (["--damping", "-inf"], "--damping"),
    (["--holdout", "nan"], "--holdout must be in (0, 1), got nan"),
    (["--holdout", "1"], "--holdout"),
    (["--eta", "inf"], "--eta"),
    (["--eta", "0"], "--eta"),
    (["--top", "0"], "--top"),
], ids=["damping-nan", "damping-neginf", "holdout-nan", "holdout-1", "eta-inf", "eta-0", "top-0"])
def test_calibrate_refuses_a_hostile_flag(world, out, args, expect):
    refuse(["calibrate", world["ckpt"], *args, "--out", out / "c.safetensors"], world["inputs"], expect=expect)
    _nothing_written(out)


# --------------------------------------------------------------------------- train, mark

@pytest.mark.parametrize("args, expect", [
    (["--lr", "nan"], "--lr must be in (0, 1000], got nan"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--epochs", "-1"], "--epochs must be in [0, 100000], got -1"),
    (["--epochs", "100000000"], "--epochs"),
    (["--weight-decay", "inf"], "--weight-decay"),
    (["--weight-decay", "nan"], "--weight-decay"),
    (["--batch-size", "0"], "--batch-size"),
    (["--seed", "-1"], "--seed"),
], ids=["lr-nan", "lr-inf", "lr-0", "epochs-neg", "epochs-huge", "wd-inf", "wd-nan", "batch-0", "seed-neg"])
def test_train_refuses_a_hostile_recipe(world, out, args, expect):
    refuse(["train", world["manifest"], "--out", out / "t.safetensors", *args], world["inputs"], expect=expect)
    _nothing_written(out)


@pytest.mark.parametrize("fraction", ["nan", "inf", "2", "0", "-0.5"])
def test_mark_refuses_a_hostile_fraction(world, out, fraction):
    refuse(["mark", world["manifest"], "--strategy", "random", "--fraction", fraction, "--out", out / "m.txt"],
           world["inputs"], expect="--fraction must be in (0, 1]")
    _nothing_written(out)


# --------------------------------------------------------------------------- --wait

@pytest.mark.parametrize("wait", ["nan", "-1", "-inf"])
def test_forget_wait_nan_or_negative_is_refused_even_behind_a_held_lock(world, out, wait):
    """With the output's lock held, a nan wait used to poll forever: refused at once, in a subprocess."""
    from unlearn_cli.ops.locking import hold_locks, lock_path_for

    target = out / "model.unlearned.safetensors"
    with hold_locks([lock_path_for(target)]):
        refuse(["forget", world["ckpt"], world["ids"], "--method", "puma", "--out", target, "--wait", wait],
               world["inputs"], subprocess_run=True, expect="--wait must be >= 0")
    _nothing_written(out)


def test_calibrate_wait_nan_is_refused(world, out):
    refuse(["calibrate", world["ckpt"], "--out", out / "c.safetensors", "--wait", "nan"], world["inputs"],
           subprocess_run=True, expect="--wait must be >= 0")
    _nothing_written(out)


# --------------------------------------------------------------------------- every option declares a range

def _options_classes() -> dict[str, type]:
    from unlearn_cli.diagnostics.calibration import CalibrationSettings
    from unlearn_cli.diagnostics.rankers import RankSettings
    from unlearn_cli.influence.settings import InfluenceSettings, PatchSettings

    found: dict[str, type] = {f"method {n}": cls.Config for n, cls in plugins.load_all("methods").items()}
    found.update({f"attack {n}": cls.Settings for n, cls in plugins.load_all("attacks").items()})
    found.update({c.__name__: c for c in (InfluenceSettings, PatchSettings, RankSettings, CalibrationSettings)})
    return found


def _numeric_fields(cls: type) -> list[tuple[dataclasses.Field, type]]:
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
        if tp in (int, float):
            out.append((f, tp))
    return out


CLASSES = _options_classes()
NUMERIC = [(owner, f.name, tp) for owner, cls in CLASSES.items() for f, tp in _numeric_fields(cls)]


def test_the_walk_sees_every_kind_of_options_class():
    assert {"method puma", "method salun", "method neggrad", "attack shokri", "attack lira",
            "InfluenceSettings", "CalibrationSettings"} <= set(CLASSES)
    assert len(NUMERIC) > 60


@pytest.mark.parametrize("owner, name, tp", NUMERIC, ids=[f"{o}.{n}" for o, n, _ in NUMERIC])
def test_every_numeric_option_declares_a_range_that_holds_its_default(owner, name, tp):
    f = CLASSES[owner].__dataclass_fields__[name]
    bounds = f.metadata.get("range")
    assert isinstance(bounds, Range), f"{owner}: option '{name}' declares no range (option(..., ge=, le=))"
    assert bounds.low is not None or bounds.high is not None, f"{owner}.{name}: an empty range"
    assert not bounds.allow_inf, f"{owner}.{name}: no built-in option takes infinity"
    if f.default is not None:
        assert f.default in bounds, f"{owner}.{name}: default {f.default} outside {bounds}"
    shown = {o["name"]: o["range"] for o in describe(CLASSES[owner])}
    assert shown[name] == bounds.shown()


@pytest.mark.parametrize("owner, name, tp", NUMERIC, ids=[f"{o}.{n}" for o, n, _ in NUMERIC])
def test_every_numeric_option_refuses_non_finite_and_out_of_range_values(owner, name, tp):
    cls = CLASSES[owner]
    bounds: Range = cls.__dataclass_fields__[name].metadata["range"]
    hostile = ["nan", "inf", "-inf"]
    if bounds.low is not None:
        hostile.append(str(bounds.low - 1 if tp is int else -abs(bounds.low) * 2 - 1))
    if bounds.high is not None:
        hostile.append(str(int(bounds.high) * 10 + 1 if tp is int else bounds.high * 10 + 1))
    for text in hostile:
        with pytest.raises(BadInput) as info:
            parse_options(cls, {name: text}, owner="x")
        message = str(info.value)
        assert f"'{name}'" in message and "\n" not in message and len(message) < 300, message
    default = cls.__dataclass_fields__[name].default
    if default is not None:  # the default, typed as text, is accepted (its range holds it)
        assert math.isclose(float(getattr(parse_options(cls, {name: str(default)}), name)), float(default))


def test_settings_built_from_flags_check_their_ranges_and_name_the_flag():
    from unlearn_cli.diagnostics.calibration import CalibrationSettings
    from unlearn_cli.diagnostics.rankers import RankSettings
    from unlearn_cli.influence.settings import InfluenceSettings

    with pytest.raises(BadInput, match=r"^--damping must be in \[0, 1e6\], got nan$"):
        RankSettings(damping=float("nan"))
    with pytest.raises(BadInput, match=r"^--holdout must be in \(0, 1\), got 1.0$"):
        CalibrationSettings(holdout=1.0)
    with pytest.raises(BadInput, match=r"^option 'lissa_depth' must be in \[1, 1e6\], got 0$"):
        InfluenceSettings(lissa_depth=0)
    check_ranges(InfluenceSettings())


def test_a_one_sided_range_says_finite_for_infinity():
    from unlearn_cli.options import check_value, range_of

    with pytest.raises(BadInput, match=r"^x must be a finite number >= 0, got inf$"):
        check_value("x", float("inf"), range_of(ge=0))
    with pytest.raises(BadInput, match=r"^x must be a finite number, got nan$"):
        check_value("x", float("nan"), None)
    check_value("x", float("inf"), range_of(ge=0, allow_inf=True))
    assert str(range_of(gt=0, le=1)) == "in (0, 1]" and range_of(ge=0, lt=1).shown() == "[0, 1)"
