"""unlearn evaluate: accuracy, loss and ECE of a checkpoint on each split.

Examples:
    unlearn evaluate sample_models/moons/model.safetensors
    unlearn evaluate sample_models/mnist-5k/model.safetensors --device cpu --json
    unlearn evaluate moons.safetensors --data sample_models/moons/manifest.yaml --report eval.json
"""

from __future__ import annotations

from unlearn_cli.cli.options import (
    CheckpointArg, DataOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt,
)
from unlearn_cli.cli.output import command_run, show, split_table


def evaluate(
    checkpoint: CheckpointArg,
    data: DataOpt = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Accuracy, loss and ECE (15 bins) per split.

    \b
    Examples:
      unlearn evaluate sample_models/moons/model.safetensors
      unlearn evaluate sample_models/mnist-5k/model.safetensors --device cpu --json

    --data defaults to the manifest recorded in the checkpoint.
    """
    with command_run("evaluate", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.claim([("input checkpoint", checkpoint), ("--data manifest", data)], [])
        run.preload("torch")  # timed as startup_s, outside total_s
        from unlearn_cli.training.loop import resolve_device
        from unlearn_cli.models.predict import evaluate_splits, load_predictor
        from unlearn_cli.models.datasets import open_checkpoint

        dev = resolve_device(device)
        with run.phase("load"):
            ckpt, dataset = open_checkpoint(checkpoint, data)
            model = load_predictor(ckpt, dev)
        run.input("checkpoint", ckpt.path, ckpt.sha256)
        run.input("data", dataset.data_path, dataset.data_sha256)
        run.claim([("input checkpoint", ckpt.path), ("manifest", dataset.manifest_path),
                   ("data file", dataset.data_path)], [])
        with run.phase("evaluate"):
            metrics = evaluate_splits(
                model, dataset, {"train": dataset.train_indices(), "test": dataset.test_indices()}, dev
            )
        run.data["metrics"] = metrics
        show(run, split_table(f"{checkpoint.name} on {dataset.name}", metrics))
