"""unlearn: make a trained classifier forget chosen training records.

The package is importable without torch; heavy modules are imported by the
commands that need them so that ``unlearn --help`` stays fast.

Rooms, top to bottom (an import only ever points down; ``tests/test_layout.py``
checks it): ``cli`` -> ``forget``, ``attacks``, ``diagnostics``, ``marking`` ->
``methods`` -> ``influence``, ``training`` -> ``models`` -> ``data`` -> ``ops``
-> ``errors``, ``options``, ``plugins``. Each package's ``__init__`` says what
lives in it.
"""

__version__ = "0.1.0"

#: The Python API (``unlearn_cli.api``; README "Python API"): what your own code calls without the CLI.
#: ``load(path)`` opens a checkpoint with its data set and rebuilt module; ``unlearn(checkpoint, ids,
#: method="puma", out=..., **options)`` and ``attack(checkpoint, ids, attack="loss", reference=...,
#: **settings)`` run what ``unlearn forget`` / ``unlearn attack`` run and return their JSON report as a dict.
#: Imported on first use, so that ``import unlearn_cli`` stays free of torch.
__all__ = ["load", "unlearn", "attack", "Loaded", "__version__"]


def __getattr__(name: str):
    if name in ("load", "unlearn", "attack", "Loaded"):
        # The one name-by-string import: the root re-exports the top face (``api``) for callers;
        # no room below ever calls it, so the layers (tests/test_layout.py) still point down.
        import importlib

        return getattr(importlib.import_module("unlearn_cli.api"), name)
    raise AttributeError(f"module 'unlearn_cli' has no attribute '{name}'")
