"""unlearn train: train a classifier on a manifest's train split and write a checkpoint.

Examples:
    unlearn train sample_models/moons/manifest.yaml --out moons.safetensors
    unlearn train sample_models/mnist-5k/manifest.yaml --arch cnn --epochs 10 --out mnist.safetensors
    unlearn train data.yaml --arch mlp --hidden 128,64 --lr 0.005 --seed 3 --out model.safetensors --json
    unlearn train data.yaml --sisa-shards 5 --sisa-slices 4 --out sisa.safetensors      # for --method sisa
    unlearn train data.yaml --track-updates --out logged.safetensors                   # for --method amnesiac

--sisa-shards/--sisa-slices write a SISA ensemble (tensors prefixed shard{i}.) and
a sidecar with every constituent's state after every slice; --track-updates
writes a plain model and a sidecar with every batch's parameter update. Sidecars
are named <sha256[:16]>.<name>.safetensors beside the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.options import DebugOpt, DeviceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt
from unlearn_cli.cli.output import command_run, key_values, show, split_table


def _widths(text: str | None) -> list[int] | None:
    from unlearn_cli.errors import BadInput

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
    sisa_shards: Annotated[Optional[int], typer.Option(
        "--sisa-shards", help="SISA: train this many isolated constituents on disjoint shards.")] = None,
    sisa_slices: Annotated[Optional[int], typer.Option(
        "--sisa-slices", help="SISA: slices per shard, trained incrementally (default 1).")] = None,
    sisa_aggregate: Annotated[Optional[str], typer.Option(
        "--sisa-aggregate", help="SISA prediction: vote (majority, default) or mean (softmax).",
        metavar="vote|mean")] = None,
    track_updates: Annotated[bool, typer.Option(
        "--track-updates", help="Record every batch's parameter update (for --method amnesiac).")] = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Train a classifier on a manifest's train split and write a checkpoint."""
    with command_run("train", report=report, json_out=json_out, quiet=quiet, debug=debug) as run:
        run.preload("torch")  # timed as startup_s, outside total_s
        from unlearn_cli.data.manifest import load_manifest
        from unlearn_cli.models.checkpoint import save_checkpoint
        from unlearn_cli.models.sidecar import save_sidecar, sidecar_path
        from unlearn_cli.models.registry import get_builder
        from unlearn_cli.training.loop import default_recipe, resolve_device
        from unlearn_cli.models.registry import arch_spec_for
        from unlearn_cli.training.fit import base_meta, fit
        from unlearn_cli.models.predict import evaluate_splits
        from unlearn_cli.models.checkpoint import param_count

        dev = resolve_device(device)
        _check_variant(sisa_shards, sisa_slices, sisa_aggregate, track_updates)
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
        meta = base_meta(spec, recipe, dataset, out)
        sidecars: dict = {}
        extra: dict = {}
        if sisa_shards is not None:
            from unlearn_cli.training.sisa import SIDECAR, constituent_metrics, train_sisa

            slices = sisa_slices if sisa_slices is not None else 1
            aggregate = sisa_aggregate or "vote"
            run.data["config"]["sisa"] = {"shards": sisa_shards, "slices": slices, "aggregate": aggregate}
            with run.phase("train"), run.progress(f"training {sisa_shards} SISA constituents") as bar:
                trained = train_sisa(dataset, spec, recipe, sisa_shards, slices, aggregate, device=dev, progress=bar)
            if "warning" in trained.info:
                run.warn(trained.info["warning"])
            state, losses = trained.state, []
            meta.update(kind="sisa", sisa=trained.meta)
            sidecars[SIDECAR] = trained.slice_states
            predictor = _ensemble(state, meta, out, dev)
            extra["constituents"] = constituent_metrics(state, meta, dataset, dev)
        elif track_updates:
            from unlearn_cli.training.update_log import SIDECAR, train_tracked

            with run.phase("train"), run.progress(f"training {spec['name']} (tracking updates)") as bar:
                model, losses, log, log_meta = train_tracked(
                    dataset, dataset.train_indices(), spec, recipe, device=dev, progress=bar)
            state, predictor = model.state_dict(), model
            meta["update_log"] = log_meta
            sidecars[SIDECAR] = log
            extra["update_log"] = {"steps": log_meta["steps"], "bytes": log_meta["bytes"]}
        else:
            with run.phase("train"), run.progress(f"training {spec['name']}") as bar:
                model, losses = fit(dataset, dataset.train_indices(), spec, recipe, device=dev, progress=bar)
            state, predictor = model.state_dict(), model
        with run.phase("evaluate"):
            metrics = evaluate_splits(
                predictor, dataset, {"train": dataset.train_indices(), "test": dataset.test_indices()}, dev
            )
        meta["metrics"] = {k: {"accuracy": v["accuracy"], "loss": v["loss"]} for k, v in metrics.items()}
        with run.phase("write"):
            digest = save_checkpoint(out, state, meta)
            run.output("checkpoint", out, digest)
            for name, tensors in sidecars.items():
                path = sidecar_path(out, digest, name)
                run.output(f"sidecar.{name}", path, save_sidecar(path, tensors, {"checkpoint": digest}))
        parameters = param_count(state)
        run.data["metrics"] = {**metrics, "final_train_loss": losses[-1] if losses else None,
                               "parameters": parameters, **extra}
        summary = {"checkpoint": str(out), "parameters": parameters, "epochs": recipe.epochs, "seed": recipe.seed}
        if sisa_shards is not None:
            summary.update(shards=sisa_shards, slices=meta["sisa"]["slices"], aggregate=meta["sisa"]["aggregate"])
        if track_updates:
            summary["update log (MiB)"] = round(extra["update_log"]["bytes"] / 2**20, 2)
        show(run, key_values(f"trained {spec['name']} on {dataset.name}", summary), split_table("metrics", metrics))


def _check_variant(shards, slices, aggregate, track_updates) -> None:
    """SISA and update tracking are alternatives; their options need --sisa-shards."""
    from unlearn_cli.errors import BadInput

    if shards is None and (slices is not None or aggregate is not None):
        option = "--sisa-slices" if slices is not None else "--sisa-aggregate"
        raise BadInput(f"{option} needs --sisa-shards S")
    if shards is not None and track_updates:
        raise BadInput("--track-updates and --sisa-shards are alternatives: a SISA ensemble is unlearned by "
                       "retraining shards, an update log by subtracting batches; choose one")
    if shards is not None and shards < 1:
        raise BadInput(f"--sisa-shards must be >= 1, got {shards}")
    if slices is not None and slices < 1:
        raise BadInput(f"--sisa-slices must be >= 1, got {slices}")
    if aggregate is not None and aggregate not in ("vote", "mean"):
        raise BadInput(f"--sisa-aggregate must be vote or mean, got '{aggregate}'")


def _ensemble(state, meta, out, device):
    from unlearn_cli.models.checkpoint import Checkpoint
    from unlearn_cli.models.ensemble import load_ensemble

    return load_ensemble(Checkpoint(state, meta, out), device)
