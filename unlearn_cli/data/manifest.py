"""Dataset manifests: a YAML file that says where a data set lives and how to read it.

A manifest (read with ``yaml.safe_load`` only) looks like::

    name: moons                 # required string
    num_classes: 2              # required positive int
    data:
      path: moons.safetensors   # required; relative to the manifest's directory;
                                #   .safetensors, .npz or .csv
      features: x               # array name; csv: list of columns (omitted = every column
                                #   except labels, ids and split-mask columns, in file order)
      labels: y                 # int class labels 0..num_classes-1 (required)
      ids: id                   # optional; integer array or csv column (strings allowed);
                                #   default = row index
      categorical: []           # csv only: columns one-hot encoded as ``col=value``
                                #   (distinct values sorted as strings)
    splits:                     # optional; default: every row is train
      train: train_mask         # bool array / csv column (true/false/1/0), or
      test: {fraction: 0.2, seed: 0}
    input_shape: [1, 28, 28]    # optional: reshape each feature row
    normalize: standard         # none | standard | minmax | scale255 (train rows only)
    sha256: <hex>               # optional; checked against the data file on load
    source: ...                 # optional provenance text
    license: ...                # optional

Split rules: only ``test`` given -> train is the rest; only ``train`` given ->
test is the rest; both given -> they must not overlap and rows in neither are
unused.  ``{fraction, seed}`` picks ``round(fraction * N)`` rows from the front
of ``np.random.default_rng(seed).permutation(N)``.  When *both* splits are
fractions they are carved as consecutive blocks of one permutation (test first,
then train) so that they never overlap; they must then share the seed.

Record IDs are strings: integers in decimal, csv cells stripped.  Features are
flattened to ``(N, D)`` float32, normalised with statistics of the train rows
only, then reshaped to ``(N, *input_shape)``.

Every schema or data problem raises :class:`~unlearn_cli.errors.BadInput`
with a one-line message naming the manifest file and the offending key.
This module deliberately does not import torch: loading a manifest must stay
cheap for commands such as ``mark`` and ``inspect``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

from unlearn_cli.ops.digests import file_sha256
from unlearn_cli.errors import BadInput, one_line

TOP_KEYS = ("name", "num_classes", "data", "splits", "input_shape", "normalize",
            "sha256", "source", "license")
DATA_KEYS = ("path", "features", "labels", "ids", "categorical")
SPLIT_KEYS = ("train", "test")
FRACTION_KEYS = ("fraction", "seed")
NORMALIZE_MODES = ("none", "standard", "minmax", "scale255")
DATA_SUFFIXES = (".safetensors", ".npz", ".csv")

_CSV_TRUE = frozenset({"true", "1"})
_CSV_FALSE = frozenset({"false", "0"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# How many names an error message lists before summarising the rest: keeps the
# message readable on one terminal line for files with thousands of columns.
_MAX_LISTED = 20


@dataclass(eq=False)  # eq over numpy arrays is ill-defined; identity is enough
class Dataset:
    """A loaded data set: normalised features, labels, IDs and split masks."""

    name: str
    num_classes: int
    manifest_path: Path
    data_path: Path
    data_sha256: str
    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    train: np.ndarray
    test: np.ndarray
    input_shape: tuple[int, ...]
    normalize: str
    feature_names: list[str]
    source: str | None
    license: str | None
    raw: dict
    # Built on first index_of() call: most commands never look IDs up.
    _index: dict[str, int] | None = field(default=None, init=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.ids)

    def train_indices(self) -> np.ndarray:
        return np.flatnonzero(self.train).astype(np.int64)

    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.test).astype(np.int64)

    @property
    def train_ids(self) -> list[str]:
        return [self.ids[i] for i in self.train_indices()]

    @property
    def test_ids(self) -> list[str]:
        return [self.ids[i] for i in self.test_indices()]

    def index_of(self, ids: Iterable[str]) -> np.ndarray:
        """Row indices (int64, in the given order) of ``ids``, searched over all rows.

        Raises BadInput naming up to ten unknown IDs.  Whether an ID must be
        in the train split is the caller's rule, not this lookup's.
        """
        if self._index is None:
            self._index = {rid: i for i, rid in enumerate(self.ids)}
        index = self._index
        rows: list[int] = []
        unknown: list[str] = []
        for rid in ids:
            key = rid if isinstance(rid, str) else str(rid)
            row = index.get(key)
            if row is None:
                unknown.append(key)
            else:
                rows.append(row)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise BadInput(one_line(
                f"{self.manifest_path.name}: {len(unknown)} id(s) not in data set "
                f"{self.name!r}: {shown}{more}"))
        return np.asarray(rows, dtype=np.int64)

    def train_id_digest(self) -> str:
        """sha256 of the sorted train IDs joined by newlines: identifies the train set."""
        return hashlib.sha256("\n".join(sorted(self.train_ids)).encode()).hexdigest()

    def subset_train(self, keep: np.ndarray) -> Dataset:
        """Copy whose train mask is restricted to the rows in ``keep``.

        ``keep`` is int row indices or a bool mask of length ``n``.  Features,
        labels and normalisation are shared unchanged (retraining without some
        records must see exactly the same inputs).  Rows of ``keep`` outside the
        train split are ignored; the result may have an empty train split.
        """
        keep = np.asarray(keep)
        if keep.dtype == np.bool_:
            if keep.shape != (self.n,):
                raise ValueError(f"bool keep mask must have shape ({self.n},), got {keep.shape}")
            keep_mask = keep
        else:
            if keep.size and not np.issubdtype(keep.dtype, np.integer):
                raise ValueError(f"keep must be int indices or a bool mask, got dtype {keep.dtype}")
            idx = keep.astype(np.int64).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= self.n):
                raise ValueError(f"keep indices must lie in [0, {self.n})")
            keep_mask = np.zeros(self.n, dtype=bool)
            keep_mask[idx] = True
        return dataclasses.replace(self, train=self.train & keep_mask, test=self.test.copy())


# --------------------------------------------------------------------------- loading


class _Ctx:
    """Carries the manifest name so every error message names the file and key."""

    def __init__(self, manifest: str) -> None:
        self.manifest = manifest

    def fail(self, key: str | None, detail: str) -> NoReturn:
        """Raise BadInput: "<manifest>: key '<key>' <detail>".

        A detail that reads as a predicate ("must be ...") follows the key
        directly; one starting with ":" is a statement about the key's value.
        """
        where = f"key '{key}'" if key else ""
        sep = "" if not key or detail.startswith(":") else " "
        raise BadInput(one_line(f"{self.manifest}: {where}{sep}{detail}"))


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return shown or "none"


def _check_keys(ctx: _Ctx, mapping: Mapping, valid: tuple[str, ...], where: str | None) -> None:
    unknown = [k for k in mapping if k not in valid]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        ctx.fail(key, f"is not a valid key; valid keys{' under ' + repr(where) if where else ''}"
                      f": {', '.join(valid)}")


def _is_int(v: Any) -> bool:
    # bool is an int subclass, but `num_classes: true` is certainly a mistake.
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_str(ctx: _Ctx, raw: Mapping, key: str) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        ctx.fail(key, f"must be a string, got {v!r}")
    return v


def load_manifest(path: str | os.PathLike, *, verify_sha256: bool = True) -> Dataset:
    """Read a manifest and its data file into a :class:`Dataset`.

    ``verify_sha256=False`` skips comparing the file against the manifest's
    ``sha256`` key; the actual digest is still computed and returned.
    """
    ctx = _Ctx(os.fspath(path))
    manifest_path = Path(path).resolve()
    try:
        text = manifest_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        ctx.fail(None, "manifest file not found")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.fail(None, f"cannot read manifest: {exc}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        ctx.fail(None, f"not valid YAML: {exc}")
    if not isinstance(raw, dict):
        ctx.fail(None, f"not a YAML mapping; expected keys {', '.join(TOP_KEYS)}")
    _check_keys(ctx, raw, TOP_KEYS, None)

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        ctx.fail("name", f"must be a non-empty string, got {name!r}")
    num_classes = raw.get("num_classes")
    if not _is_int(num_classes) or num_classes <= 0:
        ctx.fail("num_classes", f"must be a positive integer, got {num_classes!r}")
    normalize = raw.get("normalize", "none")
    if normalize is None:  # `normalize:` left empty reads as null; treat as none
        normalize = "none"
    if normalize not in NORMALIZE_MODES:
        ctx.fail("normalize", f"must be one of {', '.join(NORMALIZE_MODES)}, got {normalize!r}")
    input_shape = _parse_input_shape(ctx, raw.get("input_shape"))
    expected_sha = raw.get("sha256")
    if expected_sha is not None:
        if not isinstance(expected_sha, str) or not _HEX64.match(expected_sha.strip().lower()):
            ctx.fail("sha256", f"must be a 64-digit hex string, got {expected_sha!r}")
        expected_sha = expected_sha.strip().lower()
    source = _opt_str(ctx, raw, "source")
    license_ = _opt_str(ctx, raw, "license")

    data = raw.get("data")
    if not isinstance(data, dict):
        ctx.fail("data", f"is required and must be a mapping with keys {', '.join(DATA_KEYS)}")
    _check_keys(ctx, data, DATA_KEYS, "data")
    splits = raw.get("splits")
    if splits is None:
        splits = {}
    if not isinstance(splits, dict):
        ctx.fail("splits", f"must be a mapping with keys train and/or test, got {splits!r}")
    _check_keys(ctx, splits, SPLIT_KEYS, "splits")
    split_specs = {k: _parse_split_spec(ctx, k, splits[k]) for k in SPLIT_KEYS
                   if splits.get(k) is not None}

    rel = data.get("path")
    if not isinstance(rel, str) or not rel.strip():
        ctx.fail("data.path", f"is required and must be a file path, got {rel!r}")
    data_path = (manifest_path.parent / rel).resolve()
    suffix = data_path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        ctx.fail("data.path", f"must end in {', '.join(DATA_SUFFIXES)}, got {rel!r}")
    if not data_path.is_file():
        ctx.fail("data.path", f": data file not found: {data_path}")
    try:
        actual_sha = file_sha256(data_path)
    except OSError as exc:
        ctx.fail("data.path", f": cannot read data file {data_path}: {exc}")
    if verify_sha256 and expected_sha is not None and expected_sha != actual_sha:
        ctx.fail("sha256", f"does not match data file {data_path.name}: "
                           f"manifest says {expected_sha}, file is {actual_sha}")

    # Names of mask columns, so csv "all other columns" excludes them.
    mask_names = {k: s for k, s in split_specs.items() if isinstance(s, str)}
    if suffix == ".csv":
        cols = _read_csv(ctx, data, data_path, mask_names)
    else:
        cols = _read_arrays(ctx, data, data_path, suffix, mask_names)
    feats2d, y, ids, masks, feature_names = cols

    n = feats2d.shape[0]
    if n == 0:
        ctx.fail("data.path", f": data file {data_path.name} has no rows")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        r = int(bad[0])
        ctx.fail("data.labels", f": label {int(y[r])} at row {r} is outside [0, {num_classes}) "
                                f"(num_classes={num_classes})")
    _check_unique(ctx, ids)
    train, test = _make_splits(ctx, n, split_specs, masks)

    d = feats2d.shape[1]
    if input_shape is None:
        input_shape = (d,)
    elif math.prod(input_shape) != d:
        ctx.fail("input_shape", f": {list(input_shape)} has {math.prod(input_shape)} elements "
                                f"but each row has {d} features")
    x = _normalize(feats2d, train, normalize).reshape((n, *input_shape))

    return Dataset(
        name=name, num_classes=num_classes, manifest_path=manifest_path,
        data_path=data_path, data_sha256=actual_sha, x=x, y=y, ids=ids,
        train=train, test=test, input_shape=input_shape, normalize=normalize,
        feature_names=feature_names, source=source, license=license_, raw=raw,
    )


def _parse_input_shape(ctx: _Ctx, v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    if (not isinstance(v, list) or not v
            or not all(_is_int(s) and s > 0 for s in v)):
        ctx.fail("input_shape", f"must be a non-empty list of positive integers, got {v!r}")
    return tuple(v)


def _parse_split_spec(ctx: _Ctx, which: str, v: Any) -> str | tuple[float, int, bool]:
    """A mask array/column name, or (fraction, seed, seed_was_given)."""
    key = f"splits.{which}"
    if isinstance(v, str):
        if not v.strip():
            ctx.fail(key, "must name a mask array/column or be {fraction, seed}")
        return v
    if not isinstance(v, dict):
        ctx.fail(key, f"must name a mask array/column or be {{fraction, seed}}, got {v!r}")
    _check_keys(ctx, v, FRACTION_KEYS, key)
    frac = v.get("fraction")
    if (isinstance(frac, bool) or not isinstance(frac, (int, float))
            or not 0 < frac < 1):
        ctx.fail(f"{key}.fraction", f"must be a number strictly between 0 and 1, got {frac!r}")
    seed = v.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        ctx.fail(f"{key}.seed", f"must be a non-negative integer, got {seed!r}")
    return float(frac), int(seed), "seed" in v


def _make_splits(ctx: _Ctx, n: int, specs: dict, masks: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    tr, te = specs.get("train"), specs.get("test")
    if tr is None and te is None:
        train, test = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    elif isinstance(tr, tuple) and isinstance(te, tuple):
        # Two independent draws would almost surely overlap, so both fractions
        # share one permutation and take consecutive blocks.
        (ftr, str_, gtr), (fte, ste, gte) = tr, te
        if gtr and gte and str_ != ste:
            ctx.fail("splits.train.seed", f"must equal splits.test.seed ({ste}) when both "
                                          f"splits are fractions, got {str_}")
        seed = ste if gte else str_
        k_te, k_tr = int(round(fte * n)), int(round(ftr * n))
        if k_te + k_tr > n:
            ctx.fail("splits.train.fraction", f"plus splits.test.fraction exceeds 1 "
                                              f"({ftr} + {fte})")
        perm = np.random.default_rng(seed).permutation(n)
        train, test = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        test[perm[:k_te]] = True
        train[perm[k_te:k_te + k_tr]] = True
    else:
        train = None if tr is None else _split_mask(n, tr, masks, "train")
        test = None if te is None else _split_mask(n, te, masks, "test")
        if train is None:
            train = ~test
        elif test is None:
            test = ~train
        else:
            both = np.flatnonzero(train & test)
            if both.size:
                ctx.fail("splits.train", f"and key 'splits.test' overlap in {both.size} row(s), "
                                         f"first at row {int(both[0])}")
    if not train.any():
        ctx.fail("splits.train", "selects no rows: the train split must be non-empty")
    return train, test


def _split_mask(n: int, spec: str | tuple[float, int, bool], masks: dict[str, np.ndarray],
                which: str) -> np.ndarray:
    if isinstance(spec, str):
        return masks[which].copy()
    fraction, seed, _ = spec
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:int(round(fraction * n))]] = True
    return mask


def _check_unique(ctx: _Ctx, ids: list[str]) -> None:
    if len(set(ids)) == len(ids):
        return
    seen: dict[str, int] = {}
    for i, rid in enumerate(ids):
        if rid in seen:
            ctx.fail("data.ids", f": ids must be unique: {rid!r} appears at rows {seen[rid]} and {i}")
        seen[rid] = i


def _normalize(x: np.ndarray, train: np.ndarray, mode: str) -> np.ndarray:
    """Scale (N, D) float32 features; statistics come from train rows only."""
    if mode == "none":
        return x
    if mode == "scale255":
        return x / np.float32(255.0)
    # float64 statistics: float32 sums over many rows lose precision.
    tx = x[train].astype(np.float64)
    if mode == "standard":
        centre, spread = tx.mean(axis=0), tx.std(axis=0)
    else:  # minmax
        centre, spread = tx.min(axis=0), tx.max(axis=0) - tx.min(axis=0)
    # Constant features would divide by zero; leave them shifted but unscaled.
    spread = np.where(spread > 0, spread, 1.0)
    return ((x - centre.astype(np.float32)) / spread.astype(np.float32)).astype(np.float32)


# --------------------------------------------------------------------------- readers

# What a reader returns: features (N, D) float32, labels int64, ids, split
# masks by split name, feature names.
_Columns = tuple[np.ndarray, np.ndarray, list[str], dict[str, np.ndarray], list[str]]


def _finite_features(ctx: _Ctx, key: str, x: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        ctx.fail(key, f": features contain NaN or Inf (first at row {r}, feature {c})")
    return x


def _read_arrays(ctx: _Ctx, data: Mapping, data_path: Path, suffix: str,
                 mask_names: dict[str, str]) -> _Columns:
    """Read features, labels, ids and masks from a .safetensors or .npz file."""
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file
            arrays: Mapping[str, Any] = load_file(str(data_path))
        else:
            arrays = np.load(data_path, allow_pickle=False)
    # Corrupt files surface as many exception types (safetensors' own error,
    # zipfile.BadZipFile, ValueError, OSError); all mean "unreadable".
    except Exception as exc:  # noqa: BLE001
        ctx.fail("data.path", f": cannot read data file {data_path.name}: {exc}")
    available = sorted(arrays.keys())

    def get(key: str, array_name: Any) -> np.ndarray:
        if not isinstance(array_name, str) or not array_name:
            ctx.fail(key, f"must be the name of an array in {data_path.name}, got {array_name!r}")
        if array_name not in available:
            ctx.fail(key, f"names array {array_name!r} which is not in {data_path.name} "
                          f"(available: {_listing(available)})")
        try:
            return np.asarray(arrays[array_name])
        except Exception as exc:  # noqa: BLE001  (e.g. object arrays refused without pickle)
            ctx.fail(key, f": cannot read array {array_name!r} from {data_path.name}: {exc}")

    if data.get("categorical"):
        ctx.fail("data.categorical", f"is only supported for .csv data, not {suffix}")
    if data.get("features") is None:
        ctx.fail("data.features", f"is required for {suffix} data (the feature array's name)")
    if data.get("labels") is None:
        ctx.fail("data.labels", "is required (the label array's name)")
    if data.get("features") == data.get("labels"):
        ctx.fail("data.features", "must not be the same array as data.labels")

    feats = get("data.features", data["features"])
    if feats.dtype.kind not in "biuf" or feats.ndim == 0:
        ctx.fail("data.features", f": array {data['features']!r} must be a numeric array with a "
                                  f"row axis, got dtype {feats.dtype} shape {feats.shape}")
    n = feats.shape[0]
    x = feats.reshape(n, -1).astype(np.float32)
    if x.shape[1] == 0:
        ctx.fail("data.features", f": array {data['features']!r} has no feature columns")
    _finite_features(ctx, "data.features", x)

    def vector(key: str, array_name: str) -> np.ndarray:
        arr = get(key, array_name)
        if arr.shape != (n,):
            ctx.fail(key, f": array {array_name!r} must have shape ({n},) to match the features, "
                          f"got {arr.shape}")
        return arr

    yarr = vector("data.labels", data["labels"])
    y = _int_labels(ctx, yarr)

    if data.get("ids") is None:
        ids = [str(i) for i in range(n)]
    else:
        iarr = vector("data.ids", data["ids"])
        if iarr.dtype.kind in "iu":
            ids = [str(int(v)) for v in iarr]
        elif iarr.dtype.kind == "U":
            ids = [str(v).strip() for v in iarr]
        elif iarr.dtype.kind == "S":
            ids = [bytes(v).decode("utf-8", "replace").strip() for v in iarr]
        else:
            ctx.fail("data.ids", f": array {data['ids']!r} must hold integers or strings, "
                                 f"got dtype {iarr.dtype}")
        if any(not s for s in ids):
            ctx.fail("data.ids", f": array {data['ids']!r} contains an empty id "
                                 f"(row {next(i for i, s in enumerate(ids) if not s)})")

    masks: dict[str, np.ndarray] = {}
    for which, array_name in mask_names.items():
        key = f"splits.{which}"
        arr = vector(key, array_name)
        if arr.dtype == np.bool_:
            masks[which] = arr.astype(bool)
        # 0/1 integer masks are common from tools without a bool dtype.
        elif arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
            masks[which] = arr.astype(bool)
        else:
            ctx.fail(key, f": array {array_name!r} must be a bool (or 0/1) mask, "
                          f"got dtype {arr.dtype}")
    names = [f"f{i}" for i in range(x.shape[1])]
    return x, y, ids, masks, names


def _int_labels(ctx: _Ctx, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        # Float labels are accepted only when every value is a whole number.
        finite = np.isfinite(arr)
        whole = finite & (arr == np.round(np.where(finite, arr, 0)))
        if not whole.all():
            r = int(np.flatnonzero(~whole)[0])
            ctx.fail("data.labels", f": labels must be integers; row {r} is {float(arr[r])!r}")
        return arr.astype(np.int64)
    ctx.fail("data.labels", f": labels must be integers, got dtype {arr.dtype}")


def _read_csv(ctx: _Ctx, data: Mapping, data_path: Path,
              mask_names: dict[str, str]) -> _Columns:
    """Read a csv with a header row; numeric columns as float, categorical one-hot."""
    try:
        with open(data_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        ctx.fail("data.path", f": cannot read data file {data_path.name}: {exc}")
    # Trailing blank lines are common in hand-edited files; they are not rows.
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        ctx.fail("data.path", f": data file {data_path.name} is empty (a header row is required)")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if len(set(header)) != len(header):
        dup = next(h for i, h in enumerate(header) if h in header[:i])
        ctx.fail("data.path", f": data file {data_path.name} has a duplicate column {dup!r}")
    col_of = {h: i for i, h in enumerate(header)}
    for r, row in enumerate(body):
        if len(row) != len(header):
            ctx.fail("data.path", f": data file {data_path.name} line {r + 2} has {len(row)} "
                                  f"fields, the header has {len(header)}")
    n = len(body)

    def column(key: str, col: Any) -> list[str]:
        if not isinstance(col, str) or not col:
            ctx.fail(key, f"must be a column name of {data_path.name}, got {col!r}")
        if col not in col_of:
            ctx.fail(key, f"names column {col!r} which is not in {data_path.name} "
                          f"(columns: {_listing(header)})")
        j = col_of[col]
        return [row[j].strip() for row in body]

    labels_col = data.get("labels")
    if labels_col is None:
        ctx.fail("data.labels", "is required (the label column's name)")
    ids_col = data.get("ids")

    categorical = data.get("categorical") or []
    if isinstance(categorical, str):
        categorical = [categorical]
    if not isinstance(categorical, list) or not all(isinstance(c, str) for c in categorical):
        ctx.fail("data.categorical", f"must be a list of column names, got {categorical!r}")
    for c in categorical:
        column("data.categorical", c)

    feats_spec = data.get("features")
    if feats_spec is None:
        reserved = {labels_col, ids_col, *mask_names.values()}
        feat_cols = [h for h in header if h not in reserved]
        if not feat_cols:
            ctx.fail("data.features", f": no feature columns left in {data_path.name} after "
                                      f"removing labels, ids and split columns")
    else:
        feat_cols = [feats_spec] if isinstance(feats_spec, str) else feats_spec
        if (not isinstance(feat_cols, list) or not feat_cols
                or not all(isinstance(c, str) for c in feat_cols)):
            ctx.fail("data.features", f"must be a non-empty list of column names, got {feats_spec!r}")
        dups = [c for i, c in enumerate(feat_cols) if c in feat_cols[:i]]
        if dups:
            ctx.fail("data.features", f"lists column {dups[0]!r} twice")
        if labels_col in feat_cols:
            ctx.fail("data.features", f"must not include the label column {labels_col!r}")
    missing_cat = [c for c in categorical if c not in feat_cols]
    if missing_cat:
        ctx.fail("data.categorical", f": column {missing_cat[0]!r} is not one of the feature columns")

    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in feat_cols:
        cells = column("data.features", col)
        if col in categorical:
            values = sorted(set(cells))
            pos = {v: k for k, v in enumerate(values)}
            block = np.zeros((n, len(values)), dtype=np.float32)
            block[np.arange(n), [pos[c] for c in cells]] = 1.0
            blocks.append(block)
            names.extend(f"{col}={v}" for v in values)
        else:
            vals = np.empty(n, dtype=np.float32)
            for r, cell in enumerate(cells):
                try:
                    vals[r] = float(cell)
                except ValueError:
                    ctx.fail("data.features", f": column {col!r} row {r} (line {r + 2}) is not a "
                                              f"number: {cell!r} (list it in data.categorical?)")
            blocks.append(vals[:, None])
            names.append(col)
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)
    _finite_features(ctx, "data.features", x)

    y = np.empty(n, dtype=np.int64)
    for r, cell in enumerate(column("data.labels", labels_col)):
        y[r] = _parse_csv_label(ctx, labels_col, r, cell)

    if ids_col is None:
        ids = [str(i) for i in range(n)]
    else:
        ids = column("data.ids", ids_col)
        for r, rid in enumerate(ids):
            if not rid:
                ctx.fail("data.ids", f": column {ids_col!r} row {r} (line {r + 2}) is empty")

    masks: dict[str, np.ndarray] = {}
    for which, col in mask_names.items():
        key = f"splits.{which}"
        mask = np.empty(n, dtype=bool)
        for r, cell in enumerate(column(key, col)):
            low = cell.lower()
            if low in _CSV_TRUE:
                mask[r] = True
            elif low in _CSV_FALSE:
                mask[r] = False
            else:
                ctx.fail(key, f": column {col!r} row {r} (line {r + 2}) must be true/false/1/0, "
                              f"got {cell!r}")
        masks[which] = mask
    return x, y, ids, masks, names


def _parse_csv_label(ctx: _Ctx, col: str, r: int, cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        v = float(cell)
    except ValueError:
        v = math.nan
    if math.isfinite(v) and v == int(v):  # "1.0" written by float-minded tools
        return int(v)
    ctx.fail("data.labels", f": column {col!r} row {r} (line {r + 2}) is not an integer "
                            f"label: {cell!r}")
