"""The methods ``unlearn forget --method`` knows: the ``unlearn.methods`` plugins (built-ins included).

Found through the one plugin loader (``unlearn_cli.plugins``); listing reads
installed metadata, a method's module is imported when it is asked for.
"""

from __future__ import annotations

from typing import Any

from unlearn_cli import plugins
from unlearn_cli.errors import BadInput
from unlearn_cli.methods.base import Method
from unlearn_cli.options import describe as describe_options


def available() -> dict[str, Any]:
    """Method name -> entry point, sorted by name."""
    return plugins.available("methods")


def get(name: str) -> Method:
    found = available()
    if name not in found:
        raise BadInput(f"unknown method '{name}'; available: {', '.join(found)}")
    return plugins.load("methods", name)()


def describe(name: str) -> dict[str, Any]:
    method = get(name)
    return {
        "name": name,
        "summary": method.summary,
        "requires": method.requires,
        "options": describe_options(method.Config),
        "details": method.details,
    }
