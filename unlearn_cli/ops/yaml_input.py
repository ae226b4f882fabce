"""YAML input files (manifests, ``--config``): safe, bounded, and never echoed.

``load_yaml`` reads the file through :mod:`unlearn_cli.ops.inputs` (regular
file, at most ``YAML_LIMIT`` bytes) and parses it with ``NoAliasLoader``, a
``yaml.SafeLoader`` that:

* **refuses aliases** (``*name``). An alias makes the parsed value share a
  node, so a "billion laughs" file of a few hundred bytes stands for 10**9
  values: parsing is quick, but anything that then walks, prints or writes the
  value (a report, an error message) does not finish. Counting aliases would
  not be enough (nine aliases per level already explode); manifests and
  method configs are short and never need them, so refusing every alias is
  the simple rule with no threshold to argue about. Anchors alone are harmless.
* **bounds nesting** at ``MAX_DEPTH`` levels: PyYAML composes recursively, so
  a file of a million ``[`` would otherwise end in RecursionError (exit 1).

Errors never quote the file: PyYAML's messages carry a snippet of the
offending line, which for a file that is not YAML at all (a checkpoint whose
recorded manifest points at someone's secrets) would print its contents. The
message keeps PyYAML's problem description (a fixed phrase) and the line and
column only.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.inputs import YAML_LIMIT, read_input, show_path

#: Deepest nesting of mappings/lists accepted; real manifests and configs use 3 or 4.
MAX_DEPTH = 32
_MAX_PROBLEM = 80


class _Refused(Exception):
    def __init__(self, reason: str, mark: Any) -> None:
        super().__init__(reason)
        self.reason, self.mark = reason, mark


class NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with bounded nesting (see the module docstring)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _Refused("aliases (*name) are not allowed", self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _where(mark: Any) -> str:
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _problem(exc: yaml.YAMLError) -> str:
    """PyYAML's fixed description of the problem, without the snippet of the file it quotes."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
    problem = " ".join(str(problem).split())
    if not problem.isprintable():
        problem = repr(problem)[1:-1]
    return problem[:_MAX_PROBLEM]


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document with :class:`NoAliasLoader`; errors name ``source`` and a line."""
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - NoAliasLoader is a SafeLoader
    except _Refused as exc:
        raise BadInput(f"{source}: YAML {exc.reason}{_where(exc.mark)}") from None
    except yaml.MarkedYAMLError as exc:
        raise BadInput(f"{source}: not valid YAML{_where(exc.problem_mark)}: {_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: not valid YAML: {_problem(exc)}") from None
    except RecursionError:
        raise BadInput(f"{source}: YAML nested too deeply") from None
    except (ValueError, OverflowError, TypeError):  # e.g. a timestamp like 2020-13-45
        raise BadInput(f"{source}: not valid YAML: a value cannot be read") from None


def load_yaml(path: str | os.PathLike, what: str, limit: int = YAML_LIMIT) -> Any:
    """Read and parse a YAML file (bounded, aliases refused, never echoed); ``what`` names it."""
    raw = read_input(path, what, limit)
    source = show_path(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source}: {what} is not UTF-8 text (byte offset {exc.start})") from None
    return parse_yaml(text, source)
