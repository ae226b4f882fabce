"""A method's options for one run (--config FILE.yaml, then --set key=value) and its checkpoint requirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.inputs import IDS_LIMIT, check_regular, show_path
from unlearn_cli.ops.yaml_input import load_yaml
from unlearn_cli.options import parse_sets

HOW_TO_TRAIN = {
    "sisa": "train one with: unlearn train MANIFEST --sisa-shards 5 --sisa-slices 4 --out CKPT",
    "update-log": "train one with: unlearn train MANIFEST --track-updates --out CKPT",
}


def load_config_values(config_file: Path | None, sets: list[str]) -> dict[str, Any]:
    """Method options from --config FILE.yaml then --set key=value (later wins)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        # A regular file of at most 1 MiB, YAML aliases refused, errors never quoting it (ops.yaml_input).
        loaded = load_yaml(config_file, "config file")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise BadInput(f"{show_path(config_file)}: config must be a mapping of option: value")
        bad_key = next((k for k in loaded if not isinstance(k, str)), None)
        if bad_key is not None:
            raise BadInput(f"{show_path(config_file)}: config keys must be option names (strings), "
                           f"not {type(bad_key).__name__}")
        values.update(loaded)
    values.update(parse_sets(sets))
    return values


def check_requirement(method: Any, ckpt: Any) -> None:
    """Refuse a checkpoint the method cannot work on (SISA ensemble, update log), saying how to train one."""
    need = method.requires
    if need == "plain":
        _check_recipe(method, ckpt)
        return
    if need == "sisa" and ckpt.kind != "sisa":
        raise BadInput(f"method '{method.name}' needs a SISA checkpoint; {ckpt.path.name} is '{ckpt.kind}'; "
                       f"{HOW_TO_TRAIN['sisa']}")
    if need == "update-log" and not ckpt.meta.get("update_log"):
        raise BadInput(f"method '{method.name}' needs a checkpoint trained with --track-updates; "
                       f"{ckpt.path.name} has no update log; {HOW_TO_TRAIN['update-log']}")
    _check_recipe(method, ckpt)


def _check_recipe(method: Any, ckpt: Any) -> None:
    """A method that retrains (``needs_recipe``) refuses a checkpoint imported without a training recipe."""
    if getattr(method, "needs_recipe", False):
        from unlearn_cli.training.importing import require_recipe

        require_recipe(ckpt, f"method '{method.name}' must retrain it")


def precheck_inputs(config_file: Path | None, requests: list[str]) -> None:
    """Refuse a bad --config or request file before the slow imports (torch: seconds).

    Only what is cheap and final: each file must be a regular file within its
    limit (no FIFO or device, no loop), and the config must parse. The files
    are read again, in full, when the run uses them.
    """
    for request in requests:
        if request != "-":
            check_regular(request, "request file", IDS_LIMIT)
    if config_file is not None:
        load_config_values(config_file, [])
