"""The manifest schema: its keys, how each is checked, and how errors name them.

Every problem raises :class:`~unlearn_cli.errors.BadInput` with one line that
names the manifest file and the offending key (``ManifestContext.fail``). The
readers (``array_reader``, ``csv_reader``) and the split rules (``splits``)
report through the same context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from unlearn_cli.errors import BadInput, one_line
from unlearn_cli.ops.inputs import excerpt, show_path

TOP_KEYS = ("name", "num_classes", "data", "splits", "input_shape", "normalize",
            "sha256", "source", "license")
DATA_KEYS = ("path", "features", "labels", "ids", "categorical")
SPLIT_KEYS = ("train", "test", "validation")
FRACTION_KEYS = ("fraction", "seed")
NORMALIZE_MODES = ("none", "standard", "minmax", "scale255")
DATA_SUFFIXES = (".safetensors", ".npz", ".csv")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# How many names an error message lists before summarising the rest: keeps the
# message readable on one terminal line for files with thousands of columns.
_MAX_LISTED = 20
#: Longest excerpt of a value from a file that a message quotes.
_MAX_QUOTED = 40
#: Most classes a manifest may declare: ImageNet-21k has about 22,000; the
#: bound stops an absurd ``num_classes`` from sizing a model's output layer.
MAX_CLASSES = 100_000

#: A split given as a mask array/column name, or as (fraction, seed, seed_was_given).
SplitSpec = str | tuple[float, int, bool]

# What a reader returns: features (N, D) float32, labels int64, ids, split
# masks by split name, feature names.
Columns = tuple[np.ndarray, np.ndarray, list[str], dict[str, np.ndarray], list[str]]


class ManifestContext:
    """Carries the manifest name so every error message names the file and key.

    ``quote=False`` (a manifest named by a checkpoint, not by the user: it may
    point at any file) keeps values read from the file out of messages, so a
    hostile checkpoint cannot make the tool print another file's contents.
    Quoted values are cut to ``_MAX_QUOTED`` characters either way.
    """

    def __init__(self, manifest: str, quote: bool = True) -> None:
        self.manifest = show_path(manifest)
        self.quote = quote

    def show(self, value: Any) -> str:
        """A value read from the manifest or its data file, as a message may show it."""
        if self.quote:
            return excerpt(value, _MAX_QUOTED)
        return f"a {type(value).__name__} (not shown: the manifest was named by a checkpoint)"

    def names(self, names: Iterable[str]) -> str:
        """Column/array names of a data file for a message (see ``listing``)."""
        return listing(names) if self.quote else "not shown"

    def fail(self, key: str | None, detail: str) -> NoReturn:
        """Raise BadInput: "<manifest>: key '<key>' <detail>".

        A detail that reads as a predicate ("must be ...") follows the key
        directly; one starting with ":" is a statement about the key's value.
        """
        where = f"key '{key}'" if key else ""
        sep = "" if not key or detail.startswith(":") else " "
        raise BadInput(one_line(f"{self.manifest}: {where}{sep}{detail}"))


@dataclass
class ManifestFields:
    """The checked top-level entries of a manifest (the data file not yet read)."""

    name: str
    num_classes: int
    normalize: str
    input_shape: tuple[int, ...] | None
    expected_sha256: str | None
    source: str | None
    license: str | None
    data: Mapping[str, Any]
    splits: dict[str, SplitSpec]


def listing(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(excerpt(n, _MAX_QUOTED) for n in names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return shown or "none"


def check_keys(ctx: ManifestContext, mapping: Mapping, valid: tuple[str, ...], where: str | None) -> None:
    unknown = [k for k in mapping if k not in valid]
    if unknown:
        name = excerpt(unknown[0], _MAX_QUOTED)[1:-1] if isinstance(unknown[0], str) else ctx.show(unknown[0])
        name = name if ctx.quote else "?"
        key = f"{where}.{name}" if where else name
        ctx.fail(key, f"is not a valid key; valid keys{' under ' + repr(where) if where else ''}"
                      f": {', '.join(valid)}")


def is_int(v: Any) -> bool:
    # bool is an int subclass, but `num_classes: true` is certainly a mistake.
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_str(ctx: ManifestContext, raw: Mapping, key: str) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        ctx.fail(key, f"must be a string, got {ctx.show(v)}")
    return v


def parse_fields(ctx: ManifestContext, raw: Any) -> ManifestFields:
    """Check a parsed manifest's keys and values, in the order errors are reported."""
    if not isinstance(raw, dict):
        ctx.fail(None, f"not a YAML mapping; expected keys {', '.join(TOP_KEYS)}")
    check_keys(ctx, raw, TOP_KEYS, None)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        ctx.fail("name", f"must be a non-empty string, got {ctx.show(name)}")
    num_classes = raw.get("num_classes")
    if not is_int(num_classes) or num_classes <= 0:
        ctx.fail("num_classes", f"must be a positive integer, got {ctx.show(num_classes)}")
    if num_classes > MAX_CLASSES:
        ctx.fail("num_classes", f"is {num_classes:.3g}: more than the {MAX_CLASSES:,} classes this tool "
                                "accepts (a typo?)")
    normalize = raw.get("normalize", "none")
    if normalize is None:  # `normalize:` left empty reads as null; treat as none
        normalize = "none"
    if normalize not in NORMALIZE_MODES:
        ctx.fail("normalize", f"must be one of {', '.join(NORMALIZE_MODES)}, got {ctx.show(normalize)}")
    input_shape = _parse_input_shape(ctx, raw.get("input_shape"))
    expected_sha = _parse_sha256(ctx, raw.get("sha256"))
    source = _opt_str(ctx, raw, "source")
    license_ = _opt_str(ctx, raw, "license")

    data = raw.get("data")
    if not isinstance(data, dict):
        ctx.fail("data", f"is required and must be a mapping with keys {', '.join(DATA_KEYS)}")
    check_keys(ctx, data, DATA_KEYS, "data")
    splits = raw.get("splits")
    if splits is None:
        splits = {}
    if not isinstance(splits, dict):
        ctx.fail("splits", f"must be a mapping with keys train, test and/or validation, got {ctx.show(splits)}")
    check_keys(ctx, splits, SPLIT_KEYS, "splits")
    split_specs = {k: _parse_split_spec(ctx, k, splits[k]) for k in SPLIT_KEYS
                   if splits.get(k) is not None}
    return ManifestFields(name, num_classes, normalize, input_shape, expected_sha, source, license_,
                          data, split_specs)


def _parse_sha256(ctx: ManifestContext, v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not _HEX64.match(v.strip().lower()):
        ctx.fail("sha256", f"must be a 64-digit hex string, got {ctx.show(v)}")
    return v.strip().lower()


def _parse_input_shape(ctx: ManifestContext, v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    if (not isinstance(v, list) or not v
            or not all(is_int(s) and s > 0 for s in v)):
        ctx.fail("input_shape", f"must be a non-empty list of positive integers, got {ctx.show(v)}")
    return tuple(v)


def _parse_split_spec(ctx: ManifestContext, which: str, v: Any) -> SplitSpec:
    """A mask array/column name, or (fraction, seed, seed_was_given)."""
    key = f"splits.{which}"
    if isinstance(v, str):
        if not v.strip():
            ctx.fail(key, "must name a mask array/column or be {fraction, seed}")
        return v
    if not isinstance(v, dict):
        ctx.fail(key, f"must name a mask array/column or be {{fraction, seed}}, got {ctx.show(v)}")
    check_keys(ctx, v, FRACTION_KEYS, key)
    frac = v.get("fraction")
    if (isinstance(frac, bool) or not isinstance(frac, (int, float))
            or not 0 < frac < 1):
        ctx.fail(f"{key}.fraction", f"must be a number strictly between 0 and 1, got {ctx.show(frac)}")
    seed = v.get("seed", 0)
    if not is_int(seed) or seed < 0:
        ctx.fail(f"{key}.seed", f"must be a non-negative integer, got {ctx.show(seed)}")
    return float(frac), int(seed), "seed" in v


def finite_features(ctx: ManifestContext, key: str, x: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        ctx.fail(key, f": features contain NaN or Inf (first at row {r}, feature {c})")
    return x
