"""Reading a manifest's ``.safetensors`` or ``.npz`` data file.

``data.features``, ``data.labels``, ``data.ids`` and mask splits each name an
array in the file. Features of any shape are flattened to ``(N, D)`` float32;
labels must be whole numbers; IDs are integers (written in decimal) or strings
(stripped); masks are bool or 0/1 integers. ``.npz`` files are opened with
``allow_pickle=False``: nothing in a data file can execute code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unlearn_cli.data.schema import Columns, ManifestContext, finite_features
from unlearn_cli.ops.inputs import brief


class _ArrayFile:
    """The arrays of one file, looked up by the manifest key that names them."""

    def __init__(self, ctx: ManifestContext, data_path: Path, suffix: str) -> None:
        self.ctx, self.file = ctx, data_path.name
        try:
            if suffix == ".safetensors":
                from safetensors.numpy import load_file
                self.arrays: Mapping[str, Any] = load_file(str(data_path))
            else:
                self.arrays = np.load(data_path, allow_pickle=False)
        # Corrupt files surface as many exception types (safetensors' own error,
        # zipfile.BadZipFile, ValueError, OSError); all mean "unreadable".
        except Exception as exc:  # noqa: BLE001
            ctx.fail("data.path", f": cannot read data file {data_path.name}: {brief(exc)}")
        self.available = sorted(self.arrays.keys())

    def get(self, key: str, array_name: Any) -> np.ndarray:
        if not isinstance(array_name, str) or not array_name:
            self.ctx.fail(key, f"must be the name of an array in {self.file}, got {self.ctx.show(array_name)}")
        if array_name not in self.available:
            self.ctx.fail(key, f"names array {self.ctx.show(array_name)} which is not in {self.file} "
                               f"(available: {self.ctx.names(self.available)})")
        try:
            return np.asarray(self.arrays[array_name])
        except Exception as exc:  # noqa: BLE001  (e.g. object arrays refused without pickle)
            self.ctx.fail(key, f": cannot read array {self.ctx.show(array_name)} from {self.file}: {brief(exc)}")

    def vector(self, key: str, array_name: str, n: int) -> np.ndarray:
        """A per-row array: shape (n,) to match the features."""
        arr = self.get(key, array_name)
        if arr.shape != (n,):
            self.ctx.fail(key, f": array {self.ctx.show(array_name)} must have shape ({n},) to match the features, "
                               f"got {arr.shape}")
        return arr


def read_arrays(ctx: ManifestContext, data: Mapping, data_path: Path, suffix: str,
                mask_names: dict[str, str]) -> Columns:
    """Read features, labels, ids and masks from a .safetensors or .npz file."""
    arrays = _ArrayFile(ctx, data_path, suffix)
    if data.get("categorical"):
        ctx.fail("data.categorical", f"is only supported for .csv data, not {suffix}")
    if data.get("features") is None:
        ctx.fail("data.features", f"is required for {suffix} data (the feature array's name)")
    if data.get("labels") is None:
        ctx.fail("data.labels", "is required (the label array's name)")
    if data.get("features") == data.get("labels"):
        ctx.fail("data.features", "must not be the same array as data.labels")

    x = _features(ctx, arrays, data["features"])
    n = x.shape[0]
    y = _int_labels(ctx, arrays.vector("data.labels", data["labels"], n))
    ids = [str(i) for i in range(n)] if data.get("ids") is None else _ids(ctx, arrays, data["ids"], n)
    masks = {which: _mask(ctx, arrays, which, array_name, n) for which, array_name in mask_names.items()}
    names = [f"f{i}" for i in range(x.shape[1])]
    return x, y, ids, masks, names


def _features(ctx: ManifestContext, arrays: _ArrayFile, array_name: Any) -> np.ndarray:
    feats = arrays.get("data.features", array_name)
    if feats.dtype.kind not in "biuf" or feats.ndim == 0:
        ctx.fail("data.features", f": array {ctx.show(array_name)} must be a numeric array with a "
                                  f"row axis, got dtype {feats.dtype} shape {feats.shape}")
    x = feats.reshape(feats.shape[0], -1).astype(np.float32)
    if x.shape[1] == 0:
        ctx.fail("data.features", f": array {ctx.show(array_name)} has no feature columns")
    return finite_features(ctx, "data.features", x)


def _int_labels(ctx: ManifestContext, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        # Float labels are accepted only when every value is a whole number.
        finite = np.isfinite(arr)
        whole = finite & (arr == np.round(np.where(finite, arr, 0)))
        if not whole.all():
            r = int(np.flatnonzero(~whole)[0])
            ctx.fail("data.labels", f": labels must be integers; row {r} is {ctx.show(float(arr[r]))}")
        return arr.astype(np.int64)
    ctx.fail("data.labels", f": labels must be integers, got dtype {arr.dtype}")


def _ids(ctx: ManifestContext, arrays: _ArrayFile, array_name: str, n: int) -> list[str]:
    iarr = arrays.vector("data.ids", array_name, n)
    if iarr.dtype.kind in "iu":
        ids = [str(int(v)) for v in iarr]
    elif iarr.dtype.kind == "U":
        ids = [str(v).strip() for v in iarr]
    elif iarr.dtype.kind == "S":
        ids = [bytes(v).decode("utf-8", "replace").strip() for v in iarr]
    else:
        ctx.fail("data.ids", f": array {ctx.show(array_name)} must hold integers or strings, "
                             f"got dtype {iarr.dtype}")
    if any(not s for s in ids):
        ctx.fail("data.ids", f": array {ctx.show(array_name)} contains an empty id "
                             f"(row {next(i for i, s in enumerate(ids) if not s)})")
    return ids


def _mask(ctx: ManifestContext, arrays: _ArrayFile, which: str, array_name: str, n: int) -> np.ndarray:
    key = f"splits.{which}"
    arr = arrays.vector(key, array_name, n)
    if arr.dtype == np.bool_:
        return arr.astype(bool)
    # 0/1 integer masks are common from tools without a bool dtype.
    if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    ctx.fail(key, f": array {ctx.show(array_name)} must be a bool (or 0/1) mask, "
                  f"got dtype {arr.dtype}")
