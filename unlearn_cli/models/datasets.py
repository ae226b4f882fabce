"""Which data set a checkpoint belongs to: open both, checked against the recorded digest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearn_cli.data.dataset import Dataset
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.errors import BadInput
from unlearn_cli.models.checkpoint import Checkpoint, load_checkpoint, relative_manifest
from unlearn_cli.ops.inputs import show_path


def dataset_for(ckpt: Checkpoint, data: Path | None) -> Dataset:
    """The checkpoint's data set (``--data`` or the recorded manifest), checked against its digest."""
    manifest = Path(data) if data is not None else ckpt.manifest_path()
    if manifest is None:
        raise BadInput(f"{ckpt.path}: no manifest recorded in the checkpoint; pass --data MANIFEST")
    if data is None and not manifest.exists():
        raise BadInput(f"{show_path(ckpt.path)}: recorded manifest {show_path(manifest)} does not exist; "
                       "pass --data MANIFEST")
    # A recorded manifest path comes from the checkpoint, which may name any file:
    # its contents must not reach an error message (issue #15).
    dataset = load_manifest(manifest, quote=data is not None)
    recorded = ckpt.dataset.get("train_ids_digest")
    if recorded and recorded != dataset.train_id_digest():
        raise BadInput(
            f"{manifest}: its train split does not match the one {ckpt.path.name} was trained on "
            f"(train-ID digest {dataset.train_id_digest()[:12]} != recorded {recorded[:12]})"
        )
    return dataset


def open_checkpoint(path: Path, data: Path | None = None) -> tuple[Checkpoint, Dataset]:
    ckpt = load_checkpoint(path)
    return ckpt, dataset_for(ckpt, data)


def dataset_meta(dataset: Dataset, checkpoint_path: Path) -> dict[str, Any]:
    return {
        "manifest": relative_manifest(dataset.manifest_path, checkpoint_path),
        "name": dataset.name,
        "data_sha256": dataset.data_sha256,
        "train_ids_digest": dataset.train_id_digest(),
        "n_train": int(dataset.train.sum()),
    }
