"""Architecture registry: the ``unlearn.architectures`` entry-point group.

An architecture is a builder ``build(input_shape, num_classes, **kwargs) ->
nn.Module``, found through :mod:`unlearn_cli.plugins` (kind ``architectures``).
The built-ins (linear, mlp, cnn, densenet) register through the same group as
third-party plugins, so a plugin is a first-class citizen. The
checkpoint stores ``{"name": ..., "kwargs": ...}`` where kwargs holds every
constructor argument (input shape and class count included), which is enough to
rebuild the module without the data set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from unlearn_cli import plugins
from unlearn_cli.errors import BadInput

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from unlearn_cli.data.dataset import Dataset

GROUP = plugins.group("architectures")


def available() -> dict[str, EntryPoint]:
    """Name -> entry point, for every registered architecture (``plugins.available``)."""
    return plugins.available("architectures")


def get_builder(name: str) -> Callable[..., Any]:
    """The builder registered as ``name``; an unknown name is a BadInput listing the known ones."""
    return plugins.load("architectures", name)


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


def arch_spec_for(dataset: Dataset, arch: str, hidden: list[int] | None, activation: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if arch == "mlp":
        kwargs["hidden"] = list(hidden) if hidden is not None else [64, 32]
        kwargs["activation"] = activation or "relu"
    elif hidden is not None or activation is not None:
        option = "--hidden" if hidden is not None else "--activation"
        raise BadInput(f"{option} applies to --arch mlp only, not '{arch}'")
    if arch in ("cnn", "densenet") and len(dataset.input_shape) != 3:
        raise BadInput(
            f"--arch {arch} needs image data with input_shape [channels, height, width]; "
            f"{dataset.manifest_path.name} has input shape {list(dataset.input_shape)}"
        )
    return make_spec(arch, dataset.input_shape, dataset.num_classes, **kwargs)
