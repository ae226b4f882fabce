"""calibrate's patched checkpoint, published the way forget publishes: locks, verified atomic write, ledger line.

The new checkpoint's metadata keeps the parent's ``calibration`` list with one
more entry (Algorithm 3's choices and the held-out ECE) and gains one
``lineage`` entry with method ``calibrate`` and the calibration settings as
its config. ``count`` is the number of records whose influence the patch
removed; calibrate chooses them itself, so no ID digest is recorded, in the
lineage or in the ledger line: a later deletion request for one of them is
still applied in full by ``forget``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable

from unlearn_cli import __version__
from unlearn_cli.forget.publish import child_meta, ledger_line, lineage_entry, publish_checkpoint
from unlearn_cli.forget.targets import Targets, locked_targets
from unlearn_cli.ops.clock import utc_now

#: Test-split metrics a calibrate ledger line keeps, before and after.
LEDGER_METRICS = ("n", "accuracy", "ece", "nll")


def publish_calibrated(targets: Targets, ckpt: Any, dataset: Any, result: Any, config: dict[str, Any], *,
                       wait: float, warn: Callable[[str], None]) -> dict[str, Any]:
    """Write ``result.state`` to ``targets.out`` and one ledger line; returns the report outputs.

    ``result`` is a ``diagnostics.calibration.CalibrationResult`` with weights;
    ``config`` the settings it ran with, as the report shows them (with
    ``holdout`` and ``seed``): the lineage entry and the ledger line record it.
    """
    entry = lineage_entry("calibrate", config, int(result.info["forget"]), None, None, ckpt.sha256)
    updates = {"calibration": list(ckpt.meta.get("calibration", [])) + [_calibration_entry(ckpt, result, config)]}
    meta = child_meta(ckpt, dataset.manifest_path, targets.out, entry, updates)
    run_id = uuid.uuid4().hex

    def ledger_entry(output: dict[str, Any]) -> dict[str, Any]:
        return ledger_line(run_id, "calibrate", "ok", {
            "method": "calibrate",
            "config": config,
            "seed": config["seed"],
            "requests": [],
            "rejected": [],
            "ids": {"requested": 0, "removed": entry["count"], "already_removed": 0, "unknown_skipped": 0},
            "removed_id_sha256": [],
            "removed_ids_digest": None,
            "input": {"path": os.path.abspath(ckpt.path), "sha256": ckpt.sha256},
            "output": output,
            "metrics": {side: {"test": _kept(result.metrics["test"][column])}
                        for side, column in (("before", "before"), ("after", _written(result)))},
        })

    with locked_targets(targets, wait, warn):
        outputs, _ = publish_checkpoint(targets, result.state, meta, ledger_entry)
    return outputs


def _written(result: Any) -> str:
    """The metrics column of the weights written: "written" (patch and folded temperature) when reported."""
    return "written" if result.metrics["test"].get("written") else "puma"


def _kept(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k in LEDGER_METRICS}


def _calibration_entry(ckpt: Any, result: Any, config: dict[str, Any]) -> dict[str, Any]:
    """What the calibration did, as the checkpoint's ``calibration`` list records it."""
    info = result.info
    return {
        "method": "puma",
        "algorithm": "PUMA Algorithm 3 (appendix E)",
        "criterion": "ece",
        "eta": info["eta"],
        "k": info["k"],
        "holdout": config["holdout"],
        "seed": config["seed"],
        "solver": info["engine"]["solver"],
        "damping": info["engine"]["damping"],
        "categories": {key: info[key] for key in ("over_confident", "over_uncertain", "other_noise")},
        "held_out_ece": {"before": result.metrics["held_out"]["before"]["ece"],
                         "after": result.metrics["held_out"][_written(result)]["ece"]},
        "temperature": (info.get("written_temperature") or {}).get("temperature")
        if (info.get("written_temperature") or {}).get("folded") else None,
        "parent_sha256": ckpt.sha256,
        "time": utc_now(),
        "tool_version": __version__,
    }
