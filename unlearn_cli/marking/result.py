"""What a marking is, and the checks every strategy shares.

A :class:`Marking` holds the rows a strategy chose, their IDs and the
parameters that reproduce the choice; :func:`marked` builds one and guards the
contract that only train-split records are ever marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unlearn_cli.data.dataset import Dataset
from unlearn_cli.errors import BadInput
from unlearn_cli.options import check_value, range_of

#: a share of the train split: more than none, at most all
FRACTION = range_of(gt=0, le=1)
#: a number of records: at least one
COUNT = range_of(ge=1)


@dataclass
class Marking:
    """The outcome of one marking: the rows, their IDs and how they were chosen."""

    strategy: str
    rows: np.ndarray                  # row indices into the data set, ascending; all train rows
    ids: list[str]                    # the IDs of ``rows``, in the same order
    params: dict[str, Any]            # the parameters that reproduce this marking
    details: dict[str, Any] = field(default_factory=dict)  # what the strategy saw (cluster sizes, batches)

    def header(self, dataset: Dataset) -> str:
        """The ``#`` comment block of the ids file: strategy, parameters, source."""
        params = " ".join(f"{k}={v}" for k, v in self.params.items() if v is not None)
        return (
            f"unlearn mark --strategy {self.strategy} {params}\n"
            f"data set {dataset.name} (data sha256 {dataset.data_sha256[:16]}): "
            f"{len(self.ids)} of {int(dataset.train.sum())} train records"
        )

    def metrics(self, dataset: Dataset) -> dict[str, Any]:
        """The report's numbers: how many were marked, of how many, per class, and the details."""
        n_train = int(dataset.train.sum())
        per_class = {str(c): int(n) for c, n in
                     enumerate(np.bincount(dataset.y[self.rows], minlength=dataset.num_classes))}
        return {
            "marked": len(self.ids),
            "n_train": n_train,
            "fraction_of_train": len(self.ids) / n_train,
            "per_class": per_class,
            "details": self.details,
        }


def marked(dataset: Dataset, strategy: str, rows: np.ndarray, params: dict[str, Any],
           details: dict[str, Any]) -> Marking:
    """The Marking of ``rows`` (deduplicated, ascending); no rows at all is an error."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        raise BadInput(f"--strategy {strategy} marked no records; check --label / --fraction")
    # Every strategy draws from train rows; this guards the contract itself.
    assert bool(dataset.train[rows].all()), "marking picked a non-train row"
    return Marking(strategy, rows, [dataset.ids[i] for i in rows], params, details)


def check_label(dataset: Dataset, label: int | None, required: bool, strategy: str) -> None:
    if label is None:
        if required:
            raise BadInput(f"--strategy {strategy} needs --label L (a class 0..{dataset.num_classes - 1})")
        return
    if not 0 <= label < dataset.num_classes:
        raise BadInput(f"--label must be a class 0..{dataset.num_classes - 1} of {dataset.name}, got {label}")


def train_rows_of(dataset: Dataset, label: int | None) -> np.ndarray:
    rows = dataset.train_indices()
    return rows if label is None else rows[dataset.y[rows] == label]


def count_for(n: int, strategy: str, *, fraction: float | None = None, count: int | None = None) -> int:
    """How many of ``n`` records to mark: ``--count N`` as given, or ``--fraction F`` of ``n``; exactly one."""
    if fraction is not None and count is not None:
        raise BadInput("give --fraction F or --count N, not both")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int):
            raise BadInput(f"--count must be a whole number >= 1, got {str(count)[:40]!r}")
        check_value("--count", count, COUNT)
        if count > n:
            raise BadInput(f"--count {count} is more than the {n} train records --strategy {strategy} draws from")
        return count
    if fraction is None:
        raise BadInput(f"--strategy {strategy} needs --fraction F (0 < F <= 1) or --count N")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise BadInput(f"--fraction must be a number in (0, 1], got {str(fraction)[:40]!r}")
    check_value("--fraction", fraction, FRACTION)  # nan and inf included
    # At least one record: a fraction that rounds to nothing is still a request.
    return max(1, int(round(fraction * n)))


def amount_params(fraction: float | None, count: int | None) -> dict[str, Any]:
    """How the amount was asked for, as the marking's parameters record it (one of the two)."""
    return {"count": count} if count is not None else {"fraction": fraction}
