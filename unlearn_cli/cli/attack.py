"""unlearn attack: membership-inference attack on the requested records, with its power, intervals and CI gates.

Examples:
    unlearn attack model.puma.safetensors --ids forget.txt --attack loss --reference model.retrained.safetensors
    unlearn attack model.puma.safetensors --ids forget.txt --attack loss --reference model.retrained.safetensors --max-gap 0.1
    unlearn attack model.puma.safetensors --ids forget.txt --max-member-rate 0.6 --max-auc 0.6
    unlearn attack model.puma.safetensors --ids forget.txt --original model.safetensors --plot plots/
    unlearn attack model.safetensors --ids forget.txt --attack lira --set references=4 --set mode=offline
    unlearn attack model.puma.safetensors --ids forget.txt --attack forget-quality --set models=8 --json

On a 2-core CPU the loss attack takes seconds; shokri and LiRA train models
(cached, then reused): seconds on breast-cancer, but LiRA's default 16
references on mnist-5k take about an hour.

Attacks: shokri (the PUMA paper's shadow-model attack, default), loss (Yeom et
al.), lira (Carlini et al.), forget-quality (the NeurIPS 2023 challenge score).
Reported per split (forget = the request, retain = a sample of the remaining
train records, test): member_rate, and AUC / TPR at 1% and 0.1% FPR of forget
(and retain) against test, each with a 95% bootstrap interval (``<key>_ci``,
``attacks.bootstrap``). The same attacker runs on the original model
(``metrics.<attack>.original``; ``attacks.original`` finds it) and the
report's ``power`` says whether the attack can tell members apart at all;
when it cannot, one warning says its result proves nothing. The target for
an unlearned model is the retrained model's numbers (--reference), not zero:
``metrics.<attack>.verdict`` holds each metric's gap and its paired-bootstrap
interval (``attacks.verdict``). Shadow and reference models are cached under
<checkpoint dir>/.unlearn-cache (--cache-dir) and reused.
Gates: --max-member-rate (forget set), --max-auc and --max-gap (each gap's
interval within +/-F; needs --reference) exit with code 3 and one line; each
gate that passes says so in one line on stderr (not with --quiet).
--plot DIR writes roc.png and scores.png (``attacks.plots``; the plots extra)
and puts the ROC curves' data (at most 200 points each) in the report.
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
_ROLES = (("target", None), ("original", "magenta"), ("reference", "cyan"))


def _ci(entry: dict[str, Any] | None, key: str = "auc_ci") -> str:
    ci = (entry or {}).get(key)
    return "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _table(title: str, target: dict[str, Any], reference: dict[str, Any] | None = None,
           original: dict[str, Any] | None = None):
    """One row per split and model (target, then original and reference when attacked)."""
    from rich.table import Table

    models = {role: e for role, e in (("target", target), ("original", original), ("reference", reference))
              if e is not None}
    several = len(models) > 1
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column("split")
    if several:
        table.add_column("model")
    table.add_column("n", justify="right")
    for col in _COLUMNS:
        table.add_column(_HEADERS[col], justify="right")
    for split in ("forget", "retain", "test"):
        rows = [(role, models[role], style) for role, style in _ROLES if role in models]
        for i, (model, result, style) in enumerate(rows):
            cells = [split if i == 0 else ""] + ([model] if several else [])
            cells += [fmt(result[split].get("n"))] + [fmt(result[split].get(c)) for c in _COLUMNS]
            table.add_row(*cells, style=style, end_section=several and i == len(rows) - 1)
    notes = ["AUC and TPR@x% (true-positive rate at x% false-positive rate): the row's records against "
             "the test split",
             "forget AUC 95% bootstrap interval: " + ", ".join(f"{role} {_ci(models[role])}" for role, _ in _ROLES
                                                                if role in models)]
    notes.append(f"forget vs test balanced accuracy {fmt(target.get('balanced_accuracy'))}")
    if "forgetting_quality" in target:
        notes.append(f"forgetting quality {fmt(target['forgetting_quality'])}")
        if "reference" in models:
            notes[-1] += f" (reference {fmt(models['reference'].get('forgetting_quality'))})"
    notes.extend(_power_notes(target))
    notes.append(f"models trained {target['models_trained']}, reused {target['models_reused']}")
    table.caption = "\n".join(notes)
    return keep_whole(table)


def _power_notes(target: dict[str, Any]) -> list[str]:
    power, notes = target.get("power"), []
    if power:
        verdict = "PROVES NOTHING" if power["proves_nothing"] else "can tell members apart"
        notes.append(f"attack power ({power['rows']} on {power['source']}): AUC {fmt(power['original_auc'])} "
                     f"{_ci(power, 'ci')}: {verdict}")
        if power.get("note"):
            notes.append(power["note"])
    if "references" in target and "reference_interval" in target:
        ri = target["reference_interval"]
        notes.append(f"{ri['references']} LiRA references ({ri['in_per_record']} IN / {ri['out_per_record']} OUT "
                     f"per record): per-record means to +/-{ri['mean_half_width_in_std']:.2f} std, "
                     f"{target.get('variance', 'global')} variance")
    return notes


def _verdict_table(verdict: dict[str, Any]):
    """Per metric: the gap unlearned - reference, its 95% interval and the reading."""
    from rich.table import Table

    table = Table(title="verdict against the reference (gap = unlearned - reference, paired bootstrap)",
                  title_justify="left")
    for name, justify in (("metric", "left"), ("gap", "right"), ("95% interval", "right"), ("verdict", "left")):
        table.add_column(name, justify=justify)
    for key, m in verdict["metrics"].items():
        table.add_row(_HEADERS[key], f"{m['gap']:+.4f}", f"[{m['gap_ci'][0]:+.3f}, {m['gap_ci'][1]:+.3f}]",
                      m["verdict"])
    return keep_whole(table)


def _gates(target: dict[str, Any], attack: str, max_member_rate: float | None,
           max_auc: float | None, max_gap: float | None = None) -> list[str]:
    """Check the gates: raise GateFailed (exit 3, one line) if one fails, else one line per gate passed."""
    from unlearn_cli.attacks.verdict import gap_failures
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
    if max_gap is not None and "verdict" in target:
        gap_failed, gap_passed = gap_failures(target["verdict"], max_gap)
        failures += gap_failed
        passed += gap_passed
    if failures:
        raise GateFailed(f"{attack} attack: " + "; ".join(failures))
    return passed


def _check_gate_value(name: str, value: float | None) -> None:
    from unlearn_cli.errors import BadInput

    if value is not None and not 0.0 <= value <= 1.0:
        raise BadInput(f"{name} must be in [0, 1], got {value}")


def _check_options(run: Any, max_member_rate: float | None, max_auc: float | None, max_gap: float | None,
                   reference: Path | None, plot: Path | None) -> list[tuple[str, Path]]:
    """Refuse bad gate values and plot folders before any work; the plot files to claim as outputs."""
    from unlearn_cli.errors import BadInput

    _check_gate_value("--max-member-rate", max_member_rate)
    _check_gate_value("--max-auc", max_auc)
    _check_gate_value("--max-gap", max_gap)
    if max_gap is not None and reference is None:
        raise BadInput("--max-gap compares with a retrained model: pass --reference CKPT")
    if plot is None:
        return []
    from unlearn_cli.attacks.plots import FILES, require_matplotlib

    require_matplotlib()  # a missing extra fails before any model is trained
    if plot.exists() and not plot.is_dir():
        raise BadInput(f"--plot {plot}: is a file; --plot takes a folder (it writes {', '.join(FILES.values())})")
    if not plot.exists():
        from unlearn_cli.ops.paths import check_writable_folder, folder_of

        if not folder_of(plot).is_dir():
            raise BadInput(f"--plot {plot}: directory '{folder_of(plot)}' does not exist")
        check_writable_folder(f"--plot {plot}:", folder_of(plot))
    files = [(f"--plot {name}", plot / name) for name in FILES.values()]
    if plot.exists():
        for label, path in files:
            run.output_checked(label, path)
    return files


def _original_for(run: Any, attack_cls: Any, ckpt: Any, original: Path | None, dataset: Any) -> Any:
    """The original model to measure the attack's power on (``attacks.original``)."""
    from unlearn_cli.attacks.original import Original, resolve_original
    from unlearn_cli.models.datasets import dataset_for

    if not attack_cls.attacks_original:
        if original is not None:
            run.warn(f"--original ignored: the {attack_cls.name} attack measures no power on an original model")
        return Original("skip", None, "")
    found = resolve_original(ckpt, original)
    if found.checkpoint is not None:
        dataset_for(found.checkpoint, dataset.manifest_path)   # same train split: rows mean the same records
        run.input("original", found.checkpoint.path, found.checkpoint.sha256)
    return found


def _record(run: Any, name: str, result: Any, found: Any) -> None:
    """The report's metrics: the target's entry holds its original, power and verdict."""
    entry = result.target
    if result.original is not None:
        entry["original"] = result.original
    if "power" in entry and found.note:
        entry["power"]["note"] = found.note
    run.data["metrics"] = {name: entry}
    if result.reference is not None:
        run.data["metrics"]["reference"] = {name: result.reference}
    entry["models_by_role"] = result.cache["by_role"]


def _warn_power(run: Any, entry: dict[str, Any]) -> None:
    """The one warning of an attack that cannot tell members apart on the original (after the table)."""
    power = entry.get("power")
    if power and power["proves_nothing"]:
        from unlearn_cli.attacks.verdict import power_warning

        run.warn(power_warning(power))


def _write_plots(run: Any, name: str, result: Any, plot: Path, title: str) -> None:
    from unlearn_cli.attacks.plots import write_plots
    from unlearn_cli.attacks.proof import roc_curves, score_samples

    curves = roc_curves(result)
    run.data["metrics"][name]["roc"] = curves
    plot.mkdir(exist_ok=True)
    written = write_plots(plot, curves, score_samples(result), title, len(result.splits.test))
    for key, (path, sha) in written.items():
        run.output(f"plot_{key}", path, sha)


def attack(
    checkpoint: CheckpointArg,
    ids: Annotated[str, typer.Option("--ids", help="Ids file of the records to attack ('-' = stdin).",
                                     metavar="FILE")],
    attack_name: Annotated[str, typer.Option(
        "--attack", help="shokri (default, the paper's), loss, lira or forget-quality.",
        metavar="shokri|loss|lira|forget-quality")] = "shokri",
    data: DataOpt = None,
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", help="Also attack this checkpoint (the retrained model) and give a verdict per metric: "
        "indistinguishable when the paired-bootstrap 95% interval of the gap contains 0.",
        metavar="CKPT")] = None,
    original: Annotated[Optional[Path], typer.Option(
        "--original", help="The model before the removal, to measure the attack's power on (default: the "
        "lineage parent when it is beside the checkpoint).", metavar="CKPT")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=_settings_help(), metavar="KEY=VALUE")] = None,
    max_member_rate: Annotated[Optional[float], typer.Option(
        "--max-member-rate", help="Gate: exit 3 if the forget-set member rate exceeds this.",
        metavar="RATE")] = None,
    max_auc: Annotated[Optional[float], typer.Option(
        "--max-auc", help="Gate: exit 3 if the forget-vs-test AUC exceeds this.", metavar="AUC")] = None,
    max_gap: Annotated[Optional[float], typer.Option(
        "--max-gap", help="Gate (needs --reference): exit 3 unless the 95% interval of every metric's gap to "
        "the reference (AUC, TPR@1%, TPR@0.1%, member rate) lies within +/-F.", metavar="F")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Write roc.png (log-log ROC: unlearned, original, reference, chance) and scores.png "
        "(member/non-member histograms) into this folder (needs the plots extra).", metavar="DIR")] = None,
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
          --reference retrained.safetensors --max-gap 0.1
      unlearn attack puma.safetensors --ids ids.txt --max-member-rate 0.6
      unlearn attack model.safetensors --ids ids.txt --attack lira \\
          --set references=4 --plot plots/

    Every number gets a 95% bootstrap interval (1000 seeded stratified
    resamples of the members and the test records, percentile interval).
    The same attack runs on the original model (--original, or the lineage
    parent found beside the checkpoint): when its AUC interval includes 0.5
    the attack cannot tell members from non-members and its result proves
    nothing; one warning says so. With --reference each metric gets a verdict
    (indistinguishable when the paired-bootstrap interval of the gap contains
    0); --max-gap F fails (exit 3) unless every gap's interval lies within
    +/-F. On a 2-core CPU: the loss attack takes seconds; shokri (5 shadow
    models) and LiRA with 4 references take under 10 s on breast-cancer,
    while LiRA's default 16 references on mnist-5k take about an hour. Shadow
    and reference models are cached and reused. A gate that passes prints one
    line on stderr; one that fails exits 3.
    """
    with command_run("attack", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        inputs = [("input checkpoint", checkpoint), ("--ids file", ids), ("--data manifest", data),
                  ("--reference checkpoint", reference), ("--original checkpoint", original)]
        plot_files = _check_options(run, max_member_rate, max_auc, max_gap, reference, plot)
        run.claim(inputs, plot_files)
        run.preload("torch")  # timed as startup_s, outside total_s
        from unlearn_cli.attacks.proof import add_evidence
        from unlearn_cli.attacks.registry import get_attack, run_attack
        from unlearn_cli.attacks.shadow import default_cache_dir
        from unlearn_cli.data.ids import check_known, read_requests
        from unlearn_cli.models.checkpoint import load_checkpoint
        from unlearn_cli.models.datasets import dataset_for, open_checkpoint
        from unlearn_cli.options import as_dict, parse_options, parse_sets
        from unlearn_cli.training.loop import resolve_device

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
            found = _original_for(run, attack_cls, ckpt, original, dataset)
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
        run.claim(inputs + [("manifest", dataset.manifest_path), ("data file", dataset.data_path),
                            ("original checkpoint", found.checkpoint.path if found.checkpoint else None)], plot_files)
        cache = cache_dir if cache_dir is not None else default_cache_dir(ckpt.path)
        attack_seed = 0 if seed is None else seed
        run.data["config"] = {
            "attack": attack_name, "settings": as_dict(settings), "seed": attack_seed,
            "device": str(dev), "cache_dir": str(cache), "original": found.kind,
            "gates": {"max_member_rate": max_member_rate, "max_auc": max_auc, "max_gap": max_gap},
        }
        with run.phase("attack"), run.progress(attack_name) as bar:
            result = run_attack(attack_name, settings, dataset=dataset, checkpoint=ckpt, forget_rows=forget_rows,
                                cache_dir=cache, reference=ref_ckpt, original=found.checkpoint, device=dev,
                                seed=attack_seed, progress=bar, warn=run.warn)
        with run.phase("bootstrap"):
            add_evidence(result, None if found.kind == "skip" else found.kind, attack_seed)
        _record(run, attack_name, result, found)
        title = f"{attack_name} attack on {checkpoint.name} ({len(forget_rows)} requested records)"
        if reference is not None:
            title += f"; reference = {reference.name}"
        if plot is not None:
            _write_plots(run, attack_name, result, plot, title)
        show(run, _table(title, result.target, result.reference, result.original),
             *([_verdict_table(result.target["verdict"])] if "verdict" in result.target else []))
        _warn_power(run, result.target)
        for line in _gates(result.target, attack_name, max_member_rate, max_auc, max_gap):
            if not run.quiet:  # stderr: --json keeps stdout for the report alone
                print(f"unlearn attack: {line}", file=sys.stderr)
