"""Architecture registry: registered names and import paths, their options, and rebuilding.

An architecture is a builder ``build(input_shape, num_classes, **options) ->
nn.Module``. ``--arch`` names it in one of two ways:

* a registered name (``linear``, ``mlp``, ``cnn``, ``densenet``, or a plugin's),
  found through :mod:`unlearn_cli.plugins` (kind ``architectures``, the
  ``unlearn.architectures`` entry-point group); the built-ins register through
  the same group as third-party plugins, so a plugin is a first-class citizen;
* an import path ``package.module:callable`` (uvicorn's convention; the
  callable may be dotted, ``mod:Class.build``), imported from the normal
  ``sys.path`` only: installed packages and the user's ``PYTHONPATH``, never
  the current folder unless ``PYTHONPATH`` names it, never the checkpoint's
  folder nor any file a checkpoint names. Importing runs that module's code.

``--arch-opt key=value`` sets the builder's other parameters, typed by its
signature (:func:`parse_arch_opts`). The checkpoint stores ``{"name": ...,
"kwargs": ...}`` where kwargs holds every constructor argument (input shape,
class count and each option's value, defaults included), which is enough to
rebuild the module without the data set or any option (:func:`build`).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
import typing
from collections import abc
from typing import TYPE_CHECKING, Any, Callable, Iterable

from unlearn_cli import plugins
from unlearn_cli.errors import BadInput
from unlearn_cli.options import coerce

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from unlearn_cli.data.dataset import Dataset

GROUP = plugins.group("architectures")
#: ``package.module:callable``: dotted identifiers on both sides (no file paths, no relative imports).
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
#: The arguments every builder takes from the data set, never from --arch-opt.
DATA_ARGS = ("input_shape", "num_classes")
#: Largest integer an option may hold: the checkpoint metadata's size bound (models/metadata.py).
MAX_INT = 1 << 24
_MISSING = inspect.Parameter.empty
_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}


def available() -> dict[str, EntryPoint]:
    """Name -> entry point, for every registered architecture (``plugins.available``)."""
    return plugins.available("architectures")


def is_import_path(name: str) -> bool:
    """Whether ``name`` is meant as ``package.module:callable`` (it has a colon) rather than a registered name."""
    return ":" in name


def check_name(name: str) -> None:
    """An import path must be ``package.module:callable`` (dotted identifiers): never a file path."""
    if is_import_path(name) and not IMPORT_PATH.fullmatch(name):
        raise BadInput(f"architecture '{_clip(name)}' is not an import path package.module:callable "
                       "(dotted module names on PYTHONPATH, not a file path)")


def get_builder(name: str) -> Callable[..., Any]:
    """The builder ``name`` names: a registered architecture or an import path (see the module docstring).

    An unknown name lists the registered ones; an import path that cannot be
    imported, lacks the attribute or names no callable is a one-line BadInput.
    """
    if is_import_path(name):
        return _import_builder(name)
    found = available()
    if name not in found:
        raise BadInput(f"unknown architecture '{_clip(name)}'; choose one of: {', '.join(found)}, "
                       "or give an import path package.module:callable")
    return found[name].load()


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _search_path() -> list[str]:
    """``sys.path`` without the current folder, unless PYTHONPATH names it (``python -m`` puts it first)."""
    pointed = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    here = os.getcwd()
    return [p for p in sys.path if os.path.abspath(p or ".") != here or os.path.abspath(p or ".") in pointed]


def _import_builder(name: str) -> Callable[..., Any]:
    check_name(name)
    module_name, _, attribute = name.partition(":")
    saved = sys.path[:]
    sys.path[:] = _search_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise BadInput(f"architecture '{name}': no module named '{missing}' "
                       "(install it or add its folder to PYTHONPATH)") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module: any failure is one line
        raise BadInput(f"architecture '{name}': importing '{module_name}' failed: "
                       f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.path[:] = saved
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise BadInput(f"architecture '{name}': module '{module_name}' has no attribute '{attribute}'") from None
    if not callable(target):
        raise BadInput(f"architecture '{name}': '{attribute}' is {type(target).__name__}, not a callable builder")
    return target


def _on_meta_device() -> bool:
    import torch

    return torch.empty(()).device.type == "meta"


def build(spec: dict[str, Any]):
    """Rebuild a module from a checkpoint's ``arch`` entry; any failure of the builder is a one-line BadInput.

    On torch's meta device (the shape probe of ``Checkpoint.build_model``) a
    builder's own errors other than TypeError propagate, so the caller can
    fall back to a real build, which then reports them.
    """
    try:
        name, kwargs = spec["name"], dict(spec["kwargs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"checkpoint 'arch' entry is malformed: {exc!r}") from None
    builder = get_builder(name)
    try:
        module = builder(**kwargs)
    except BadInput:
        raise
    except TypeError as exc:
        raise BadInput(f"architecture '{name}' rejects the recorded arguments: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the builder is plugin or user code
        if _on_meta_device():
            raise
        raise BadInput(f"architecture '{name}' failed to build from its arguments: "
                       f"{type(exc).__name__}: {exc}") from None
    import torch

    if not isinstance(module, torch.nn.Module):
        raise BadInput(f"architecture '{name}' returned {type(module).__name__}, not a torch.nn.Module")
    return module


def make_spec(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> dict:
    """The ``arch`` entry for a new model: builder name plus every argument."""
    return {
        "name": name,
        "kwargs": {"input_shape": list(input_shape), "num_classes": int(num_classes), **kwargs},
    }


def builder_options(name: str, builder: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The builder's options (its parameters but input_shape and num_classes) and whether it takes ``**kwargs``.

    A builder that takes neither input_shape and num_classes nor ``**kwargs`` is a BadInput.
    """
    try:
        try:
            signature = inspect.signature(builder, eval_str=True)
        except Exception:  # noqa: BLE001 - an annotation that does not evaluate: read it as text
            signature = inspect.signature(builder)
    except (TypeError, ValueError):  # no signature (a C callable): anything goes
        return {}, True
    params = signature.parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    missing = [a for a in DATA_ARGS if a not in params]
    if missing and not var_kw:
        raise BadInput(f"architecture '{name}' must take input_shape and num_classes "
                       f"(build(input_shape, num_classes, **options)); it lacks {', '.join(missing)}")
    options = {k: p for k, p in params.items() if k not in DATA_ARGS
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return options, var_kw


def _option_type(param: inspect.Parameter | None) -> Any:
    """The type a value is parsed as: the annotation, else the default's type, else None (guessed)."""
    if param is None:
        return None
    tp = param.annotation
    if isinstance(tp, str):
        tp = _SIMPLE.get(tp.strip(), _MISSING)
    if tp is _MISSING or tp is Any:
        default = param.default
        if default is _MISSING or default is None:
            return None
        if isinstance(default, (list, tuple)):
            return list[type(default[0])] if default and type(default[0]) in _SIMPLE.values() else list
        return type(default) if type(default) in _SIMPLE.values() else None
    return tp


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "") if typing.get_args(tp) else getattr(tp, "__name__", str(tp))


def _guess(text: str) -> Any:
    """An option whose type the builder does not say: int, float, true/false, else the text."""
    for tp in (int, float, bool):
        try:
            return coerce("", text, tp)
        except BadInput:
            continue
    return text


def _parse_value(owner: str, key: str, text: str, tp: Any) -> Any:
    """``text`` as type ``tp``: int/float/bool/str, list[X]/tuple[X, ...]/Sequence[X] (comma-separated), Optional."""
    if tp is None:
        return _guess(text)
    args = typing.get_args(tp)
    if type(None) in args:
        if text.strip().lower() in ("", "none", "null"):
            return None
        rest = [a for a in args if a is not type(None)]
        tp, args = rest[0], typing.get_args(rest[0])
    origin = typing.get_origin(tp) or tp
    if origin is typing.Literal:
        return coerce(key, text, type(args[0]), choices=args, owner=owner)
    if origin in (list, tuple) or (isinstance(origin, type) and origin is not str
                                   and issubclass(origin, abc.Sequence)):
        element = args[0] if args else None
        try:
            return [_parse_value(owner, key, part, element) for part in text.split(",") if part.strip()]
        except BadInput:
            raise BadInput(f"{owner} '{key}' expects {_type_name(tp)} (comma-separated, like 64,32), "
                           f"got '{_clip(text)}'") from None
    if origin in (int, float, bool, str):
        return coerce(key, text, origin, owner=owner)
    return _guess(text)


def _storable(value: Any) -> bool:
    """Whether the checkpoint metadata can hold ``value`` (JSON, finite, integers in [0, MAX_INT])."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return 0 <= value <= MAX_INT
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_storable(v) for v in value)
    return False


def _json(value: Any) -> Any:
    return [_json(v) for v in value] if isinstance(value, (list, tuple)) else value


def parse_arch_opts(name: str, builder: Callable[..., Any], pairs: Iterable[str],
                    given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--arch-opt key=value`` pairs, typed by the builder's signature, plus every default: the kwargs to record.

    ``given`` holds values already typed (``--hidden``); an unknown key lists
    the valid ones; a value of the wrong type names the option, the type and
    the value; a parameter without a default must be given.
    """
    options, var_kw = builder_options(name, builder)
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--arch-opt expects key=value, got '{_clip(pair)}'")
        if key in DATA_ARGS:
            raise BadInput(f"--arch-opt {key} comes from the data set's manifest, not from an option")
        if key not in options and not var_kw:
            valid = ", ".join(options) or "none (it takes only input_shape and num_classes)"
            raise BadInput(f"unknown option '{_clip(key)}' for architecture '{name}'; valid: {valid}")
        values[key] = _parse_value(f"architecture '{name}' option", key, text, _option_type(options.get(key)))
    for key, value in (given or {}).items():
        if key in values:
            raise BadInput(f"--{key} and --arch-opt {key}=... both set '{key}'; give one")
        values[key] = value
    for key, value in values.items():
        if not _storable(value):
            raise BadInput(f"architecture '{name}' option '{key}' = {_clip(str(value))} cannot be recorded: "
                           f"numbers must be finite and integers between 0 and {MAX_INT:,}")
    needed = [k for k, p in options.items() if p.default is _MISSING and k not in values]
    if needed:
        raise BadInput(f"architecture '{name}' needs option{'s' if len(needed) > 1 else ''} {', '.join(needed)}: "
                       f"give --arch-opt {needed[0]}=VALUE")
    defaults = {k: _json(p.default) for k, p in options.items()
                if k not in values and p.default is not _MISSING and _storable(p.default)}
    return {**defaults, **{k: _json(v) for k, v in values.items()}}


def arch_spec_for(dataset: Dataset, arch: str, hidden: list[int] | None, activation: str | None,
                  *, options: Iterable[str] = ()) -> dict[str, Any]:
    """The ``arch`` entry for a new model of ``dataset``: ``train`` and ``import`` call this one function.

    ``arch`` is a registered name or an import path; ``options`` the
    ``--arch-opt key=value`` list; ``hidden``/``activation`` are ``--hidden``
    and ``--activation``, for ``mlp`` only (``hidden=``/``activation=`` options).
    """
    builder = get_builder(arch)
    given: dict[str, Any] = {}
    if arch == "mlp":
        given.update({k: v for k, v in (("hidden", hidden), ("activation", activation)) if v is not None})
    elif hidden is not None or activation is not None:
        option = "--hidden" if hidden is not None else "--activation"
        raise BadInput(f"{option} applies to --arch mlp only, not '{arch}' (set other architectures' options "
                       "with --arch-opt key=value)")
    kwargs = parse_arch_opts(arch, builder, list(options or ()), given)
    if arch in ("cnn", "densenet", "resnet") and len(dataset.input_shape) != 3:
        raise BadInput(
            f"--arch {arch} needs image data with input_shape [channels, height, width]; "
            f"{dataset.manifest_path.name} has input shape {list(dataset.input_shape)}"
        )
    return make_spec(arch, dataset.input_shape, dataset.num_classes, **kwargs)
