"""Train the example classifier with a plain PyTorch loop (no ``unlearn`` imports).

    python examples/own_model/train.py --out own --epochs 40 --seed 0

Reads the shipped breast-cancer data set directly
(``sample_models/breast-cancer/breast-cancer.safetensors``: features ``x``,
labels ``y``, split masks ``train_mask`` / ``test_mask``) and preprocesses it
the way its manifest says (``normalize: standard``: mean and standard
deviation of the train rows only), so that ``unlearn import`` with that
manifest sees the inputs this model was trained on. Writes into ``--out``:

- ``model.safetensors``: the state_dict (``safetensors.torch.save_file``);
- ``recipe.yaml``: how it was trained (what ``unlearn import --recipe`` reads,
  so retraining and shadow models can redo it);
- ``metrics.json``: this script's own accuracy per split (also printed, and
  copied to ``--out-metrics FILE`` when given).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

from model import build

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "sample_models" / "breast-cancer" / "breast-cancer.safetensors"
RECIPE = {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "weight_decay": 1e-4}


def load_data(path: Path) -> dict[str, np.ndarray]:
    """Features standardised with train-row statistics, as the manifest's ``normalize: standard`` does."""
    arrays = load_file(str(path))
    x, train = arrays["x"].astype(np.float32), arrays["train_mask"].astype(bool)
    stats = x[train].astype(np.float64)  # float64 sums: float32 loses precision over many rows
    centre, spread = stats.mean(axis=0), stats.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    x = ((x - centre.astype(np.float32)) / spread.astype(np.float32)).astype(np.float32)
    return {"x": x, "y": arrays["y"].astype(np.int64), "train": train, "test": arrays["test_mask"].astype(bool)}


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    # torch's weight_decay adds wd * theta to the gradient: the objective is mean CE + wd/2 ||theta||^2.
    opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=gen).split(RECIPE["batch_size"]):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the weights, recipe and metrics")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--data", type=Path, default=DATA, help="the breast-cancer safetensors file")
    parser.add_argument("--out-metrics", type=Path, help="also write the metrics JSON here")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    d = load_data(args.data)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    model = build(input_shape=(x.shape[1],), num_classes=int(y.max()) + 1, width=args.width)
    train(model, x[d["train"]], y[d["train"]], args.epochs, args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(args.out / "model.safetensors"))
    recipe = {**RECIPE, "epochs": args.epochs, "seed": args.seed}
    (args.out / "recipe.yaml").write_text("".join(f"{k}: {v}\n" for k, v in recipe.items()))
    metrics = {split: {"n": int(d[split].sum()), "accuracy": accuracy(model, x[d[split]], y[d[split]])}
               for split in ("train", "test")}
    text = json.dumps(metrics, indent=2) + "\n"
    (args.out / "metrics.json").write_text(text)
    if args.out_metrics is not None:
        args.out_metrics.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
