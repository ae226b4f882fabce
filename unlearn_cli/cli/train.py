"""unlearn train: train a classifier on a manifest's train split and write a checkpoint.

Examples:
    unlearn train sample_models/moons/manifest.yaml --out moons.safetensors
    unlearn train sample_models/mnist-5k/manifest.yaml --arch cnn --epochs 10 --out mnist.safetensors
    unlearn train sample_models/radial/manifest.yaml --hidden 128,64 --lr 0.005 --seed 3 --out radial.safetensors
    unlearn train sample_models/moons/manifest.yaml --sisa-shards 5 --sisa-slices 4 --out sisa.safetensors
    unlearn train sample_models/moons/manifest.yaml --track-updates --out logged.safetensors
    unlearn train data/manifest.yaml --arch mypkg.models:build --arch-opt width=32 --out mine.safetensors

--sisa-shards/--sisa-slices write a SISA ensemble for ``forget --method sisa``
(tensors prefixed shard{i}.) and a sidecar with every constituent's state after
every slice; --track-updates writes a plain model for ``--method amnesiac`` and a
sidecar with every batch's parameter update. Sidecars
are named <sha256[:16]>.<name>.safetensors beside the checkpoint.

An existing --out (or --report) is refused unless --force is given; then it
is replaced atomically. --out may be neither the manifest nor its data file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.options import (
    ArchOpt, ArchOptsOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt,
)
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
    manifest: Annotated[Path, typer.Argument(metavar="MANIFEST", help="Dataset manifest (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="CKPT", help="Checkpoint to write (.safetensors).")],
    arch: ArchOpt = "mlp",
    arch_opt: ArchOptsOpt = None,
    hidden: Annotated[Optional[str], typer.Option(
        "--hidden", metavar="WIDTHS", help="MLP hidden widths, e.g. 64,32 (the paper's).")] = None,
    activation: Annotated[Optional[str], typer.Option(
        "--activation", metavar="relu|sigmoid", help="MLP activation (default relu).")] = None,
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", metavar="N", help="Epochs (default per architecture).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", metavar="F", help="Learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", metavar="N", help="Mini-batch size.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(
        "--weight-decay", metavar="F", help="L2 coefficient.")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", metavar="adam|sgd", help="Optimizer.")] = None,
    sisa_shards: Annotated[Optional[int], typer.Option(
        "--sisa-shards", metavar="S", help="SISA: train this many isolated constituents on disjoint shards.")] = None,
    sisa_slices: Annotated[Optional[int], typer.Option(
        "--sisa-slices", metavar="R", help="SISA: slices per shard, trained incrementally (default 1).")] = None,
    sisa_aggregate: Annotated[Optional[str], typer.Option(
        "--sisa-aggregate", help="SISA prediction: vote (majority, default) or mean (softmax).",
        metavar="vote|mean")] = None,
    track_updates: Annotated[bool, typer.Option(
        "--track-updates", help="Record every batch's parameter update (for --method amnesiac).")] = False,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Train a classifier on a manifest's train split and write a checkpoint.

    \b
    Examples:
      unlearn train sample_models/moons/manifest.yaml --out moons.safetensors
      unlearn train sample_models/mnist-5k/manifest.yaml --arch cnn --epochs 10 --out mnist.safetensors
      unlearn train sample_models/moons/manifest.yaml --sisa-shards 5 --sisa-slices 4 --out sisa.safetensors
      unlearn train data/manifest.yaml --arch mypkg.models:build --arch-opt width=32 --out mine.safetensors

    --arch takes a registered name or an import path package.module:callable
    (imported from PYTHONPATH or installed packages); --arch-opt key=value sets
    the builder's options, and the checkpoint records them all.

    --sisa-shards writes a SISA ensemble (for `unlearn forget --method sisa`);
    --track-updates records every batch's update (for --method amnesiac).
    An existing --out is refused unless --force is given.
    """
    with command_run("train", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.output_checked("--out", out)
        run.claim([("manifest", manifest)], [("--out", out)])
        run.preload("torch")  # timed as startup_s, outside total_s
        from unlearn_cli.data.manifest import load_manifest
        from unlearn_cli.models.registry import arch_spec_for, get_builder
        from unlearn_cli.training.loop import default_recipe, resolve_device
        from unlearn_cli.training.train import TrainVariant, train_checkpoint

        dev = resolve_device(device)
        variant = TrainVariant(sisa_shards, sisa_slices, sisa_aggregate, track_updates)
        get_builder(arch)  # unknown architecture: fail before loading data
        with run.phase("load"):
            dataset = load_manifest(manifest)
        run.input("manifest", dataset.manifest_path, None)
        run.input("data", dataset.data_path, dataset.data_sha256)
        run.claim([("manifest", dataset.manifest_path), ("data file", dataset.data_path)], [("--out", out)])
        spec = arch_spec_for(dataset, arch, _widths(hidden), activation, options=arch_opt or ())
        recipe = default_recipe(
            arch, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
            optimizer=optimizer, seed=seed,
        )
        run.data["config"] = {"arch": spec, "training": recipe.to_dict(), "device": str(dev)}
        if variant.sisa:
            run.data["config"]["sisa"] = variant.sisa_config()
        with run.progress(variant.describe(spec)) as bar:
            trained = train_checkpoint(dataset, spec, recipe, out, variant, device=dev, progress=bar,
                                       warn=run.warn, phase=run.phase)
        for name, (path, digest) in trained.outputs.items():
            run.output(name, path, digest)
        run.data["metrics"] = trained.metrics
        summary = {"checkpoint": str(out), "parameters": trained.metrics["parameters"],
                   "epochs": recipe.epochs, "seed": recipe.seed}
        if variant.sisa:
            summary.update(shards=sisa_shards, slices=trained.meta["sisa"]["slices"],
                           aggregate=trained.meta["sisa"]["aggregate"])
        if track_updates:
            summary["update log (MiB)"] = round(trained.metrics["update_log"]["bytes"] / 2**20, 2)
        show(run, key_values(f"trained {spec['name']} on {dataset.name}", summary),
             split_table("metrics", trained.splits))
