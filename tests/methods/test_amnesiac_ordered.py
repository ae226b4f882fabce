"""Amnesiac ML in the PUMA paper's Ordered scenario on breast-cancer.

The model is trained with ``--track-updates`` and the default recipe; ``unlearn
mark --strategy ordered`` picks records that share as few recorded batches as
possible; subtracting those batches must keep test accuracy within 2 points.
"""

from __future__ import annotations

import json

from conftest import SAMPLES, run_cli

MANIFEST = SAMPLES / "breast-cancer" / "manifest.yaml"


def ok(proc) -> dict:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


def test_ordered_removal_keeps_accuracy_within_two_points(tmp_path):
    ckpt = tmp_path / "tracked.safetensors"
    train = ok(run_cli("train", MANIFEST, "--track-updates", "--out", ckpt, "--json"))
    assert train["metrics"]["update_log"]["steps"] > 0
    ids = tmp_path / "ordered.ids"
    ok(run_cli("mark", MANIFEST, "--strategy", "ordered", "--fraction", "0.01", "--checkpoint", ckpt,
               "--out", ids, "--json"))
    report = ok(run_cli("forget", ckpt, ids, "--method", "amnesiac", "--out", tmp_path / "out.safetensors",
                        "--json"))
    m = report["metrics"]
    assert m["forgotten"] >= 4
    assert 0 < m["method"]["batches_removed"] < m["method"]["batches_total"]
    assert m["method"]["sidecar_bytes"] > 0
    assert m["before"]["test"]["accuracy"] - m["after"]["test"]["accuracy"] <= 0.02 + 1e-9
