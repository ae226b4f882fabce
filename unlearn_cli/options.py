"""Typed, documented options: the one way methods, attacks, rankers and the
influence engine declare their tunables and turn user text into them.

An options class is a dataclass whose fields each come from :func:`option`:
a default plus ``metadata={"doc": "one line"}`` (and ``choices`` where the
value is one of a few names). Users set them with ``--config FILE.yaml`` and
``--set key=value``; :func:`parse_options` converts each value to the field's
declared type, rejects unknown keys (listing the valid ones), checks each
value against its declared range and then calls the class's own
``validate()`` for checks across fields (eta_min <= eta_max). :func:`describe`
lists the fields for ``unlearn methods NAME`` and help texts.

Ranges. Every int and float field declares its valid range in :func:`option`
with the bounds pydantic users know: ``gt=`` / ``ge=`` (lower bound, open or
closed) and ``lt=`` / ``le=`` (upper bound, open or closed); they are kept
as a :class:`Range` in the field's metadata and shown by ``unlearn methods
NAME`` ("[0, 1)", "> 0", "[1, 100]"). Upper bounds on counts (grid points,
iterations, epochs, models) are sanity bounds: far above any useful value and
low enough that a typo such as ``eta_grid=1e9`` is refused instead of running
for days. A float is never nan, and never +-inf unless its range says
``allow_inf=True``: no built-in field does (every one is a rate, a weight, a
tolerance or a bound, where infinity is a typo, never a request). Values out
of range are :class:`~unlearn_cli.errors.BadInput` (exit 2) naming the
option, the value and the range. :func:`check_ranges` re-checks a built
object; settings classes that commands build from their own flags call it in
``__post_init__`` (``InfluenceSettings``), with their flag names in messages.

Cheap to import (no torch, no numpy): listing plugins stays instant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, Mapping, get_type_hints

from unlearn_cli.errors import BadInput

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("", "none", "null")

#: Sanity bound for counts of records or samples ("0 = all" fields): any larger value is a typo.
MAX_COUNT = 10**9
#: Seeds: numpy and torch both take any integer in [0, 2**63).
MAX_SEED = 2**63 - 1

# Ranges several option classes share, as keyword arguments of option() (``option(0.01, "...", **LR)``);
# the training recipe checks the same ones (training/loop.py).
#: step size of SGD/Adam: > 0; beyond 1e3 a single step overflows float32 weights
LR: dict[str, float] = {"gt": 0, "le": 1e3}
#: passes over the data: a sanity bound, a month of CPU on the smallest data set
EPOCHS: dict[str, int] = {"ge": 1, "le": 100_000}
#: records per mini-batch (larger than the data is the whole data)
BATCH_SIZE: dict[str, int] = {"ge": 1, "le": MAX_COUNT}
#: SGD momentum: 1 or more never forgets a gradient and diverges
MOMENTUM: dict[str, float] = {"ge": 0, "lt": 1}
#: L2 coefficient: >= 0; beyond 1e3 it is all the loss there is
WEIGHT_DECAY: dict[str, float] = {"ge": 0, "le": 1e3}


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of one numeric option: lower and upper bound, each open or closed, or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False

    def __contains__(self, value: Any) -> bool:
        if not isinstance(value, int):  # ints compare exactly, however large
            value = float(value)
            if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
                return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{_num(self.low)}, "
                    f"{_num(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return "any finite number" if not self.allow_inf else "any number"

    def as_option(self) -> dict[str, Any]:
        """The keyword arguments of :func:`option` that declare this range (to re-declare a field)."""
        out: dict[str, Any] = {"allow_inf": self.allow_inf}
        if self.low is not None:
            out["gt" if self.low_open else "ge"] = self.low
        if self.high is not None:
            out["lt" if self.high_open else "le"] = self.high
        return out

    def shown(self) -> str:
        """The range as ``unlearn methods NAME`` lists it: "[0, 1)", "> 0"."""
        text = str(self)
        return text[3:] if text.startswith("in ") else text


def _num(value: float) -> str:
    """1e6 as "1e6", 1e-12 as "1e-12", 0.5 as "0.5", 10**9 as "1e9", 2**63 - 1 as "2^63-1"."""
    if isinstance(value, int):
        digits = str(value)
        if value >= 10**6 and digits.strip("0") == "1":
            return f"1e{len(digits) - 1}"
        if value >= 2**20 and (value + 1) & value == 0:
            return f"2^{(value + 1).bit_length() - 1}-1"
        return digits
    return f"{value:g}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def option(default: Any, doc: str, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None, allow_inf: bool = False, **extra: Any) -> Any:
    """A field with its default, its one-line documentation and, for numbers, its valid range.

    ``gt``/``ge``: the lower bound, excluded or included; ``lt``/``le``: the upper bound; ``choices=``
    for a value that is one of a few names. A range may be one-sided (``ge=0``).
    """
    metadata = {"doc": doc, **extra}
    bounds = range_of(gt=gt, ge=ge, lt=lt, le=le, allow_inf=allow_inf)
    if bounds is not None:
        metadata["range"] = bounds
    return field(default=default, metadata=metadata)


def range_of(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
             le: float | None = None, allow_inf: bool = False) -> Range | None:
    """The :class:`Range` that :func:`option`'s bound keywords declare (None for none)."""
    if gt is not None and ge is not None or lt is not None and le is not None:
        raise TypeError("give one lower bound (gt or ge) and one upper bound (lt or le)")
    if all(b is None for b in (gt, ge, lt, le)) and not allow_inf:
        return None
    return Range(low=gt if gt is not None else ge, high=lt if lt is not None else le,
                 low_open=gt is not None, high_open=lt is not None, allow_inf=allow_inf)


def check_value(label: str, value: Any, bounds: Range | None) -> None:
    """``value`` finite and within ``bounds`` (if any); ``label`` names it ("option 'eta'", "--lr")."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    bounds = bounds or Range()
    if value in bounds:
        return
    wanted = str(bounds)
    if not isinstance(value, int) and not math.isfinite(value) and not wanted.startswith("in "):
        # a one-sided range says nothing about infinity: say finite
        wanted = "a finite number" + ("" if wanted == "any finite number" else f" {wanted}")
    raise BadInput(f"{label} must be {wanted}, got {_clip(value)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def describe(options_cls: type) -> list[dict[str, Any]]:
    """name, type, default, doc, choices and range ("[0, 1)", "> 0"; None when not a number) of every field."""
    hints = get_type_hints(options_cls)
    return [{
        "name": f.name,
        "type": _type_name(hints.get(f.name, type(_default(f)))),
        "default": _default(f),
        "doc": f.metadata.get("doc", ""),
        "choices": list(f.metadata["choices"]) if "choices" in f.metadata else None,
        "range": f.metadata["range"].shown() if "range" in f.metadata else None,
    } for f in dataclasses.fields(options_cls)]


def _to_int(value: Any, text: str | None) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    if text is not None:
        try:
            return int(text)
        except ValueError:
            number = float(text)  # "1e3" is a whole number too; "1.5", "nan" and "inf" are not
            if not number.is_integer():
                raise ValueError from None
            return int(number)
    return int(value)


def _convert(value: Any, tp: Any) -> Any:
    """``value`` (a --set string or a YAML scalar) as type ``tp``; ValueError when it is not one."""
    text = value.strip() if isinstance(value, str) else None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE:
            return True
        if text is not None and text.lower() in _FALSE:
            return False
        raise ValueError
    if tp is int:
        return _to_int(value, text)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if tp is str:
        return str(value)
    return value


def coerce(name: str, value: Any, tp: Any, choices: Any = None, owner: str = "option",
           bounds: Range | None = None) -> Any:
    """Convert one value to its field's declared type (``Optional[X]`` and ``X | None`` accept none/null).

    Numbers must be finite (unless ``bounds.allow_inf``) and within ``bounds``.
    """
    args = getattr(tp, "__args__", ())
    if type(None) in args:  # Optional[X] or X | None (types.UnionType has no __origin__)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        result = _convert(value, tp)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{owner} '{name}' expects {_type_name(tp)}, got '{_clip(value)}'") from None
    if choices is not None and result not in choices:
        raise BadInput(f"{owner} '{name}' must be one of {', '.join(map(str, choices))}, got '{_clip(result)}'")
    check_value(f"{owner} '{name}'", result, bounds)
    return result


def _clip(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_ranges(options: Any, owner: str = "option", flags: Mapping[str, str] | None = None) -> None:
    """Every field of a built options object finite and within its declared range.

    ``flags`` maps a field to the command-line flag it came from ("damping" -> "--damping"), which the
    message then names instead of ``owner 'field'``.
    """
    flags = flags or {}
    for f in dataclasses.fields(options):
        label = flags.get(f.name) or f"{owner} '{f.name}'"
        check_value(label, getattr(options, f.name), f.metadata.get("range"))


def parse_options(options_cls: type, values: Mapping[str, Any], owner: str = "", word: str = "option") -> Any:
    """Build an options object; unknown keys are errors listing the valid ones.

    ``owner`` names who the options belong to in messages ("method 'puma'",
    "attack 'lira'"); ``word`` is what the user calls them ("option",
    "setting"). Each value is converted and range-checked before the object
    is built, then ``validate()`` checks across fields.
    """
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown {word}{'s' if len(unknown) > 1 else ''} {_clip(', '.join(map(str, unknown)), 120)}"
            f"{f' for {owner}' if owner else ''}; valid: {', '.join(fields)}"
        )
    hints = get_type_hints(options_cls)
    prefix = f"{owner} {word}" if word != "option" and owner else word
    kwargs = {k: coerce(k, v, hints[k], fields[k].metadata.get("choices"), prefix, fields[k].metadata.get("range"))
              for k, v in values.items()}
    parsed = options_cls(**kwargs)
    check_ranges(parsed, prefix)
    validate = getattr(parsed, "validate", None)
    if callable(validate):
        validate()
    return parsed


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``--set key=value`` pairs to a dict (later pairs win)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--set expects key=value, got '{_clip(pair)}'")
        out[key.strip()] = value.strip()
    return out


def as_dict(options: Any) -> dict[str, Any]:
    """The options as plain JSON-able values (reports, lineage)."""
    return dataclasses.asdict(options)
