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
