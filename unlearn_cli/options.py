"""Typed, documented options: the one way methods, attacks, rankers and the
influence engine declare their tunables and turn user text into them.

An options class is a dataclass whose fields each come from :func:`option`:
a default plus ``metadata={"doc": "one line"}`` (and ``choices`` where the
value is one of a few names). Users set them with ``--config FILE.yaml`` and
``--set key=value``; :func:`parse_options` converts each value to the field's
declared type, rejects unknown keys (listing the valid ones) and calls the
class's own ``validate()`` for ranges. :func:`describe` lists the fields for
``unlearn methods NAME`` and help texts.

Cheap to import (no torch, no numpy): listing plugins stays instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Mapping, get_type_hints

from unlearn_cli.errors import BadInput

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("", "none", "null")


def option(default: Any, doc: str, **extra: Any) -> Any:
    """A field with its default and its one-line documentation (``choices=`` optional)."""
    return field(default=default, metadata={"doc": doc, **extra})


def positive(name: str, value: float) -> None:
    if not value > 0:
        raise BadInput(f"option '{name}' must be > 0, got {value}")


def non_negative(name: str, value: float) -> None:
    if value < 0:
        raise BadInput(f"option '{name}' must be >= 0, got {value}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def describe(options_cls: type) -> list[dict[str, Any]]:
    """name, type, default, doc and choices of every field."""
    hints = get_type_hints(options_cls)
    return [{
        "name": f.name,
        "type": _type_name(hints.get(f.name, type(_default(f)))),
        "default": _default(f),
        "doc": f.metadata.get("doc", ""),
        "choices": list(f.metadata["choices"]) if "choices" in f.metadata else None,
    } for f in dataclasses.fields(options_cls)]


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
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if tp is str:
        return str(value)
    return value


def coerce(name: str, value: Any, tp: Any, choices: Any = None, owner: str = "option") -> Any:
    """Convert one value to its field's declared type (``Optional[X]`` and ``X | None`` accept none/null)."""
    args = getattr(tp, "__args__", ())
    if type(None) in args:  # Optional[X] or X | None (types.UnionType has no __origin__)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        result = _convert(value, tp)
    except (TypeError, ValueError):
        raise BadInput(f"{owner} '{name}' expects {_type_name(tp)}, got '{value}'") from None
    if choices is not None and result not in choices:
        raise BadInput(f"{owner} '{name}' must be one of {', '.join(map(str, choices))}, got '{result}'")
    return result


def parse_options(options_cls: type, values: Mapping[str, Any], owner: str = "", word: str = "option") -> Any:
    """Build an options object; unknown keys are errors listing the valid ones.

    ``owner`` names who the options belong to in messages ("method 'puma'",
    "attack 'lira'"); ``word`` is what the user calls them ("option",
    "setting").
    """
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown {word}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            f"{f' for {owner}' if owner else ''}; valid: {', '.join(fields)}"
        )
    hints = get_type_hints(options_cls)
    prefix = f"{owner} {word}" if word != "option" and owner else word
    kwargs = {k: coerce(k, v, hints[k], fields[k].metadata.get("choices"), prefix) for k, v in values.items()}
    parsed = options_cls(**kwargs)
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
            raise BadInput(f"--set expects key=value, got '{pair}'")
        out[key.strip()] = value.strip()
    return out


def as_dict(options: Any) -> dict[str, Any]:
    """The options as plain JSON-able values (reports, lineage)."""
    return dataclasses.asdict(options)
