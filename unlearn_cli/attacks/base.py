"""The attack plugin protocol: what every membership attack is given, what it
returns, and how that becomes the report.

An attack is an :class:`Attack` subclass registered in the ``unlearn.attacks``
entry-point group of its package's ``pyproject.toml``; the built-in attacks
register through the very same group::

    [project.entry-points."unlearn.attacks"]
    myattack = "my_package.module:MyAttack"

After ``pip install`` it runs with ``unlearn attack CKPT --ids FILE --attack
myattack`` and is listed by ``unlearn methods``. It declares ``name``,
``summary``, ``Settings`` (a dataclass of :func:`unlearn_cli.options.option`
fields with a ``validate()``; ``--set key=value`` fills it, see
``attacks/settings.py``; it should extend ``CommonSettings`` for the retain
sample) and two steps:

* ``__init__(env, settings)`` (the base keeps both): expensive preparation
  (shadow or reference models) happens lazily on the first ``evaluate`` and is
  shared by every model attacked in the run, so the target and ``--reference``
  face the very same attacker;
* ``evaluate(checkpoint, predictor) -> Scored``: per-record scores (higher =
  more likely a training member) and member/non-member decisions for the
  forget, retain and test rows (:meth:`Attack.by_split` runs a per-rows step
  over the three).

:func:`summarize` turns a ``Scored`` into the report's shape (DESIGN.md):
``forget``/``retain``/``test`` -> ``member_rate`` (plus ``n``, ``mean_score``,
and for forget and retain their separation from the test rows), and at the top
the forget-vs-test ``auc``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr`` and
``balanced_accuracy``. The forget set is what a deletion request asks about;
the retain row shows what the attack can do on records that are still members.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from unlearn_cli.attacks.metrics import member_rate, separation
from unlearn_cli.attacks.shadow import ModelCache
from unlearn_cli.ops.digests import derive_seed

SPLITS = ("forget", "retain", "test")
TOP_KEYS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy")


@dataclass
class Splits:
    """Row indices into the data set."""

    forget: np.ndarray      # the requested records (train split)
    retain: np.ndarray      # a sample of ``remaining``: the retain row of the report
    test: np.ndarray        # the test split: the non-members
    remaining: np.ndarray   # every train row not requested: the model's training set after removal

    @classmethod
    def make(cls, dataset: Any, forget_rows: np.ndarray, retain_sample: int, seed: int) -> "Splits":
        train = dataset.train_indices()
        forget = np.unique(np.asarray(forget_rows, dtype=np.int64))
        remaining = np.setdiff1d(train, forget)
        retain = remaining
        if 0 < retain_sample < len(remaining):
            rng = np.random.default_rng(derive_seed(seed, "retain-sample", 0))
            retain = np.sort(rng.choice(remaining, size=retain_sample, replace=False))
        return cls(forget, retain, dataset.test_indices(), remaining)

    def rows(self, split: str) -> np.ndarray:
        return getattr(self, split)


@dataclass
class Env:
    """Everything an attack may use, other than the model under attack."""

    dataset: Any                  # data.manifest.Dataset
    checkpoint: Any               # the target Checkpoint: its arch and recipe shape shadow models
    splits: Splits
    cache: ModelCache
    device: Any = "cpu"
    seed: int = 0
    warn: Callable[[str], None] = lambda message: None
    method: Any = None            # a method object replacing the registry's (forget-quality; tests, embedders)


@dataclass
class Scored:
    """One attacked model's per-record scores and decisions, by split."""

    scores: dict[str, np.ndarray | None]
    decisions: dict[str, np.ndarray | None]
    extra: dict[str, Any] = field(default_factory=dict)              # attack-wide numbers for the report
    split_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split


class Attack(ABC):
    """Base class for attacks; subclasses set the class attributes and ``evaluate``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Settings: ClassVar[type] = object
    #: True if the attack trains shadow/reference models with the checkpoint's recorded recipe:
    #: a checkpoint imported without ``--recipe`` is then refused (exit 2).
    needs_recipe: ClassVar[bool] = False
    #: False if ``evaluate`` cannot run on the original (pre-removal) model, so no power is measured on it
    #: (forget-quality scores a method's lineage step, which an original does not have).
    attacks_original: ClassVar[bool] = True

    def __init__(self, env: Env, settings: Any):
        self.env, self.settings = env, settings

    @abstractmethod
    def evaluate(self, checkpoint: Any, predictor: Any) -> Scored:
        """Scores and decisions for the forget, retain and test rows of the model ``predictor``."""

    def by_split(self, score_rows: Callable[[np.ndarray], tuple[Any, Any]]) -> tuple[dict, dict]:
        """(scores, decisions) by split, from ``score_rows(rows) -> (scores, decisions)``, in SPLITS order."""
        scores, decisions = {}, {}
        for split in SPLITS:
            scores[split], decisions[split] = score_rows(self.env.splits.rows(split))
        return scores, decisions


def summarize(scored: Scored, splits: Splits) -> dict[str, Any]:
    """The report entry of one attacked model (see the module docstring)."""
    out: dict[str, Any] = {}
    test_s, test_d = scored.scores.get("test"), scored.decisions.get("test")
    for split in SPLITS:
        s, d = scored.scores.get(split), scored.decisions.get(split)
        entry: dict[str, Any] = {"n": int(len(splits.rows(split)))}
        entry["member_rate"] = member_rate(d) if d is not None else None
        entry["mean_score"] = float(np.mean(s)) if s is not None and len(s) else None
        if split != "test":
            if s is not None and test_s is not None and d is not None and test_d is not None:
                entry.update(separation(s, test_s, d, test_d))
            else:
                entry.update({k: None for k in TOP_KEYS})
        entry.update(scored.split_extra.get(split, {}))
        out[split] = entry
    for key in TOP_KEYS:
        out[key] = out["forget"].get(key)
    out.update(scored.extra)
    return out
