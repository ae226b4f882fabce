"""unlearn inspect: what a checkpoint is: architecture, recipe, data set, lineage.

Reads only the safetensors header (no weights, no torch), so it is instant.

Examples:
    unlearn inspect sample_models/moons/model.safetensors
    unlearn inspect sample_models/moons/model.safetensors --quiet
    unlearn inspect moons.unlearned.safetensors --json | jq .metrics.lineage

The summary is one table of facts (architecture and its options, parameters,
training recipe, data set, what SISA / the update log / calibration recorded)
and one table of the lineage, a row per step that made the checkpoint from
its parent. --quiet prints the key facts on one line; --json the raw header
as the report (each lineage step's full options included).
"""

from __future__ import annotations

from typing import Any

from unlearn_cli.cli.options import CheckpointArg, DebugOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt
from unlearn_cli.cli.output import command_run

#: how much of a sha256 the summary shows (the full digests are in --json)
SHA_PREFIX = 12


def inspect(
    checkpoint: CheckpointArg,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a checkpoint's architecture, training recipe, data set and removal lineage.

    \b
    Examples:
      unlearn inspect sample_models/moons/model.safetensors
      unlearn inspect sample_models/moons/model.safetensors --quiet
      unlearn inspect sample_models/moons/model.safetensors --json

    Reads only the file's header (no weights), so it is instant. --quiet
    prints the key facts on one line; --json the whole header as the report.
    --force only governs --report.
    """
    with command_run("inspect", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.claim([("input checkpoint", checkpoint)], [])
        from unlearn_cli.models.checkpoint import read_header_meta

        info = read_header_meta(checkpoint)
        run.input("checkpoint", checkpoint, info["sha256"])
        meta = info["meta"]
        run.data["metrics"] = {
            "kind": meta.get("kind", "plain"),
            "format": meta.get("format"),
            "arch": meta.get("arch"),
            "parameters": info["parameters"],
            "tensors": info["tensors"],
            "training": meta.get("training"),
            "dataset": meta.get("dataset"),
            "lineage": meta.get("lineage", []),
            "created": meta.get("created"),
            "recorded_metrics": meta.get("metrics"),
        }
        if json_out:
            return
        if quiet:
            run.out.print(_plain(_one_line(str(checkpoint), run.data["metrics"])), soft_wrap=True)
            return
        run.out.print(_facts(str(checkpoint), run.data["metrics"], meta))
        if run.data["metrics"]["lineage"]:
            run.out.print(_lineage(run.data["metrics"]["lineage"]))


# -- words ----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Text from the header as plain text: no control characters, no rich markup."""
    from rich.text import Text

    from unlearn_cli.errors import escape_controls

    return Text(escape_controls(str(value)))


def _value(value: Any, sep: str = ",") -> str:
    """A header value as words: lists joined by ``sep`` (``64,32`` as --hidden takes it), mappings as
    ``key value`` pairs, whole numbers grouped by thousands outside lists."""
    if isinstance(value, (list, tuple)):
        return sep.join(_value(v, sep) if not isinstance(v, int) else str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _arch_options(arch: dict[str, Any]) -> str:
    kwargs = dict(arch.get("kwargs") or {})
    named = {"hidden": kwargs.pop("hidden", None), "activation": kwargs.pop("activation", None),
             "input shape": kwargs.pop("input_shape", None), "classes": kwargs.pop("num_classes", None)}
    named.update(kwargs)
    return ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in named.items() if v is not None) or "-"


def _recipe(training: dict[str, Any] | None) -> str:
    if not training:
        return "-"
    t = dict(training)
    parts = [str(t.pop("optimizer", "?"))]
    for key, label in (("lr", "lr"), ("momentum", "momentum"), ("weight_decay", "weight decay"),
                       ("epochs", "epochs"), ("batch_size", "batch size"), ("seed", "seed")):
        if key in t:
            parts.append(f"{label} {_value(t.pop(key))}")
    parts.extend(f"{k.replace('_', ' ')} {_value(v)}" for k, v in t.items())
    return ", ".join(parts)


def _dataset(dataset: dict[str, Any] | None) -> dict[str, str]:
    if not dataset:
        return {"data set": "-"}
    n = dataset.get("n_train")
    rows = {"data set": f"{dataset.get('name', '?')}" + (f", {_value(n)} train records" if n is not None else "")}
    if dataset.get("manifest"):
        rows["manifest"] = f"{dataset['manifest']} (relative to the checkpoint)"
    if dataset.get("data_sha256"):
        rows["data sha256"] = f"{str(dataset['data_sha256'])[:SHA_PREFIX]} (first {SHA_PREFIX} digits)"
    return rows


def _recorded(metrics: dict[str, Any] | None) -> str | None:
    if not isinstance(metrics, dict) or not metrics:
        return None
    parts = [f"{split} {values['accuracy']:.4f}" for split, values in metrics.items()
             if isinstance(values, dict) and isinstance(values.get("accuracy"), (int, float))]
    return f"{', '.join(parts)} (recorded at training)" if parts else None


def _extras(meta: dict[str, Any]) -> dict[str, str]:
    """What SISA, the update log and calibration recorded, in words."""
    rows: dict[str, str] = {}
    sisa = meta.get("sisa")
    if isinstance(sisa, dict) and sisa:
        rows["SISA"] = (f"{_value(sisa.get('shards'))} shards x {_value(sisa.get('slices'))} slices, "
                        f"{sisa.get('aggregate', 'vote')}; records per shard {_value(sisa.get('shard_records'), ', ')}")
    log = meta.get("update_log")
    if isinstance(log, dict) and log:
        size = log.get("bytes")
        rows["update log"] = (f"{_value(log.get('steps'))} batch updates"
                              + (f" ({size / 2**20:.2f} MiB sidecar)" if isinstance(size, (int, float)) else ""))
    calibration = meta.get("calibration")
    if isinstance(calibration, list) and calibration:
        last = calibration[-1] if isinstance(calibration[-1], dict) else {}
        ece = last.get("held_out_ece") or {}
        rows["calibration"] = f"{len(calibration)} patch{'es' if len(calibration) > 1 else ''}" + (
            f"; held-out ECE {ece['before']:.4f} -> {ece['after']:.4f}"
            if isinstance(ece.get("before"), (int, float)) and isinstance(ece.get("after"), (int, float)) else "")
    return rows


# -- tables ---------------------------------------------------------------------------------------


def _fact_rows(m: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    from unlearn_cli.models.checkpoint import removal_steps

    arch = m.get("arch") or {}
    created = m.get("created") if isinstance(m.get("created"), dict) else {}
    rows = {
        "architecture": f"{arch.get('name', '?')} ({m['kind']})",
        "options": _arch_options(arch),
        "parameters": f"{_value(m['parameters'])} in {len(m.get('tensors') or {})} tensors",
        "training": _recipe(m.get("training")),
        **_dataset(m.get("dataset")),
    }
    recorded = _recorded(m.get("recorded_metrics"))
    if recorded:
        rows["accuracy"] = recorded
    rows.update(_extras(meta))
    if created:
        rows["created"] = f"{created.get('time', '?')} by unlearn {created.get('tool_version', '?')}"
    rows["lineage"] = _lineage_words(m["lineage"], removal_steps(m["lineage"]))
    return rows


def _facts(title: str, m: dict[str, Any], meta: dict[str, Any]):
    from rich.table import Table

    table = Table(title=_plain(title), title_justify="left", show_header=False)
    table.add_column("fact", style="bold", no_wrap=True)
    table.add_column("value")
    for key, value in _fact_rows(m, meta).items():
        table.add_row(key, _plain(value))
    return table


def _lineage(lineage: list[dict[str, Any]]):
    """One row per step: method, records, time, the parent's sha256 prefix."""
    from rich.table import Table

    from unlearn_cli.models.checkpoint import NOT_REMOVALS

    table = Table(title="lineage (oldest first; each step's options: --json)", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("method")
    table.add_column("records", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("parent sha256", no_wrap=True)
    for i, step in enumerate(lineage, 1):
        step = step if isinstance(step, dict) else {}
        count = _value(step.get("count"))
        table.add_row(str(i), _plain(step.get("method", "?")),
                      f"{count} patched" if step.get("method") in NOT_REMOVALS else count,
                      _plain(step.get("time", "-")), _plain(str(step.get("parent_sha256") or "-")[:SHA_PREFIX]))
    return table


def _one_line(path: str, m: dict[str, Any]) -> str:
    """--quiet: the key facts on one line."""
    from unlearn_cli.models.checkpoint import removal_steps

    arch = m.get("arch") or {}
    options = _arch_options(arch)
    dataset = m.get("dataset") or {}
    training = m.get("training") or {}
    removals = removal_steps(m["lineage"])
    trained = ", ".join(part for part in (
        f"{_value(dataset['n_train'])} records" if dataset.get("n_train") is not None else "",
        f"{training['epochs']} epochs" if "epochs" in training else "") if part)
    return (f"{path}: {arch.get('name', '?')}" + (f" ({options})" if options != "-" else "")
            + (f", kind {m['kind']}" if m["kind"] != "plain" else "")
            + f", {_value(m['parameters'])} parameters, trained on {dataset.get('name', '?')}"
            + (f" ({trained})" if trained else "")
            + f"; lineage: {_lineage_words(m['lineage'], removals)}")


def _lineage_words(lineage: list[Any], removals: list[dict[str, Any]]) -> str:
    if not lineage:
        return "none (as trained)"
    removed = sum(s["count"] for s in removals if isinstance(s.get("count"), int))
    return f"{len(lineage)} step{'s' if len(lineage) > 1 else ''}, {_value(removed)} records removed"
