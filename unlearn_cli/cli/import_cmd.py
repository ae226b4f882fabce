"""unlearn import: wrap a state_dict trained elsewhere into an ``unlearn`` checkpoint.

Examples:
    unlearn import model.safetensors --arch mlp --arch-opt hidden=64,32 --data manifest.yaml --out model.ckpt.safetensors
    unlearn import weights.safetensors --arch cnn --data sample_models/mnist-5k/manifest.yaml --recipe recipe.yaml --out mnist.safetensors
    unlearn import weights.safetensors --arch mypkg.models:build --arch-opt width=32 --data manifest.yaml --out mine.safetensors

WEIGHTS is a safetensors file of the model's state_dict (as written by
``safetensors.torch.save_file(model.state_dict(), ...)``); it is loaded
strictly into the module --arch builds for the manifest's input shape and
class count, and every split is evaluated, so a manifest whose preprocessing
differs from the model's shows at once. --recipe RECIPE.yaml records how the
model was trained (optimizer, lr, epochs, batch_size, weight_decay, momentum,
seed); without it, methods and attacks that retrain refuse the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.options import (ArchOpt, ArchOptsOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt,
                                     ReportOpt)
from unlearn_cli.cli.output import command_run, key_values, show, split_table


def import_(
    weights: Annotated[Path, typer.Argument(metavar="WEIGHTS", help="state_dict safetensors file to import.")],
    arch: ArchOpt,
    data: Annotated[Path, typer.Option("--data", metavar="MANIFEST", help="Dataset manifest the model was "
                                       "trained on (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="CKPT", help="Checkpoint to write (.safetensors).")],
    arch_opt: ArchOptsOpt = None,
    recipe: Annotated[Optional[Path], typer.Option(
        "--recipe", metavar="RECIPE.yaml", help="How the model was trained (optimizer, lr, epochs, batch_size, "
        "weight_decay, momentum, seed); needed by methods and attacks that retrain.")] = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    debug: DebugOpt = False,
) -> None:
    """Wrap a state_dict trained elsewhere into a checkpoint: load strictly, evaluate every split.

    \b
    Examples:
      unlearn import model.safetensors --arch mlp --data manifest.yaml --out imported.safetensors
      unlearn import model.safetensors --arch mlp --data manifest.yaml --recipe recipe.yaml --out imported.safetensors
      unlearn import w.safetensors --arch mypkg.models:build --arch-opt width=32 --data manifest.yaml --out mine.safetensors

    Without --recipe, retrain, sisa, amnesiac and the shokri, lira and
    forget-quality attacks refuse the checkpoint; PUMA (assuming weight decay 0),
    SalUn, Boundary, neggrad, finetune and the loss attack work.
    An existing --out is refused unless --force is given.
    """
    with command_run("import", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.output_checked("--out", out)
        run.claim([("weights", weights), ("--data manifest", data), ("--recipe file", recipe)], [("--out", out)])
        run.preload("torch")  # timed as startup_s, outside total_s
        from unlearn_cli.data.manifest import load_manifest
        from unlearn_cli.training.importing import import_checkpoint, load_recipe
        from unlearn_cli.training.loop import resolve_device

        dev = resolve_device(device)
        if recipe is not None:
            load_recipe(recipe)  # a bad recipe fails before the data are read
        with run.phase("load"):
            dataset = load_manifest(data)
        run.input("manifest", dataset.manifest_path, None)
        run.input("data", dataset.data_path, dataset.data_sha256)
        run.claim([("manifest", dataset.manifest_path), ("data file", dataset.data_path)], [("--out", out)])
        imported = import_checkpoint(weights, arch, dataset, out, arch_options=arch_opt or [], recipe=recipe,
                                     device=dev, phase=run.phase)
        run.input("weights", weights, imported.weights_sha256)
        if recipe is not None:
            run.input("recipe", recipe, None)
        run.output("checkpoint", out, imported.sha256)
        meta = imported.meta
        run.data["config"] = {"arch": meta["arch"], "training": meta["training"], "device": str(dev)}
        run.data["metrics"] = {**imported.splits, "imported": meta["imported"]}
        summary = {"checkpoint": str(out), "weights": weights.name,
                   "recipe": recipe.name if recipe is not None else "none (retrain, sisa, amnesiac, shokri, "
                                                                    "lira, forget-quality refuse it)"}
        show(run, key_values(f"imported {meta['arch']['name']} for {dataset.name}", summary),
             split_table("metrics", imported.splits))
