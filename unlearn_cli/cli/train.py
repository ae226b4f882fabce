"""unlearn train: train a classifier on a manifest's train split and write a checkpoint.

Examples:
    unlearn train sample_models/moons/manifest.yaml --out moons.safetensors
    unlearn train sample_models/mnist-5k/manifest.yaml --arch cnn --epochs 10 --out mnist.safetensors
    unlearn train data.yaml --arch mlp --hidden 128,64 --lr 0.005 --seed 3 --out model.safetensors --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DebugOpt, DeviceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt
from .output import command_run, key_values, show, split_table


def _widths(text: str | None) -> list[int] | None:
    from ..errors import BadInput

    if text is None:
        return None
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"--hidden must be comma-separated integers like 64,32, got '{text}'") from None
    if any(w < 1 for w in widths):
        raise BadInput(f"--hidden widths must be positive, got '{text}'")
    return widths


def train(
    manifest: Annotated[Path, typer.Argument(help="Dataset manifest (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors).")],
    arch: Annotated[str, typer.Option("--arch", help="linear, mlp, cnn, densenet or a plugin architecture.")] = "mlp",
    hidden: Annotated[Optional[str], typer.Option("--hidden", help="MLP hidden widths, e.g. 64,32 (the paper's).")] = None,
    activation: Annotated[Optional[str], typer.Option("--activation", help="MLP activation: relu or sigmoid.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs (default per architecture).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Mini-batch size.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="L2 coefficient.")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="adam or sgd.")] = None,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Train a classifier on a manifest's train split and write a checkpoint."""
    with command_run("train", report=report, json_out=json_out, quiet=quiet, debug=debug) as run:
        from ..data.manifest import load_manifest
        from ..models.checkpoint import save_checkpoint
        from ..models.registry import get_builder
        from ..training import default_recipe, resolve_device
        from ..workflow import arch_spec_for, base_meta, evaluate_splits, fit, param_count

        dev = resolve_device(device)
        get_builder(arch)  # unknown architecture: fail before loading data
        with run.phase("load"):
            dataset = load_manifest(manifest)
        run.input("manifest", dataset.manifest_path, None)
        run.input("data", dataset.data_path, dataset.data_sha256)
        spec = arch_spec_for(dataset, arch, _widths(hidden), activation)
        recipe = default_recipe(
            arch, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
            optimizer=optimizer, seed=seed,
        )
        run.data["config"] = {"arch": spec, "training": recipe.to_dict(), "device": str(dev)}
        with run.phase("train"), run.progress(f"training {spec['name']}") as bar:
            model, losses = fit(dataset, dataset.train_indices(), spec, recipe, device=dev, progress=bar)
        with run.phase("evaluate"):
            metrics = evaluate_splits(
                model, dataset, {"train": dataset.train_indices(), "test": dataset.test_indices()}, dev
            )
        state = model.state_dict()
        meta = base_meta(spec, recipe, dataset, out)
        meta["metrics"] = {k: {"accuracy": v["accuracy"], "loss": v["loss"]} for k, v in metrics.items()}
        with run.phase("write"):
            digest = save_checkpoint(out, state, meta)
        run.output("checkpoint", out, digest)
        run.data["metrics"] = {**metrics, "final_train_loss": losses[-1] if losses else None,
                               "parameters": param_count(state)}
        show(
            run,
            key_values(f"trained {spec['name']} on {dataset.name}", {
                "checkpoint": str(out), "parameters": param_count(state), "epochs": recipe.epochs,
                "seed": recipe.seed,
            }),
            split_table("metrics", metrics),
        )
