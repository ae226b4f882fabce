"""unlearn: make a trained classifier forget chosen training records.

The package is importable without torch; heavy modules are imported by the
commands that need them so that ``unlearn --help`` stays fast.
"""

__version__ = "0.1.0"
