"""unlearn import: a state_dict trained elsewhere becomes a checkpoint; without a recipe, retraining refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, run_here, write_blobs
from tests.hostile.harness import refuse


def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _save(state: dict, path: Path) -> Path:
    """A plain state_dict file, no metadata: what a user's own training script writes."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _three_features(directory: Path) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({"x": rng.normal(size=(100, 3)).astype(np.float32), "y": (np.arange(100) % 2).astype(np.int64),
               "id": np.arange(100, dtype=np.int64)}, str(directory / "three.safetensors"))
    manifest = directory / "manifest.yaml"
    manifest.write_text("name: three\nnum_classes: 2\ndata:\n  path: three.safetensors\n  features: x\n"
                        "  labels: y\n  ids: id\nsplits:\n  test: {fraction: 0.2, seed: 0}\n")
    return manifest


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model trained by ``unlearn train``, its bare state_dict, a matching recipe and 10 ids to forget."""
    from unlearn_cli.models.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("import")
    manifest = write_blobs(d, n=200, spread=1.4)
    trained = d / "trained.safetensors"
    run_cli("train", manifest, "--out", trained, "--epochs", "10", "--quiet", check=True)
    weights = _save(_state(trained), d / "weights.safetensors")
    recipe = d / "recipe.yaml"
    recipe.write_text("".join(f"{k}: {v}\n" for k, v in load_checkpoint(trained).training.items()))
    ids = d / "ids.txt"
    run_cli("mark", manifest, "--strategy", "random", "--count", "10", "--out", ids, "--quiet", check=True)
    bare = d / "bare.safetensors"
    run_cli("import", weights, "--arch", "mlp", "--data", manifest, "--out", bare, "--quiet", check=True)
    return {"dir": d, "manifest": manifest, "trained": trained, "weights": weights, "recipe": recipe,
            "ids": ids, "bare": bare}


def test_import_keeps_the_accuracies_and_records_no_recipe(setup):
    from unlearn_cli.models.checkpoint import load_checkpoint

    original, imported = load_checkpoint(setup["trained"]), load_checkpoint(setup["bare"])
    for split in ("train", "test"):
        assert imported.meta["metrics"][split]["accuracy"] == original.meta["metrics"][split]["accuracy"]
        assert imported.meta["metrics"][split]["loss"] == pytest.approx(original.meta["metrics"][split]["loss"])
    assert imported.meta["training"] is None and imported.meta["recipe"] == "none"
    assert imported.meta["imported"]["source"] == "weights.safetensors"
    assert imported.meta["imported"]["weights_sha256"]
    assert imported.meta["lineage"] == [] and imported.dataset["train_ids_digest"] == original.dataset[
        "train_ids_digest"]


def test_import_reports_every_split(setup):
    out = setup["dir"] / "reported.safetensors"
    proc = run_here("import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--out", out,
                    "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["metrics"]) >= {"train", "test", "imported"}
    assert report["metrics"]["train"]["accuracy"] is not None


def test_with_a_recipe_retrain_works(setup):
    d = setup["dir"]
    ckpt = d / "with-recipe.safetensors"
    run_cli("import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--recipe", setup["recipe"],
            "--out", ckpt, "--quiet", check=True)
    from unlearn_cli.models.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt).training == load_checkpoint(setup["trained"]).training
    run_cli("forget", ckpt, setup["ids"], "--method", "retrain", "--out", d / "retrained.safetensors", "--quiet",
            check=True)


def test_without_a_recipe_retrain_and_shokri_refuse_puma_and_loss_work(setup):
    d, bare = setup["dir"], setup["bare"]
    refuse(["forget", bare, setup["ids"], "--method", "retrain", "--out", d / "no.safetensors"], [bare],
           expect="--recipe")
    refuse(["attack", bare, "--ids", setup["ids"], "--attack", "shokri"], [bare], expect="--recipe")
    puma = run_cli("forget", bare, setup["ids"], "--method", "puma", "--out", d / "puma.safetensors", "--json")
    assert puma.returncode == 0, puma.stderr
    assert any("assumes weight decay 0" in w for w in json.loads(puma.stdout)["warnings"])
    loss = run_cli("attack", bare, "--ids", setup["ids"], "--attack", "loss", "--quiet")
    assert loss.returncode == 0, loss.stderr


def test_methods_lists_the_recipe_need():
    out = run_here("methods", "retrain", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["metrics"]["method"]["needs_recipe"] is True
    out = run_here("methods", "puma", "--json")
    assert json.loads(out.stdout)["metrics"]["method"]["needs_recipe"] is False


@pytest.mark.parametrize("change, expect", [
    (lambda s: {k: v for k, v in s.items() if k != "layers.2.bias"}, "missing keys ['layers.2.bias']"),
    (lambda s: {**s, "extra.weight": s["layers.2.bias"].clone()}, "unexpected keys ['extra.weight']"),
    (lambda s: {**s, "layers.1.weight": s["layers.1.weight"][:, :10]}, "[32, 10] in the file, [32, 64]"),
    (lambda s: {**s, "layers.0.bias": s["layers.0.bias"] * float("nan")}, "NaN/inf"),
])
def test_weights_that_do_not_fit_are_refused(setup, tmp_path, change, expect):
    weights = _save(change(_state(setup["weights"])), tmp_path / "bad.safetensors")
    refuse(["import", weights, "--arch", "mlp", "--data", setup["manifest"], "--out", tmp_path / "o.safetensors"],
           [weights], expect=expect)
    assert not (tmp_path / "o.safetensors").exists()


def test_another_feature_count_or_class_count_is_refused(setup, tmp_path):
    three = _three_features(tmp_path / "three")
    refuse(["import", setup["weights"], "--arch", "mlp", "--data", three, "--out", tmp_path / "o.safetensors"],
           [setup["weights"]], expect="takes 2 input features, the manifest's data has 3")
    classes = write_blobs(tmp_path / "classes", n=90, classes=3)
    refuse(["import", setup["weights"], "--arch", "mlp", "--data", classes, "--out", tmp_path / "o.safetensors"],
           [setup["weights"]], expect="the model outputs 2 classes")


def test_bad_recipes_are_refused(setup, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(setup["recipe"].read_text() + "warmup: 3\n")
    out = refuse(["import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--recipe", recipe,
                  "--out", tmp_path / "o.safetensors"], [recipe], expect="unknown recipe key 'warmup'")
    assert "valid keys: optimizer, lr, epochs, batch_size, weight_decay, momentum, seed" in out.stderr
    recipe.write_text("optimizer: adam\nlr: -1\nepochs: 3\nbatch_size: 8\n")
    refuse(["import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--recipe", recipe,
            "--out", tmp_path / "o.safetensors"], [recipe], expect="lr must be")
    recipe.write_text("optimizer: adam\nlr: 0.01\n")
    refuse(["import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--recipe", recipe,
            "--out", tmp_path / "o.safetensors"], [recipe], expect="lacks epochs, batch_size")


def test_not_safetensors_and_existing_out_are_refused(setup, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a safetensors file")
    refuse(["import", junk, "--arch", "mlp", "--data", setup["manifest"], "--out", tmp_path / "o.safetensors"],
           [junk], expect="not a safetensors state_dict")
    out = tmp_path / "exists.safetensors"
    out.write_bytes(b"keep me")
    refuse(["import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--out", out], [out],
           expect="--force")
    forced = run_here("import", setup["weights"], "--arch", "mlp", "--data", setup["manifest"], "--out", out,
                      "--force", "--quiet")
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes() != b"keep me"
