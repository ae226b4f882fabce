"""One loader for every kind of plugin.

Each kind is the entry-point group ``unlearn.<kind>``. The tool's own plugins
register through the very same groups (``pyproject.toml``), so a third-party
one is a first-class citizen::

    [project.entry-points."unlearn.methods"]
    mymethod = "my_package.module:MyMethod"

========================  ==================================================  ===============================
kind                      an entry point names                                its interface
========================  ==================================================  ===============================
``methods``               a :class:`~unlearn_cli.methods.base.Method` class   ``methods/base.py``
``architectures``         ``build(input_shape, num_classes, **kw) -> Module``  ``models/registry.py``
``attacks``               an :class:`~unlearn_cli.attacks.base.Attack` class   ``attacks/base.py``
``rankers``               a label-issue ranker                                 ``diagnostics/rankers.py``
``criteria``              a :class:`~unlearn_cli.influence.criteria.Criterion`  ``influence/criteria.py``
``solvers``               an iHVP :class:`~unlearn_cli.influence.solvers.base.Solver`  ``influence/solvers/base.py``
========================  ==================================================  ===============================

Listing a kind reads installed metadata only; the object itself is imported
on :func:`load`, so ``unlearn methods`` stays instant.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from unlearn_cli.errors import BadInput

#: kind -> what one of them is called in messages
KINDS = {
    "methods": "method",
    "architectures": "architecture",
    "attacks": "attack",
    "rankers": "ranker",
    "criteria": "criterion",
    "solvers": "solver",
}


def group(kind: str) -> str:
    return f"unlearn.{kind}"


@lru_cache(maxsize=None)
def available(kind: str) -> dict[str, EntryPoint]:
    """Name -> entry point for every registered plugin of ``kind``, sorted by name."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}")
    found = {ep.name: ep for ep in entry_points(group=group(kind))}
    if not found:
        raise BadInput(f"no {kind} are registered: install the package (pip install -e .) so its entry points exist")
    return dict(sorted(found.items()))


def names(kind: str) -> list[str]:
    return list(available(kind))


def load(kind: str, name: str) -> Any:
    """The object the entry point ``name`` of ``kind`` names; an unknown name is exit 2 listing the known."""
    found = available(kind)
    if name not in found:
        raise BadInput(f"unknown {KINDS[kind]} '{name}'; choose one of: {', '.join(found)}")
    return found[name].load()


def load_all(kind: str) -> dict[str, Any]:
    return {name: ep.load() for name, ep in available(kind).items()}
