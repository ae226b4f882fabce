"""Checking a checkpoint's ``unlearn`` metadata on load (DESIGN.md "Checkpoint").

A checkpoint may come from anywhere, so its metadata is validated before any
of it is used: every problem is a one-line :class:`BadInput` naming the key
(``arch.kwargs.hidden[1]``), never a TypeError or RecursionError deep inside
a command (exit 1). What is checked:

* the JSON text: at most ``MAX_META_BYTES``, nested at most ``MAX_DEPTH`` deep
  (real metadata is 4 deep; json's C parser would raise RecursionError);
* ``format`` an int the tool understands; ``kind`` a string;
* ``arch``: ``name`` a non-empty string, either a registered name or an
  import path ``package.module:callable`` (dotted identifiers only: a
  checkpoint can name a module on the user's ``sys.path``, never a file;
  ``models/registry.py``), ``kwargs`` an object whose numbers
  are finite and whose integers are sizes in ``[0, MAX_SIZE]``; the sizes the
  built-in builders take (``input_shape``, ``num_classes``, ``hidden``,
  ``channels``, ``nblocks``, ``growth_rate``) are checked by name, and
  ``reduction`` lies in (0, 1]. A plugin architecture whose constructor takes
  a negative integer cannot be stored (none of the built-ins does);
* ``training``, ``dataset``, ``sisa`` objects; ``lineage`` a list of objects;
  ``dataset.manifest`` a string, ``dataset.n_train`` a non-negative int.

Whether the weights fit ``arch`` is checked when the module is built
(``Checkpoint.build_model``), on the meta device first, so no absurd size is
ever allocated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from unlearn_cli.data.schema import MAX_CLASSES
from unlearn_cli.errors import BadInput
from unlearn_cli.models.registry import IMPORT_PATH
from unlearn_cli.ops.inputs import show_path

#: Deepest nesting of the ``unlearn`` JSON; the SISA metadata, the deepest real one, is 4.
MAX_DEPTH = 16
#: The ``unlearn`` JSON text (SISA assignments grow with the train set: ~16 bytes a record).
MAX_META_BYTES = 64 << 20
#: Largest integer size in ``arch.kwargs`` (a layer width, an image side): 2**24.
MAX_SIZE = 1 << 24
#: kwargs that are lists of positive sizes / positive sizes, in the built-in builders.
_SIZE_LISTS = {"input_shape": 1, "hidden": 1, "channels": 1, "nblocks": 0}
_SIZES = {"num_classes": 1, "growth_rate": 1}


def _fail(path: Path, key: str, detail: str) -> BadInput:
    return BadInput(f"{show_path(path)}: checkpoint metadata key '{show_path(key)}' {detail}")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def parse_meta(path: Path, text: Any, newest_format: int = 1) -> dict[str, Any]:
    """The ``unlearn`` metadata JSON parsed and validated (see the module docstring)."""
    if not isinstance(text, str):
        raise BadInput(f"{show_path(path)}: 'unlearn' metadata is not a JSON string")
    if len(text) > MAX_META_BYTES:
        raise BadInput(f"{show_path(path)}: 'unlearn' metadata is larger than {MAX_META_BYTES >> 20} MiB")
    try:
        meta = json.loads(text)
    except RecursionError:
        raise BadInput(f"{show_path(path)}: 'unlearn' metadata is nested too deeply") from None
    except ValueError:
        raise BadInput(f"{show_path(path)}: 'unlearn' metadata is not valid JSON") from None
    if not isinstance(meta, dict) or "arch" not in meta:
        raise BadInput(f"{show_path(path)}: 'unlearn' metadata lacks the 'arch' entry")
    if _depth(meta) > MAX_DEPTH:
        raise BadInput(f"{show_path(path)}: 'unlearn' metadata is nested deeper than {MAX_DEPTH} levels")
    validate_meta(path, meta, newest_format)
    return meta


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (the parser allows ~1000 levels)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_meta(path: Path, meta: dict[str, Any], newest_format: int = 1) -> None:
    """Types and ranges of the keys commands use; raises a BadInput naming the first bad key."""
    fmt = meta.get("format", 0)
    if not _is_int(fmt) or not 0 <= fmt:
        raise _fail(path, "format", f"must be a non-negative integer, not {_type_name(fmt)}")
    if fmt > newest_format:
        raise BadInput(f"{show_path(path)}: checkpoint format {fmt} is newer than this tool "
                       f"understands ({newest_format})")
    if not isinstance(meta.get("kind", "plain"), str):
        raise _fail(path, "kind", "must be a string")
    for key in ("training", "dataset", "sisa"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise _fail(path, key, f"must be an object, not {_type_name(meta[key])}")
    lineage = meta.get("lineage")
    if lineage is not None:
        if not isinstance(lineage, list):
            raise _fail(path, "lineage", f"must be a list, not {_type_name(lineage)}")
        for i, step in enumerate(lineage):
            if not isinstance(step, dict):
                raise _fail(path, f"lineage[{i}]", f"must be an object, not {_type_name(step)}")
    _check_dataset(path, meta.get("dataset") or {})
    _check_arch(path, meta["arch"])


def _check_dataset(path: Path, dataset: dict[str, Any]) -> None:
    manifest = dataset.get("manifest")
    if manifest is not None and (not isinstance(manifest, str) or not manifest.strip() or "\x00" in manifest):
        raise _fail(path, "dataset.manifest", f"must be a file path (a string), not {_type_name(manifest)}")
    n_train = dataset.get("n_train")
    if n_train is not None and (not _is_int(n_train) or n_train < 0):
        raise _fail(path, "dataset.n_train", "must be a non-negative integer")
    for key in ("name", "data_sha256", "train_ids_digest"):
        if dataset.get(key) is not None and not isinstance(dataset[key], str):
            raise _fail(path, f"dataset.{key}", f"must be a string, not {_type_name(dataset[key])}")


def _check_arch(path: Path, arch: Any) -> None:
    if not isinstance(arch, dict):
        raise _fail(path, "arch", f"must be an object, not {_type_name(arch)}")
    name = arch.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, "arch.name", "must be a non-empty string (an architecture name)")
    if ":" in name and not IMPORT_PATH.fullmatch(name):
        raise _fail(path, "arch.name", "must be a registered architecture name or an import path "
                    "package.module:callable (dotted module names, never a file path)")
    kwargs = arch.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise _fail(path, "arch.kwargs", f"must be an object, not {_type_name(kwargs)}")
    for key, value in kwargs.items():
        _check_value(path, f"arch.kwargs.{key}", value)
        if key == "hidden" and _is_int(value):  # cnn's hidden is one width, mlp's a list
            _check_size(path, f"arch.kwargs.{key}", value, 1)
        elif key in _SIZE_LISTS:
            _check_sizes(path, f"arch.kwargs.{key}", value, _SIZE_LISTS[key])
        elif key in _SIZES:
            _check_size(path, f"arch.kwargs.{key}", value, _SIZES[key])
    classes = kwargs.get("num_classes")
    if _is_int(classes) and classes > MAX_CLASSES:
        raise _fail(path, "arch.kwargs.num_classes", f"is larger than the {MAX_CLASSES:,} classes allowed")
    reduction = kwargs.get("reduction")
    if reduction is not None and (isinstance(reduction, (bool, str, list, dict)) or not 0 < reduction <= 1):
        raise _fail(path, "arch.kwargs.reduction", "must be a number in (0, 1]")


def _check_value(path: Path, key: str, value: Any) -> None:
    """Every number finite, every integer a size in [0, MAX_SIZE] (lists and objects walked)."""
    stack = [(key, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise _fail(path, where, "must be a finite number")
        if _is_int(node) and not 0 <= node <= MAX_SIZE:
            raise _fail(path, where, f"must be a size between 0 and {MAX_SIZE:,}, not {node:.4g}")
        if isinstance(node, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))
        elif isinstance(node, dict):
            stack.extend((f"{where}.{k}", v) for k, v in node.items())


def _check_size(path: Path, key: str, value: Any, least: int) -> None:
    if not _is_int(value) or value < least:
        raise _fail(path, key, f"must be an integer of at least {least}")


def _check_sizes(path: Path, key: str, value: Any, least: int) -> None:
    if not isinstance(value, list):
        raise _fail(path, key, f"must be a list of integers, not {_type_name(value)}")
    for i, item in enumerate(value):
        _check_size(path, f"{key}[{i}]", item, least)
    if key.endswith("input_shape") and not value:
        raise _fail(path, key, "must not be empty")
