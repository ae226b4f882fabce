"""Every table a command prints fits 80 and 120 columns with no cell cut; gates and the plot hint.

The tables are rendered through the very functions the commands call, into
rich consoles of a fixed width (``record=True`` / ``export_text``), from
report-shaped dicts with awkward values (long fractions, five-digit counts,
a residual far below 1e-4). A cut cell shows as an ellipsis or as a number
that is not one of the values printed whole; both fail.
"""

from __future__ import annotations

import io
import re
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console

from unlearn_cli.cli.attack import _gates
from unlearn_cli.cli.attack import _table as attack_table
from unlearn_cli.cli.calibrate import METRIC_ROWS, _metrics_table
from unlearn_cli.cli.debug_labels import _curves_table, _suspects_table
from unlearn_cli.cli.forget import _summary as forget_summary
from unlearn_cli.cli.output import fmt, split_table

WIDTHS = (80, 120)
# A decimal as fmt prints it (4 places, or scientific for tiny values); "TPR@0.1%" is a header, not a value.
DECIMAL = re.compile(r"-?\d+\.\d+(?:e[-+]\d+)?")


def render(width: int, *renderables) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None, legacy_windows=False)
    for item in renderables:
        console.print(item)
    return console.export_text()


def body_rows(text: str) -> list[list[str]]:
    """The cells of each one-line table row (lines drawn between vertical rules)."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in text.splitlines() if line.strip().startswith("│")]


def assert_fits(text: str, width: int, expected_rows: list[list[str]], numbers: set[str]) -> None:
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= width, text
    rows = body_rows(text)
    for row in expected_rows:
        assert row in rows, (row, text)
    printed = set(DECIMAL.findall(text.replace("TPR@0.1%", "")))
    assert printed <= numbers, (printed - numbers, text)  # a number cut short is not a value printed whole


def attack_result(scale: float) -> dict:
    splits = {
        "forget": {"n": 26, "member_rate": 0.6153846153846154 * scale, "auc": 0.24932523616734142 * scale,
                   "tpr_at_1pct_fpr": 0.038461538461538464, "tpr_at_0.1pct_fpr": 0.0},
        "retain": {"n": 12500, "member_rate": 0.8671328671328671 * scale, "auc": 0.5527644869750132,
                   "tpr_at_1pct_fpr": 0.011655011655011656, "tpr_at_0.1pct_fpr": 0.0023310023310023},
        "test": {"n": 10000, "member_rate": 0.8421052631578947 * scale},
    }
    return {**splits, "auc": splits["forget"]["auc"], "balanced_accuracy": 0.38663967611336036 * scale,
            "forgetting_quality": 0.0123456789 * scale, "models_trained": 17, "models_reused": 0}


def attack_rows(result: dict, model: str | None) -> list[list[str]]:
    rows = []
    for split in ("forget", "retain", "test"):
        cells = [fmt(result[split].get(c)) for c in ("n", "member_rate", "auc", "tpr_at_1pct_fpr",
                                                      "tpr_at_0.1pct_fpr")]
        if model is None:
            rows.append([split, *cells])
        else:
            rows.append([split if model == "target" else "", model, *cells])
    return rows


def numbers_in(*values) -> set[str]:
    found: set[str] = set()
    for value in values:
        if isinstance(value, dict):
            found |= numbers_in(*value.values())
        elif isinstance(value, (list, tuple)):
            found |= numbers_in(*value)
        elif isinstance(value, float):
            found.add(fmt(value))
    return found


@pytest.mark.parametrize("width", WIDTHS)
def test_attack_table_with_reference_keeps_every_number_whole(width):
    target, reference = attack_result(1.0), attack_result(0.9)
    title = ("shokri attack on model.unlearned.safetensors (26 requested records); "
             "reference = model.retrained.safetensors")
    text = render(width, attack_table(title, target, reference))
    rows = attack_rows(target, "target") + attack_rows(reference, "reference")
    assert_fits(text, width, rows, numbers_in(target, reference))
    for header in ("member", "AUC", "TPR@1%", "TPR@0.1%", "reference"):
        assert header in text
    assert f"forgetting quality {fmt(target['forgetting_quality'])}" in text.replace("\n", " ")


@pytest.mark.parametrize("width", WIDTHS)
def test_attack_table_alone(width):
    target = attack_result(1.0)
    text = render(width, attack_table("loss attack on model.safetensors (26 requested records)", target, None))
    assert_fits(text, width, attack_rows(target, None), numbers_in(target))
    assert "model" not in text.split("┡")[0].splitlines()[-1]  # no model column without --reference


def forget_fields(status: str = "ok") -> dict:
    def split(n, acc, loss):
        return {"n": n, "accuracy": acc, "loss": loss}

    return {
        "status": status,
        "metrics": {
            "requested": 49, "forgotten": 49, "already_removed": 0,
            "before": {"test": split(1000, 0.9649122807017544, 0.16790123), "retain": split(3951, 0.99, 0.024),
                       "forget": split(49, 1.0, 0.039123456)},
            "after": {"test": split(1000, 0.9631578947368421, 0.26630001), "retain": split(3951, 0.9899, 0.0317),
                      "forget": split(49, 0.923076923076923, 0.458118)},
            "method": {"eta": 0.01467799267622069, "solver": "exact", "damping": 0.001,
                       "solve_residual": 1.616696271901063e-06},
        },
        "outputs": {"checkpoint": {"path": "demo-output/model.unlearned.safetensors"}},
        "ledger": {"path": "demo-output/a-rather-long-folder-name/of-the-audit-trail/unlearn-ledger.jsonl"},
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_forget_summary_before_after_fits(width):
    fields = forget_fields()
    text = render(width, *forget_summary(fields, "puma", {"method_s": 25.123456}, []))
    m = fields["metrics"]
    rows = [[s, str(m["before"][s]["n"]), fmt(m["before"][s]["accuracy"]), fmt(m["after"][s]["accuracy"]),
             fmt(m["before"][s]["loss"]), fmt(m["after"][s]["loss"])] for s in ("test", "retain", "forget")]
    assert_fits(text, width, rows, numbers_in(m) | {"25.12"})
    assert "1.62e-06" in text  # a residual far below 1e-4 is not shown as 0.0000
    flat = re.sub(r"[\s│]", "", text)
    assert "demo-output/a-rather-long-folder-name/of-the-audit-trail/unlearn-ledger.jsonl" in flat  # folded, whole


@pytest.mark.parametrize("width", WIDTHS)
def test_forget_nothing_to_do_summary_fits(width):
    fields = forget_fields("nothing-to-do")
    text = render(width, *forget_summary(fields, "puma", {}, []))
    assert "…" not in text and "nothing applied" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_evaluate_split_table_fits(width):
    metrics = {"train": {"n": 40000, "accuracy": 0.9912345, "loss": 0.0312345678, "ece": 0.004567891},
               "test": {"n": 10000, "accuracy": 0.96491228, "loss": 0.16790123, "ece": 0.0368},
               "forget": {"n": 7, "accuracy": 1.0, "loss": 3.2e-07, "ece": 0.0}}
    text = render(width, split_table("model.safetensors on mnist-5k", metrics))
    rows = [[s, str(v["n"]), fmt(v["accuracy"]), fmt(v["loss"]), fmt(v["ece"])] for s, v in metrics.items()]
    assert_fits(text, width, rows, numbers_in(metrics))


@pytest.mark.parametrize("width", WIDTHS)
def test_debug_labels_and_calibrate_tables_fit(width):
    suspects = [{"rank": i + 1, "id": f"train-{100000 + i}", "label": i % 10, "predicted": (i + 3) % 10,
                 "score": -1.2345678e-05 * (i + 1), "confidence": 0.0123456 * (i + 1)} for i in range(12)]
    about = SimpleNamespace(score="psi (influence on C)")
    curves = {"dataset": "mnist-5k", "fractions": [0.05, 0.1, 0.2, 0.3, 0.5],
              "rankers": {name: {"found": [0.123, 0.3456, 0.6, 0.81, 0.99], "seconds": 123.456}
                          for name in ("puma", "self-confidence", "margin", "grad-dot", "influence")},
              "optimal": [0.5, 1.0, 1.0, 1.0, 1.0], "random": [0.05, 0.1, 0.2, 0.3, 0.5]}
    values = {row: 0.0123456789 for row in METRIC_ROWS}
    calibration = {"test": {"before": {**values, "n": 1000}, "puma": values, "temperature": values}}
    text = render(width, _suspects_table("top 12 of 4000 train records of mnist-5k by puma", suspects, about,
                                         {"algorithm2": {"selected": 3}}),
                  _curves_table(curves), _metrics_table(calibration, "mnist-5k"))
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    rows = body_rows(text)
    for s in suspects:
        mark = " *" if s["rank"] <= 3 else ""
        assert [f"{s['rank']}{mark}", s["id"], str(s["label"]), str(s["predicted"]), f"{s['score']:.4g}",
                fmt(s["confidence"])] in rows
    assert ["puma", "0.12", "0.35", "0.60", "0.81", "0.99", "123.46"] in rows
    assert ["ece", "0.0123", "0.0123", "0.0123"] in rows


def test_passing_gates_say_so_in_one_line_each():
    target = attack_result(1.0)
    lines = _gates(target, "loss", 0.7, 0.6)
    assert lines == ["gate passed: forget-set member rate 0.6154 <= --max-member-rate 0.7",
                     "gate passed: forget-vs-test AUC 0.2493 <= --max-auc 0.6"]
    assert _gates(target, "loss", None, None) == []


def test_a_failing_gate_raises_one_message():
    from unlearn_cli.errors import GateFailed

    with pytest.raises(GateFailed) as caught:
        _gates(attack_result(1.0), "loss", 0.5, 0.6)
    message = str(caught.value)
    assert "forget-set member rate 0.6154 exceeds --max-member-rate 0.5" in message
    assert "\n" not in message and "passed" not in message


def test_the_plot_hint_names_the_source_checkout_install(monkeypatch):
    from unlearn_cli.diagnostics.plots import require_matplotlib
    from unlearn_cli.errors import BadInput

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(BadInput) as caught:
        require_matplotlib()
    message = str(caught.value)
    assert "pip install -e '.[plots]'" in message and "source checkout" in message
    assert "pip install 'unlearn-cli[plots]'" in message


@pytest.mark.parametrize("command", ["forget", "attack", "debug-labels", "calibrate"])
def test_help_starts_with_examples_that_fit_80_columns(command):
    from typer.testing import CliRunner

    from unlearn_cli.cli.app import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    body = [line for line in lines[1:] if line.strip()]
    assert body[0].strip() == "Examples:", result.output
    examples = [line for line in body[1:4] if line.strip().startswith("unlearn ")]
    assert len(examples) >= 2, result.output
    assert max(len(line) for line in lines) <= 80, result.output
    assert "<" not in result.output.split("Options:")[1].split("\n")[0]
    assert "<list[str]>" not in result.output and "{" not in result.output
