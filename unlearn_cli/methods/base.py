"""The method plugin protocol: everything a newcomer needs to write a method.

A method is a :class:`Method` subclass registered in the ``unlearn.methods``
entry-point group of its package's ``pyproject.toml``; the built-in methods
register through the very same group::

    [project.entry-points."unlearn.methods"]
    mymethod = "my_package.module:MyMethod"

After ``pip install`` it is listed by ``unlearn methods`` and runs with
``unlearn forget ... --method mymethod``. It declares:

* ``name`` and a one-line ``summary`` (``details``: longer text shown by
  ``unlearn methods NAME``, e.g. what to expect on sample-level requests);
* ``Config``: a dataclass whose fields are the method's options, each made by
  :func:`unlearn_cli.options.option` (a default and a one-line doc), with an
  optional ``validate()`` for ranges; users set them with ``--config
  FILE.yaml`` and ``--set key=value``, and :func:`unlearn_cli.options.parse_options`
  converts the values and rejects unknown keys;
* ``requires``: what the checkpoint must carry: ``"plain"`` (any model, the
  default), ``"sisa"`` (trained with ``--sisa-shards``) or ``"update-log"``
  (trained with ``--track-updates``);
* ``needs_recipe``: True if the method retrains from the checkpoint's recorded
  training recipe (retrain, sisa, amnesiac); a checkpoint imported without
  ``--recipe`` is then refused with exit 2 (default False);
* ``forget(request, config) -> Outcome``: the new weights plus metrics.

Method modules import torch inside ``forget`` only, so that listing methods
stays instant. ``methods/_shared.py`` holds the steps the fine-tuning methods
share (load the model, fine-tune with SGD, hand back the edited weights).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

REQUIREMENTS = ("plain", "sisa", "update-log")


@dataclass
class Request:
    """What a method is given for one forget run."""

    checkpoint: Any             # models.checkpoint.Checkpoint (weights + metadata)
    dataset: Any                # data.manifest.Dataset
    forget_rows: Any            # np.ndarray of row indices into dataset (the records to forget)
    retain_rows: Any            # np.ndarray: train rows not forgotten (and not removed earlier)
    device: Any = "cpu"         # torch.device
    seed: int = 0
    progress: Callable[[str, int, int], None] = lambda phase, done, total: None
    warn: Callable[[str], None] = lambda message: None


@dataclass
class Outcome:
    """What a method returns."""

    state: dict[str, Any]                                   # new state_dict (same keys/shapes as the input)
    metrics: dict[str, Any] = field(default_factory=dict)   # method-specific numbers for the report
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (the method's own time)
    meta_updates: dict[str, Any] = field(default_factory=dict)  # merged into the checkpoint metadata
    sidecars: dict[str, Any] = field(default_factory=dict)  # sidecar name -> state dict to write beside the output


class Method(ABC):
    """Base class for methods; subclasses set the class attributes and ``forget``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    details: ClassVar[str] = ""
    requires: ClassVar[str] = "plain"
    needs_recipe: ClassVar[bool] = False
    Config: ClassVar[type] = object

    @abstractmethod
    def forget(self, request: Request, config: Any) -> Outcome:
        """New weights for the checkpoint with the request's records forgotten."""

    def preload(self) -> None:
        """Import the modules ``forget`` needs; ``forget`` times this as start-up, not as its own work."""

    def check(self, request: Request, config: Any, outcome: Outcome) -> str | None:
        """The method's own sanity check on its result: a reason to refuse it, or None."""
        return None
