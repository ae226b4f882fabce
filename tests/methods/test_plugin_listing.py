"""`unlearn methods` lists every plugin kind; methods' options keep their error texts.

Listing reads entry-point metadata only: the kinds whose modules are not
imported by a listing (rankers, solvers, ...) appear by name.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from unlearn_cli import plugins
from unlearn_cli.errors import BadInput
from unlearn_cli.methods.registry import describe, get
from unlearn_cli.options import parse_options

BUILT_IN_METHODS = ["amnesiac", "boundary-expand", "boundary-shrink", "finetune", "neggrad", "puma", "retrain",
                    "salun", "sisa"]


def test_methods_lists_every_plugin_kind_grouped_by_kind() -> None:
    proc = run_cli("methods", "--json", check=True)
    metrics = json.loads(proc.stdout)["metrics"]
    assert list(metrics["methods"]) == BUILT_IN_METHODS
    assert metrics["methods"] == {name: describe(name)["summary"] for name in BUILT_IN_METHODS}
    plugin_names = metrics["plugins"]
    assert list(plugin_names) == ["methods", "architectures", "attacks", "rankers", "criteria", "solvers"]
    assert plugin_names["methods"] == BUILT_IN_METHODS
    assert plugin_names["attacks"] == ["forget-quality", "lira", "loss", "shokri"]
    assert {"mlp", "cnn", "linear", "densenet"} <= set(plugin_names["architectures"])
    for kind, names in plugin_names.items():
        assert names == plugins.names(kind), kind

    human = run_cli("methods", check=True).stdout.decode()
    for kind, names in plugin_names.items():
        assert kind in human
        for name in names:
            assert name in human, (kind, name)
    assert "unlearn_cli.attacks.shokri:ShokriAttack" in human


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(BadInput, match="unknown method 'nope'; available: " + ", ".join(BUILT_IN_METHODS) + "$"):
        get("nope")


def test_method_option_errors_keep_their_texts() -> None:
    config = get("neggrad").Config
    with pytest.raises(BadInput, match="unknown options bogus, nope for method 'neggrad'; valid: alpha, lr, epochs"):
        parse_options(config, {"nope": "1", "bogus": "2"}, owner="method 'neggrad'")
    with pytest.raises(BadInput, match="unknown option nope for method 'neggrad'; valid: alpha"):
        parse_options(config, {"nope": "1"}, owner="method 'neggrad'")
    with pytest.raises(BadInput, match="^option 'lr' expects float, got 'fast'$"):
        parse_options(config, {"lr": "fast"}, owner="method 'neggrad'")
    with pytest.raises(BadInput, match="^option 'momentum' must be in \\[0, 1\\), got 1.5$"):
        parse_options(config, {"momentum": "1.5"}, owner="method 'neggrad'")
    amnesiac = parse_options(get("amnesiac").Config, {"repair_lr": "none", "repair_epochs": "2"},
                             owner="method 'amnesiac'")
    assert amnesiac.repair_lr is None and amnesiac.repair_epochs == 2
