"""Attacks are the ``unlearn.attacks`` plugins, listed in the order the CLI has always shown them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unlearn_cli import plugins
from unlearn_cli.attacks.base import Attack
from unlearn_cli.attacks.registry import BUILT_IN, DEFAULT_ATTACK, get_attack, names, settings_class
from unlearn_cli.errors import BadInput

ORDER = ["shokri", "loss", "lira", "forget-quality"]


def test_built_ins_are_found_through_entry_points_in_their_order() -> None:
    assert DEFAULT_ATTACK == "shokri"
    assert names()[:4] == ORDER
    assert set(names()) == set(plugins.names("attacks"))
    for name in ORDER:
        cls = get_attack(name)
        assert issubclass(cls, Attack) and cls.name == name and cls.summary
        # The help text reads BUILT_IN without importing the attack: it must be the attack's own Settings.
        assert settings_class(name) is BUILT_IN[name] is cls.Settings


def test_unknown_attack_lists_the_known_ones_in_order() -> None:
    with pytest.raises(BadInput, match="^unknown attack 'nope'; choose one of: shokri, loss, lira, forget-quality$"):
        get_attack("nope")


def test_the_registry_and_settings_stay_cheap_to_import() -> None:
    code = ("import sys, unlearn_cli.attacks.registry, unlearn_cli.cli.attack; "
            "sys.exit(1 if {'numpy', 'torch'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
