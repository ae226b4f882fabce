"""unlearn attack: membership-inference attack on the requested records, with CI gates.

Examples:
    unlearn attack model.puma.safetensors --ids forget.txt --attack loss --reference model.retrained.safetensors
    unlearn attack model.puma.safetensors --ids forget.txt --max-member-rate 0.6 --max-auc 0.6
    unlearn attack model.safetensors --ids forget.txt --attack lira --set references=4 --set mode=offline
    unlearn attack model.puma.safetensors --ids forget.txt --attack forget-quality --set models=8 --json

On a 2-core CPU the loss attack takes seconds; shokri and LiRA train models
(cached, then reused): seconds on breast-cancer, but LiRA's default 16
references on mnist-5k take about an hour.

Attacks: shokri (the PUMA paper's shadow-model attack, default), loss (Yeom et
al.), lira (Carlini et al.), forget-quality (the NeurIPS 2023 challenge score).
Reported per split (forget = the request, retain = a sample of the remaining
train records, test): member_rate, and AUC / TPR at 1% and 0.1% FPR of forget
(and retain) against test. The target for an unlearned model is the retrained
model's numbers (--reference), not zero. Shadow and reference models are
cached under <checkpoint dir>/.unlearn-cache (--cache-dir) and reused.
Gates: --max-member-rate (forget set) and --max-auc exit with code 3 and one
line; each gate that passes says so in one line on stderr (not with --quiet).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from unlearn_cli.cli.options import (
    CheckpointArg, DataOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt,
)
from unlearn_cli.cli.output import command_run, fmt, keep_whole, show


def _settings_help() -> str:
    """Each attack's --set keys, from the settings classes (cheap for the built-ins: no torch, no numpy)."""
    from unlearn_cli.attacks.registry import names, settings_class
    from unlearn_cli.options import describe

    parts = []
    for name in names():
        parts.append(f"{name}: " + ", ".join(f"{o['name']}={o['default']}" for o in describe(settings_class(name))))
    return "Attack setting key=value (repeatable). " + "; ".join(parts) + "."


_COLUMNS = ("member_rate", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")
# Short headers keep the table, reference rows included, inside 80 columns; the caption spells them out.
_HEADERS = {"member_rate": "member rate", "auc": "AUC", "tpr_at_1pct_fpr": "TPR@1%",
            "tpr_at_0.1pct_fpr": "TPR@0.1%"}


def _table(title: str, target: dict[str, Any], reference: dict[str, Any] | None):
    """One row per split; with --reference, the reference checkpoint's row under each split's own."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column("split")
    if reference is not None:
        table.add_column("model")
    table.add_column("n", justify="right")
    for col in _COLUMNS:
        table.add_column(_HEADERS[col], justify="right")
    for split in ("forget", "retain", "test"):
        rows = [("target", target, None)] + ([("reference", reference, "cyan")] if reference is not None else [])
        for i, (model, result, style) in enumerate(rows):
            cells = [split if i == 0 else ""] + ([model] if reference is not None else [])
            cells += [fmt(result[split].get("n"))] + [fmt(result[split].get(c)) for c in _COLUMNS]
            table.add_row(*cells, style=style, end_section=reference is not None and i == len(rows) - 1)
    notes = ["AUC and TPR@x% (true-positive rate at x% false-positive rate): the row's records against "
             "the test split",
             f"forget vs test balanced accuracy {fmt(target.get('balanced_accuracy'))}"]
    if reference is not None:
        notes[-1] += f" (reference {fmt(reference.get('balanced_accuracy'))})"
    if "forgetting_quality" in target:
        notes.append(f"forgetting quality {fmt(target['forgetting_quality'])}")
        if reference is not None:
            notes[-1] += f" (reference {fmt(reference.get('forgetting_quality'))})"
    notes.append(f"models trained {target['models_trained']}, reused {target['models_reused']}")
    table.caption = "\n".join(notes)
    return keep_whole(table)


def _gates(target: dict[str, Any], attack: str, max_member_rate: float | None,
           max_auc: float | None) -> list[str]:
    """Check the gates: raise GateFailed (exit 3, one line) if one fails, else one line per gate passed."""
    from unlearn_cli.errors import GateFailed

    failures, passed = [], []
    rate, auc = target["forget"].get("member_rate"), target.get("auc")
    if max_member_rate is not None and rate is not None:
        if rate > max_member_rate:
            failures.append(f"forget-set member rate {rate:.4f} exceeds --max-member-rate {max_member_rate:g}")
        else:
            passed.append(f"gate passed: forget-set member rate {rate:.4f} <= --max-member-rate {max_member_rate:g}")
    if max_auc is not None and auc is not None:
        if auc > max_auc:
            failures.append(f"forget-vs-test AUC {auc:.4f} exceeds --max-auc {max_auc:g}")
        else:
            passed.append(f"gate passed: forget-vs-test AUC {auc:.4f} <= --max-auc {max_auc:g}")
    if failures:
        raise GateFailed(f"{attack} attack: " + "; ".join(failures))
    return passed


def _check_gate_value(name: str, value: float | None) -> None:
    from unlearn_cli.errors import BadInput

    if value is not None and not 0.0 <= value <= 1.0:
        raise BadInput(f"{name} must be in [0, 1], got {value}")


def attack(
    checkpoint: CheckpointArg,
    ids: Annotated[str, typer.Option("--ids", help="Ids file of the records to attack ('-' = stdin).",
                                     metavar="FILE")],
    attack_name: Annotated[str, typer.Option(
        "--attack", help="shokri (default, the paper's), loss, lira or forget-quality.",
        metavar="shokri|loss|lira|forget-quality")] = "shokri",
    data: DataOpt = None,
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", help="Also attack this checkpoint (e.g. the retrained model), side by side.",
        metavar="CKPT")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=_settings_help(), metavar="KEY=VALUE")] = None,
    max_member_rate: Annotated[Optional[float], typer.Option(
        "--max-member-rate", help="Gate: exit 3 if the forget-set member rate exceeds this.",
        metavar="RATE")] = None,
    max_auc: Annotated[Optional[float], typer.Option(
        "--max-auc", help="Gate: exit 3 if the forget-vs-test AUC exceeds this.", metavar="AUC")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        "--cache-dir", help="Folder for cached shadow/reference models (default <checkpoint dir>/.unlearn-cache).",
        file_okay=False, metavar="DIR")] = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Membership-inference attack on the requested records (forget), a retain sample and the test split.

    \b
    Examples:
      unlearn attack puma.safetensors --ids ids.txt --attack loss \\
          --reference retrained.safetensors
      unlearn attack puma.safetensors --ids ids.txt --max-member-rate 0.6
      unlearn attack model.safetensors --ids ids.txt --attack lira \\
          --set references=4

    On a 2-core CPU: the loss attack takes seconds; shokri (5 shadow models)
    and LiRA with 4 references take under 10 s on breast-cancer, while LiRA's
    default 16 references on mnist-5k take about an hour. Shadow and reference
    models are cached and reused. A gate that passes prints one line on stderr;
    one that fails exits 3.
    """
    with command_run("attack", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.claim([("input checkpoint", checkpoint), ("--ids file", ids), ("--data manifest", data),
                   ("--reference checkpoint", reference)], [])
        run.preload("torch")  # timed as startup_s, outside total_s
        from unlearn_cli.attacks.registry import get_attack, run_attack
        from unlearn_cli.attacks.shadow import default_cache_dir
        from unlearn_cli.data.ids import check_known, read_requests
        from unlearn_cli.models.checkpoint import load_checkpoint
        from unlearn_cli.models.datasets import dataset_for, open_checkpoint
        from unlearn_cli.options import as_dict, parse_options, parse_sets
        from unlearn_cli.training.loop import resolve_device

        _check_gate_value("--max-member-rate", max_member_rate)
        _check_gate_value("--max-auc", max_auc)
        attack_cls = get_attack(attack_name)
        settings = parse_options(attack_cls.Settings, parse_sets(set_ or []), owner=f"attack '{attack_name}'",
                                 word="setting")
        dev = resolve_device(device)
        with run.phase("load"):
            ckpt, dataset = open_checkpoint(checkpoint, data)
            ref_ckpt = None
            if reference is not None:
                ref_ckpt = load_checkpoint(reference)
                # Same data set, same train split: the rows mean the same records.
                dataset_for(ref_ckpt, data if data is not None else dataset.manifest_path)
            request = read_requests([ids])
        if request.duplicates:
            run.warn(f"{len(request.duplicates)} repeated ID(s) in {request.source} collapsed")
        known, _ = check_known(request.ids, dataset.train_ids, dataset.test_ids)
        forget_rows = dataset.index_of(known)
        run.input("checkpoint", ckpt.path, ckpt.sha256)
        run.input("data", dataset.data_path, dataset.data_sha256)
        run.input("ids", request.source, request.sha256)
        if ref_ckpt is not None:
            run.input("reference", ref_ckpt.path, ref_ckpt.sha256)
        run.claim([("input checkpoint", ckpt.path), ("--ids file", ids), ("manifest", dataset.manifest_path),
                   ("data file", dataset.data_path), ("--reference checkpoint", reference)], [])
        cache = cache_dir if cache_dir is not None else default_cache_dir(ckpt.path)
        attack_seed = 0 if seed is None else seed
        run.data["config"] = {
            "attack": attack_name, "settings": as_dict(settings), "seed": attack_seed,
            "device": str(dev), "cache_dir": str(cache),
            "gates": {"max_member_rate": max_member_rate, "max_auc": max_auc},
        }
        with run.phase("attack"), run.progress(attack_name) as bar:
            result = run_attack(attack_name, settings, dataset=dataset, checkpoint=ckpt, forget_rows=forget_rows,
                                cache_dir=cache, reference=ref_ckpt, device=dev, seed=attack_seed,
                                progress=bar, warn=run.warn)
        run.data["metrics"] = {attack_name: result.target}
        if result.reference is not None:
            run.data["metrics"]["reference"] = {attack_name: result.reference}
        run.data["metrics"][attack_name]["models_by_role"] = result.cache["by_role"]
        title = f"{attack_name} attack on {checkpoint.name} ({len(forget_rows)} requested records)"
        if reference is not None:
            title += f"; reference = {reference.name}"
        show(run, _table(title, result.target, result.reference))
        for line in _gates(result.target, attack_name, max_member_rate, max_auc):
            if not run.quiet:  # stderr: --json keeps stdout for the report alone
                print(f"unlearn attack: {line}", file=sys.stderr)
