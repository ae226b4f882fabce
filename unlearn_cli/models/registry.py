"""Architecture registry: the ``unlearn.architectures`` entry-point group.

An architecture is a builder ``build(input_shape, num_classes, **kwargs) ->
nn.Module``. The built-ins (linear, mlp, cnn, densenet) register through the
same group as third-party plugins, so a plugin is a first-class citizen. The
checkpoint stores ``{"name": ..., "kwargs": ...}`` where kwargs holds every
constructor argument (input shape and class count included), which is enough to
rebuild the module without the data set.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Callable

from ..errors import BadInput

GROUP = "unlearn.architectures"


@lru_cache(maxsize=1)
def available() -> dict[str, Any]:
    """Name -> entry point, for every registered architecture."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if not found:
        raise BadInput(
            "no architectures are registered: install the package (pip install -e .) "
            "so its entry points exist"
        )
    return dict(sorted(found.items()))


def get_builder(name: str) -> Callable[..., Any]:
    archs = available()
    if name not in archs:
        raise BadInput(f"unknown architecture '{name}'; choose one of: {', '.join(archs)}")
    return archs[name].load()


def build(spec: dict[str, Any]):
    """Rebuild a module from a checkpoint's ``arch`` entry."""
    try:
        name, kwargs = spec["name"], dict(spec["kwargs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"checkpoint 'arch' entry is malformed: {exc!r}") from None
    builder = get_builder(name)
    try:
        return builder(**kwargs)
    except TypeError as exc:
        raise BadInput(f"architecture '{name}' rejects the recorded arguments: {exc}") from None


def make_spec(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> dict:
    """The ``arch`` entry for a new model: builder name plus every argument."""
    return {
        "name": name,
        "kwargs": {"input_shape": list(input_shape), "num_classes": int(num_classes), **kwargs},
    }
