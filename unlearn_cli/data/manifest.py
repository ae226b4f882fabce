"""Dataset manifests: a YAML file that says where a data set lives and how to read it.

A manifest (read with ``ops.yaml_input.load_yaml``: safe_load rules, aliases refused,
at most 1 MiB) looks like::

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
      validation: val_mask      # optional, same forms as test: held-out records for fitting
                                #   a criterion (PUMA's C) or a temperature; never trained on
    input_shape: [1, 28, 28]    # optional: reshape each feature row
    normalize: standard         # none | standard | minmax | scale255 (train rows only)
    sha256: <hex>               # optional; checked against the data file on load
    source: ...                 # optional provenance text
    license: ...                # optional

Split rules are in ``data/splits.py``, the key checks in ``data/schema.py``, the
file readers in ``data/array_reader.py`` and ``data/csv_reader.py``, scaling in
``data/normalize.py``.

Record IDs are strings: integers in decimal, csv cells stripped.  Features are
flattened to ``(N, D)`` float32, normalised with statistics of the train rows
only, then reshaped to ``(N, *input_shape)``.

Every schema or data problem raises :class:`~unlearn_cli.errors.BadInput`
with a one-line message naming the manifest file and the offending key.
This module deliberately does not import torch: loading a manifest must stay
cheap for commands such as ``mark`` and ``inspect``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from unlearn_cli.data.array_reader import read_arrays
from unlearn_cli.data.csv_reader import read_csv
from unlearn_cli.data.dataset import Dataset
from unlearn_cli.data.normalize import normalize
from unlearn_cli.data.schema import DATA_SUFFIXES, ManifestContext, parse_fields
from unlearn_cli.data.splits import make_splits
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.digests import file_sha256
from unlearn_cli.ops.inputs import DATA_LIMIT, check_regular, resolve_input, show_path
from unlearn_cli.ops.yaml_input import load_yaml


def load_manifest(path: str | os.PathLike, *, verify_sha256: bool = True, quote: bool = True) -> Dataset:
    """Read a manifest and its data file into a :class:`Dataset`.

    ``verify_sha256=False`` skips comparing the file against the manifest's
    ``sha256`` key; the actual digest is still computed and returned.
    ``quote=False`` keeps values from the files out of error messages (a
    manifest path recorded in a checkpoint may name any file at all).
    """
    ctx = ManifestContext(os.fspath(path), quote)
    manifest_path = resolve_input(path, "manifest")
    raw = load_yaml(path, "manifest")
    fields = parse_fields(ctx, raw)
    data_path = _data_path(ctx, manifest_path, fields.data)
    actual_sha = _data_sha256(ctx, data_path, fields.expected_sha256 if verify_sha256 else None)

    # Names of mask columns, so csv "all other columns" excludes them.
    mask_names = {k: s for k, s in fields.splits.items() if isinstance(s, str)}
    if data_path.suffix.lower() == ".csv":
        cols = read_csv(ctx, fields.data, data_path, mask_names)
    else:
        cols = read_arrays(ctx, fields.data, data_path, data_path.suffix.lower(), mask_names)
    feats2d, y, ids, masks, feature_names = cols

    n = feats2d.shape[0]
    if n == 0:
        ctx.fail("data.path", f": data file {data_path.name} has no rows")
    _check_labels(ctx, y, fields.num_classes)
    _check_unique(ctx, ids)
    train, test, validation = make_splits(ctx, n, fields.splits, masks)
    input_shape = _input_shape(ctx, fields.input_shape, feats2d.shape[1])
    x = normalize(feats2d, train, fields.normalize).reshape((n, *input_shape))

    return Dataset(
        name=fields.name, num_classes=fields.num_classes, manifest_path=manifest_path,
        data_path=data_path, data_sha256=actual_sha, x=x, y=y, ids=ids,
        train=train, test=test, validation=validation, input_shape=input_shape, normalize=fields.normalize,
        feature_names=feature_names, source=fields.source, license=fields.license, raw=raw,
    )


def _data_path(ctx: ManifestContext, manifest_path: Path, data: dict) -> Path:
    """``data.path`` resolved against the manifest's folder: a readable file of a known kind."""
    rel = data.get("path")
    if not isinstance(rel, str) or not rel.strip():
        ctx.fail("data.path", f"is required and must be a file path, got {ctx.show(rel)}")
    if Path(rel).suffix.lower() not in DATA_SUFFIXES:
        ctx.fail("data.path", f"must end in {', '.join(DATA_SUFFIXES)}, got {ctx.show(rel)}")
    given = manifest_path.parent / rel
    try:
        check_regular(given, "data file", DATA_LIMIT)  # names a FIFO, device, loop or dangling link as such
        data_path = resolve_input(given, "data file")
    except BadInput as exc:
        ctx.fail("data.path", f": {exc}")
    if data_path.suffix.lower() not in DATA_SUFFIXES:  # a symlink to a file of another kind
        ctx.fail("data.path", f"must end in {', '.join(DATA_SUFFIXES)}, got {ctx.show(rel)} "
                              f"(a link to {show_path(data_path.name)})")
    return data_path


def _data_sha256(ctx: ManifestContext, data_path: Path, expected: str | None) -> str:
    """The data file's sha256, checked against ``expected`` when one is given."""
    try:
        actual = file_sha256(data_path)
    except OSError as exc:
        ctx.fail("data.path", f": cannot read data file {show_path(data_path)}: {exc.strerror or exc}")
    if expected is not None and expected != actual:
        ctx.fail("sha256", f"does not match data file {data_path.name}: "
                           f"manifest says {expected}, file is {actual}")
    return actual


def _check_labels(ctx: ManifestContext, y: np.ndarray, num_classes: int) -> None:
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        r = int(bad[0])
        ctx.fail("data.labels", f": label {int(y[r])} at row {r} is outside [0, {num_classes}) "
                                f"(num_classes={num_classes})")


def _check_unique(ctx: ManifestContext, ids: list[str]) -> None:
    if len(set(ids)) == len(ids):
        return
    seen: dict[str, int] = {}
    for i, rid in enumerate(ids):
        if rid in seen:
            ctx.fail("data.ids", f": ids must be unique: {ctx.show(rid)} appears at rows {seen[rid]} and {i}")
        seen[rid] = i


def _input_shape(ctx: ManifestContext, declared: tuple[int, ...] | None, d: int) -> tuple[int, ...]:
    """The per-row shape: the manifest's ``input_shape`` (checked against ``d`` features) or ``(d,)``."""
    if declared is None:
        return (d,)
    if math.prod(declared) != d:
        ctx.fail("input_shape", f": {list(declared)} has {math.prod(declared)} elements "
                                f"but each row has {d} features")
    return declared
