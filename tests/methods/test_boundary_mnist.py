"""Boundary Shrink / Expanding remove a whole class of mnist-5k (the setting they were designed for).

The CNN is the shipped ``sample_models/mnist-5k/model.safetensors``: the CLI's
default cnn recipe (``unlearn train MANIFEST --arch cnn``; checked below, and
``tests/test_sample_models.py`` retrains it), so the suite does not train it
again here. Each method forgets every train record of one digit. Done when: that digit's test accuracy falls under
10% while the other digits lose at most 5 points, and the output checkpoint
keeps the original output size.

The paper's defaults (lr 1e-5, 10 epochs, FGSM bound 0.1) do not get there on
this small CNN, for two measured reasons (see the methods' details and the
issue report): with only ~400 records per class, 10 epochs of batches of 64 are
~60 SGD steps (the paper's CIFAR-10 class of 5,000 images gives ~790), and on
MNIST a 0.1 FGSM step moves only ~22% of the digits to another label (MNIST
models need the usual 0.3). The tests therefore set lr=1e-4 (both methods) and
bound=0.3 (shrink) explicitly; the defaults stay the paper's.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import SAMPLES, run_cli
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.models.predict import predict_logits
from unlearn_cli.models.checkpoint import load_checkpoint
from unlearn_cli.models.predict import load_predictor
from unlearn_cli.data.tensors import tensors

MANIFEST = SAMPLES / "mnist-5k" / "manifest.yaml"
DIGIT = 3
SETTINGS = {"boundary-shrink": ["--set", "bound=0.3", "--set", "lr=1e-4"],
            "boundary-expand": ["--set", "lr=1e-4"]}


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    from unlearn_cli.training.loop import default_recipe

    work = tmp_path_factory.mktemp("mnist")
    ckpt = SAMPLES / "mnist-5k" / "model.safetensors"   # read only: outputs and ledgers go to `work`
    meta = load_checkpoint(ckpt).meta
    assert meta["arch"]["name"] == "cnn" and set(meta["arch"]["kwargs"]) == {"input_shape", "num_classes"}, meta
    assert meta["training"] == default_recipe("cnn", seed=0).to_dict(), meta
    ds = load_manifest(MANIFEST)
    rows = ds.train_indices()
    ids = work / "digit.ids"
    ids.write_text("".join(f"{ds.ids[r]}\n" for r in rows[ds.y[rows] == DIGIT]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {m: pool.submit(run_cli, "forget", ckpt, ids, "--method", m, *args, "--out",
                                  work / f"{m}.safetensors", "--json", "--ledger", work / f"{m}.ledger.jsonl",
                                  timeout=900)
                   for m, args in SETTINGS.items()}
        runs = {m: f.result() for m, f in futures.items()}
    return ckpt, ds, runs


def per_class_accuracy(path, ds):
    x, y = tensors(ds, ds.test_indices())
    pred = predict_logits(load_predictor(load_checkpoint(path)), x).argmax(1)
    return {c: float((pred[y == c] == c).float().mean()) for c in range(ds.num_classes)}, pred, y


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_removing_a_digit_drives_its_accuracy_under_10_percent(method, mnist):
    ckpt, ds, runs = mnist
    proc = runs[method]
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    report = json.loads(proc.stdout)
    assert report["metrics"]["method"]["whole_classes_removed"] == [DIGIT]
    before, pred0, y = per_class_accuracy(ckpt, ds)
    out = report["outputs"]["checkpoint"]["path"]
    after, pred1, _ = per_class_accuracy(out, ds)
    assert before[DIGIT] > 0.9
    assert after[DIGIT] < 0.10, after[DIGIT]
    others = y != DIGIT
    acc0 = float((pred0[others] == y[others]).float().mean())
    acc1 = float((pred1[others] == y[others]).float().mean())
    assert acc0 - acc1 <= 0.05, (acc0, acc1)
    for c in range(ds.num_classes):
        if c != DIGIT:
            assert before[c] - after[c] <= 0.10, (c, before[c], after[c])
    original, unlearned = load_checkpoint(ckpt), load_checkpoint(out)
    assert {k: tuple(v.shape) for k, v in unlearned.state.items()} == {k: tuple(v.shape) for k, v in original.state.items()}
    assert unlearned.arch == original.arch
    with torch.no_grad():
        assert load_predictor(unlearned)(tensors(ds, ds.test_indices()[:2])[0]).shape[1] == ds.num_classes
