"""A method's options for one run (--config FILE.yaml, then --set key=value) and its checkpoint requirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearn_cli.errors import BadInput
from unlearn_cli.options import parse_sets

HOW_TO_TRAIN = {
    "sisa": "train one with: unlearn train MANIFEST --sisa-shards 5 --sisa-slices 4 --out CKPT",
    "update-log": "train one with: unlearn train MANIFEST --track-updates --out CKPT",
}


def load_config_values(config_file: Path | None, sets: list[str]) -> dict[str, Any]:
    """Method options from --config FILE.yaml then --set key=value (later wins)."""
    import yaml

    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInput(f"{config_file}: config file not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise BadInput(f"{config_file}: cannot read config ({str(exc).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise BadInput(f"{config_file}: config must be a mapping of option: value")
        values.update(loaded)
    values.update(parse_sets(sets))
    return values


def check_requirement(method: Any, ckpt: Any) -> None:
    """Refuse a checkpoint the method cannot work on (SISA ensemble, update log), saying how to train one."""
    need = method.requires
    if need == "plain":
        return
    if need == "sisa" and ckpt.kind != "sisa":
        raise BadInput(f"method '{method.name}' needs a SISA checkpoint; {ckpt.path.name} is '{ckpt.kind}'; "
                       f"{HOW_TO_TRAIN['sisa']}")
    if need == "update-log" and not ckpt.meta.get("update_log"):
        raise BadInput(f"method '{method.name}' needs a checkpoint trained with --track-updates; "
                       f"{ckpt.path.name} has no update log; {HOW_TO_TRAIN['update-log']}")
