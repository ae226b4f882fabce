"""A loaded data set: normalised features, labels, record IDs and split masks.

:func:`unlearn_cli.data.manifest.load_manifest` builds one from a manifest;
everything downstream (training, marking, forgetting, attacks) reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unlearn_cli.data.ids import id_set_digest
from unlearn_cli.errors import BadInput, one_line


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
    validation: np.ndarray  # held-out rows for fitting C or a temperature (manifest splits.validation)
    input_shape: tuple[int, ...]
    normalize: str
    feature_names: list[str]
    source: str | None
    license: str | None
    raw: dict
    # Built on first index_of() call: most commands never look IDs up.
    _index: dict[str, int] | None = field(default=None, init=False, repr=False)
    # train_id_digest() memo, keyed by a hash of the train mask (the mask may be replaced or edited).
    _train_digest: tuple[bytes, str] | None = field(default=None, init=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.ids)

    def train_indices(self) -> np.ndarray:
        return np.flatnonzero(self.train).astype(np.int64)

    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.test).astype(np.int64)

    def validation_indices(self) -> np.ndarray:
        """Rows of the manifest's ``splits.validation`` (never trained on); empty when it has none."""
        return np.flatnonzero(self.validation).astype(np.int64)

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
        """sha256 of the sorted train IDs joined by newlines: identifies the train set.

        IDs are unique within a data set (the manifest loader checks), so this is
        :func:`~unlearn_cli.data.ids.id_set_digest` of the train IDs.
        """
        mask_key = hashlib.blake2b(np.ascontiguousarray(self.train, dtype=bool).tobytes(), digest_size=16).digest()
        if self._train_digest is None or self._train_digest[0] != mask_key:
            self._train_digest = (mask_key, id_set_digest(self.train_ids))
        return self._train_digest[1]

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
        return dataclasses.replace(self, train=self.train & keep_mask, test=self.test.copy(),
                                   validation=self.validation.copy())
