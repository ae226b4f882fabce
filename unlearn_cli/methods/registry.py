"""Method registry: the ``unlearn.methods`` entry-point group (built-ins included)."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from unlearn_cli.errors import BadInput
from unlearn_cli.methods.base import Method, options

GROUP = "unlearn.methods"


@lru_cache(maxsize=1)
def available() -> dict[str, Any]:
    return dict(sorted((ep.name, ep) for ep in entry_points(group=GROUP)))


def get(name: str) -> Method:
    found = available()
    if name not in found:
        listed = ", ".join(found) or "none installed"
        raise BadInput(f"unknown method '{name}'; available: {listed}")
    cls = found[name].load()
    return cls()


def describe(name: str) -> dict[str, Any]:
    method = get(name)
    return {
        "name": name,
        "summary": method.summary,
        "requires": method.requires,
        "options": options(method.Config),
        "details": method.details,
    }
