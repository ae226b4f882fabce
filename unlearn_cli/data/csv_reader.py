"""Reading a manifest's ``.csv`` data file (a header row, then one row per record).

Numeric feature columns become float32 features; columns listed in
``data.categorical`` are one-hot encoded as ``col=value`` (distinct values
sorted as strings). Without ``data.features`` every column except the labels,
the ids and split-mask columns is a feature, in file order. Cells are stripped;
labels may be written ``1`` or ``1.0``; masks are true/false/1/0.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unlearn_cli.data.schema import Columns, ManifestContext, finite_features
from unlearn_cli.ops.inputs import brief

_CSV_TRUE = frozenset({"true", "1"})
_CSV_FALSE = frozenset({"false", "0"})


class _Table:
    """The header and body rows of one csv file, columns looked up by manifest key."""

    def __init__(self, ctx: ManifestContext, data_path: Path) -> None:
        self.ctx, self.file = ctx, data_path.name
        try:
            with open(data_path, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            ctx.fail("data.path", f": cannot read data file {data_path.name}: {brief(exc)}")
        # Trailing blank lines are common in hand-edited files; they are not rows.
        while rows and not any(cell.strip() for cell in rows[-1]):
            rows.pop()
        if not rows:
            ctx.fail("data.path", f": data file {data_path.name} is empty (a header row is required)")
        self.header = [h.strip() for h in rows[0]]
        self.body = rows[1:]
        if len(set(self.header)) != len(self.header):
            dup = next(h for i, h in enumerate(self.header) if h in self.header[:i])
            ctx.fail("data.path", f": data file {data_path.name} has a duplicate column {ctx.show(dup)}")
        self.col_of = {h: i for i, h in enumerate(self.header)}
        for r, row in enumerate(self.body):
            if len(row) != len(self.header):
                ctx.fail("data.path", f": data file {data_path.name} line {r + 2} has {len(row)} "
                                      f"fields, the header has {len(self.header)}")
        self.n = len(self.body)

    def column(self, key: str, col: Any) -> list[str]:
        if not isinstance(col, str) or not col:
            self.ctx.fail(key, f"must be a column name of {self.file}, got {self.ctx.show(col)}")
        if col not in self.col_of:
            self.ctx.fail(key, f"names column {self.ctx.show(col)} which is not in {self.file} "
                               f"(columns: {self.ctx.names(self.header)})")
        j = self.col_of[col]
        return [row[j].strip() for row in self.body]


def read_csv(ctx: ManifestContext, data: Mapping, data_path: Path,
             mask_names: dict[str, str]) -> Columns:
    """Read a csv with a header row; numeric columns as float, categorical one-hot."""
    table = _Table(ctx, data_path)
    labels_col = data.get("labels")
    if labels_col is None:
        ctx.fail("data.labels", "is required (the label column's name)")
    ids_col = data.get("ids")
    categorical = _categorical(ctx, table, data.get("categorical") or [])
    feat_cols = _feature_columns(ctx, table, data.get("features"), labels_col, ids_col, mask_names)
    missing_cat = [c for c in categorical if c not in feat_cols]
    if missing_cat:
        ctx.fail("data.categorical", f": column {ctx.show(missing_cat[0])} is not one of the feature columns")
    x, names = _encode_features(ctx, table, feat_cols, categorical)

    y = np.empty(table.n, dtype=np.int64)
    for r, cell in enumerate(table.column("data.labels", labels_col)):
        y[r] = _parse_label(ctx, labels_col, r, cell)
    ids = [str(i) for i in range(table.n)] if ids_col is None else _ids(ctx, table, ids_col)
    masks = {which: _mask(ctx, table, which, col) for which, col in mask_names.items()}
    return x, y, ids, masks, names


def _categorical(ctx: ManifestContext, table: _Table, categorical: Any) -> list[str]:
    if isinstance(categorical, str):
        categorical = [categorical]
    if not isinstance(categorical, list) or not all(isinstance(c, str) for c in categorical):
        ctx.fail("data.categorical", f"must be a list of column names, got {ctx.show(categorical)}")
    for c in categorical:
        table.column("data.categorical", c)
    return categorical


def _feature_columns(ctx: ManifestContext, table: _Table, feats_spec: Any, labels_col: str,
                     ids_col: str | None, mask_names: dict[str, str]) -> list[str]:
    """``data.features`` as a checked list, or every column not otherwise reserved."""
    if feats_spec is None:
        reserved = {labels_col, ids_col, *mask_names.values()}
        feat_cols = [h for h in table.header if h not in reserved]
        if not feat_cols:
            ctx.fail("data.features", f": no feature columns left in {table.file} after "
                                      f"removing labels, ids and split columns")
        return feat_cols
    feat_cols = [feats_spec] if isinstance(feats_spec, str) else feats_spec
    if (not isinstance(feat_cols, list) or not feat_cols
            or not all(isinstance(c, str) for c in feat_cols)):
        ctx.fail("data.features", f"must be a non-empty list of column names, got {ctx.show(feats_spec)}")
    dups = [c for i, c in enumerate(feat_cols) if c in feat_cols[:i]]
    if dups:
        ctx.fail("data.features", f"lists column {ctx.show(dups[0])} twice")
    if labels_col in feat_cols:
        ctx.fail("data.features", f"must not include the label column {ctx.show(labels_col)}")
    return feat_cols


def _encode_features(ctx: ManifestContext, table: _Table, feat_cols: list[str],
                     categorical: list[str]) -> tuple[np.ndarray, list[str]]:
    """(N, D) float32 features and their names: numbers as they are, categories one-hot."""
    n = table.n
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in feat_cols:
        cells = table.column("data.features", col)
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
                    ctx.fail("data.features", f": column {ctx.show(col)} row {r} (line {r + 2}) is not a "
                                              f"number: {ctx.show(cell)} (list it in data.categorical?)")
            blocks.append(vals[:, None])
            names.append(col)
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)
    return finite_features(ctx, "data.features", x), names


def _parse_label(ctx: ManifestContext, col: str, r: int, cell: str) -> int:
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
    ctx.fail("data.labels", f": column {ctx.show(col)} row {r} (line {r + 2}) is not an integer "
                            f"label: {ctx.show(cell)}")


def _ids(ctx: ManifestContext, table: _Table, ids_col: str) -> list[str]:
    ids = table.column("data.ids", ids_col)
    for r, rid in enumerate(ids):
        if not rid:
            ctx.fail("data.ids", f": column {ctx.show(ids_col)} row {r} (line {r + 2}) is empty")
    return ids


def _mask(ctx: ManifestContext, table: _Table, which: str, col: str) -> np.ndarray:
    key = f"splits.{which}"
    mask = np.empty(table.n, dtype=bool)
    for r, cell in enumerate(table.column(key, col)):
        low = cell.lower()
        if low in _CSV_TRUE:
            mask[r] = True
        elif low in _CSV_FALSE:
            mask[r] = False
        else:
            ctx.fail(key, f": column {ctx.show(col)} row {r} (line {r + 2}) must be true/false/1/0, "
                          f"got {ctx.show(cell)}")
    return mask
