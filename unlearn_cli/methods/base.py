"""The method plugin protocol: everything a newcomer needs to write a method.

A method is a class registered in the ``unlearn.methods`` entry-point group::

    [project.entry-points."unlearn.methods"]
    mymethod = "my_package.module:MyMethod"

It declares:

* ``name`` and a one-line ``summary`` (``details``: longer text shown by
  ``unlearn methods NAME``, e.g. what to expect on sample-level requests);
* ``Config``: a dataclass whose fields are the method's options, each with a
  default and ``metadata={"doc": "one line"}``; users set them with
  ``--config FILE.yaml`` and ``--set key=value`` and unknown keys are errors;
* ``requires``: what the checkpoint must carry: ``"plain"`` (any model),
  ``"sisa"`` (trained with ``--sisa-shards``) or ``"update-log"`` (trained
  with ``--track-updates``);
* ``forget(request, config) -> Outcome``: the new weights plus metrics.

Method modules import torch inside ``forget`` only, so that listing methods
stays instant. Built-in methods register through the very same group.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, get_type_hints

from unlearn_cli.errors import BadInput

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
    Config: ClassVar[type] = object

    @abstractmethod
    def forget(self, request: Request, config: Any) -> Outcome:
        """New weights for the checkpoint with the request's records forgotten."""

    def preload(self) -> None:
        """Import the modules ``forget`` needs; ``forget`` times this as start-up, not as its own work."""

    def check(self, request: Request, config: Any, outcome: Outcome) -> str | None:
        """The method's own sanity check on its result: a reason to refuse it, or None."""
        return None


# -- typed configs ---------------------------------------------------------

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def options(config_cls: type) -> list[dict[str, Any]]:
    """The documented options of a config dataclass."""
    hints = get_type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        out.append({
            "name": f.name,
            "type": _type_name(hints.get(f.name, type(default))),
            "default": default,
            "doc": f.metadata.get("doc", ""),
            "choices": list(f.metadata["choices"]) if "choices" in f.metadata else None,
        })
    return out


def _coerce(name: str, value: Any, tp: Any, choices: Any) -> Any:
    """Convert a --set string or YAML value to the option's declared type."""
    text = value if isinstance(value, str) else None
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None or (text is not None and text.strip().lower() in ("none", "null", "")):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        if tp is bool:
            if isinstance(value, bool):
                result = value
            elif text is not None and text.strip().lower() in ("1", "true", "yes", "on"):
                result = True
            elif text is not None and text.strip().lower() in ("0", "false", "no", "off"):
                result = False
            else:
                raise ValueError
        elif tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            result = int(value)
        elif tp is float:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
        elif tp is str:
            result = str(value)
        else:
            result = value
    except (TypeError, ValueError):
        raise BadInput(f"option '{name}' expects {_type_name(tp)}, got '{value}'") from None
    if choices is not None and result not in choices:
        raise BadInput(f"option '{name}' must be one of {', '.join(map(str, choices))}, got '{result}'")
    return result


def parse_config(config_cls: type, values: Mapping[str, Any], method: str = "") -> Any:
    """Build a config from YAML/--set values; unknown keys are errors listing the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = get_type_hints(config_cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for method '{method}'; "
            f"valid: {', '.join(fields)}"
        )
    kwargs = {k: _coerce(k, v, hints[k], fields[k].metadata.get("choices")) for k, v in values.items()}
    config = config_cls(**kwargs)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``--set key=value`` pairs to a dict (later pairs win)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--set expects key=value, got '{pair}'")
        out[key.strip()] = value.strip()
    return out


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
