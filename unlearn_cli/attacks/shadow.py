"""Shadow, reference and attack models: trained once, cached as safetensors.

Every model an attack trains goes through the one training loop
(``workflow.fit`` / ``training.train_model``) with the target checkpoint's
recorded architecture and recipe. Training them is most of an attack's cost,
and nothing about them depends on the weights being attacked, so they are
cached: a cache file's name carries the sha256 of everything that determines
the model (role, architecture, recipe, data sha256, train-ID digest, the
attack settings that shape it, its index and seed). A second attack on the
same data (the unlearned model, then the retrained reference, then a model
unlearned by another method) trains nothing.

The cache is a folder of checkpoint-format files (``<ckpt dir>/.unlearn-cache``
unless ``--cache-dir`` says otherwise). Files are read only with safetensors
and written only through ``save_checkpoint`` (atomic). A file whose recorded
key does not match its name, or that does not load, is retrained and replaced.
Record IDs never go into it: which rows a model saw is a pure function of the
recorded seed, recomputed on use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unlearn_cli.errors import BadInput
from unlearn_cli.ops import dist
from unlearn_cli.ops.progress import Progress

#: Bump when anything that shapes a cached model changes meaning.
CACHE_VERSION = 1
CACHE_DIRNAME = ".unlearn-cache"
MODELS_PHASE = "attack models"


def default_cache_dir(checkpoint_path: Path) -> Path:
    return Path(checkpoint_path).resolve().parent / CACHE_DIRNAME


def data_identity(dataset: Any) -> dict[str, Any]:
    """What identifies the data a model saw, without naming any record."""
    return {"data_sha256": dataset.data_sha256, "train_ids_digest": dataset.train_id_digest()}


@dataclass
class ModelCache:
    """Cached models keyed by what determines them; counts what it trained.

    ``progress`` (``ops.progress``) hears ``attack models`` (trained or reused,
    of those announced by ``expect`` before the first is made) and each trained
    model's ``epoch`` and ``batch``.
    """

    directory: Path
    device: Any = "cpu"
    progress: Progress | None = None
    warn: Callable[[str], None] = lambda message: None
    trained: int = 0
    reused: int = 0
    by_role: dict[str, dict[str, int]] = field(default_factory=dict)
    planned: int = 0  # models the running attack expects to need (for the progress bar)
    unwritable: bool = False  # a write failed once (warned once)

    def expect(self, count: int) -> None:
        """Announce ``count`` more models (trained or reused) for progress reporting."""
        self.planned += int(count)
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            done = self.trained + self.reused
            self.progress(MODELS_PHASE, done, max(self.planned, done))

    def key(self, role: str, material: dict[str, Any]) -> str:
        text = json.dumps({"v": CACHE_VERSION, "role": role, **material}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, role: str, key: str) -> Path:
        return self.directory / f"{role}-{key[:24]}.safetensors"

    def _count(self, role: str, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        self.by_role.setdefault(role, {"trained": 0, "reused": 0})[what] += 1
        self._report()

    def lookup(self, role: str, key: str):
        """The cached checkpoint for ``key``, or None when absent or unusable."""
        from unlearn_cli.models.checkpoint import load_checkpoint

        path = self.path(role, key)
        if not path.exists():
            return None
        try:
            ckpt = load_checkpoint(path)
        except BadInput as exc:
            self.warn(f"ignoring unreadable cache file {path.name} ({exc}); retraining it")
            return None
        if (ckpt.meta.get("cache") or {}).get("key") != key:
            self.warn(f"cache file {path.name} records another key; retraining it")
            return None
        return ckpt

    def get_or_make(self, role: str, material: dict[str, Any],
                    make: Callable[[], tuple[dict[str, Any], dict[str, Any]]]):
        """Load the model for (role, material), or ``make()`` -> (state, meta) and store it.

        Returns the stored :class:`~unlearn_cli.models.checkpoint.Checkpoint`
        (with its cache path, so methods that need a checkpoint file get one).
        """
        from unlearn_cli.models.checkpoint import load_checkpoint, save_checkpoint

        key = self.key(role, material)
        cached = self.lookup(role, key)
        if cached is not None:
            self._count(role, "reused")
            return cached
        state, meta = make()
        meta = {**meta, "cache": {**meta.get("cache", {}), "role": role, "key": key}}
        self._count(role, "trained")
        path = self.path(role, key)
        _check_finite(state)  # a diverged model is an error, not a cache problem
        written = True
        try:
            if dist.is_main():  # under torchrun rank 0 alone writes; the others read its file below
                self.directory.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, state, meta)
        except (OSError, BadInput) as exc:
            # A cache is a saving, not a result: the model trained fine, the next run retrains it.
            if not self.unwritable:
                self.warn(f"cannot write the attack cache in {self.directory} "
                          f"({getattr(exc, 'strerror', None) or exc}); models are kept in memory and "
                          "retrained next time (pass --cache-dir to keep them)")
            self.unwritable = True
            written = False
        # Every rank takes the same branch: the file once rank 0 has written it, else the model in memory.
        if not dist.everyone(written):
            return _in_memory(state, meta)
        return load_checkpoint(path)

    def summary(self) -> dict[str, Any]:
        return {"models_trained": self.trained, "models_reused": self.reused, "by_role": self.by_role}


def _check_finite(state: dict[str, Any]) -> None:
    import torch

    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadInput(f"refusing to write a checkpoint with non-finite weights (tensor '{name}')")


def _in_memory(state: dict[str, Any], meta: dict[str, Any]):
    """A cached model that could not be written: the checkpoint it would have been, without a file."""
    from unlearn_cli.models.checkpoint import Checkpoint, checkpoint_bytes

    data = checkpoint_bytes(state, meta)
    return Checkpoint(dict(state), {"format": 1, **meta}, None, hashlib.sha256(data).hexdigest())


def model_meta(arch: dict[str, Any], recipe: Any, dataset: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Checkpoint metadata of a cached model (no record IDs, no manifest path)."""
    return {
        "kind": "plain",
        "arch": arch,
        "training": recipe.to_dict(),
        "dataset": {"name": dataset.name, **data_identity(dataset),
                    "n_train": int(dataset.train.sum())},
        "lineage": [],
        "cache": dict(extra or {}),
    }


def _full_material(material: dict[str, Any], dataset: Any, rows: np.ndarray, arch: dict[str, Any],
                   recipe: Any) -> dict[str, Any]:
    # The rows' digest makes the key cover exactly what the model saw (row
    # numbers, not record IDs, so nothing identifying is stored).
    return {"arch": arch, "recipe": recipe.to_dict(), **data_identity(dataset),
            "rows_sha256": hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest(), **material}


def _maker(cache: ModelCache, dataset: Any, rows: np.ndarray, arch: dict[str, Any], recipe: Any,
           extra_meta: dict[str, Any] | None = None) -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
    """``make`` for ``ModelCache.get_or_make``: train ``arch`` with ``recipe`` on ``rows`` (the one training loop)."""
    def make() -> tuple[dict[str, Any], dict[str, Any]]:
        from unlearn_cli.training.fit import fit

        model, _ = fit(dataset, np.asarray(rows, dtype=np.int64), arch, recipe, device=cache.device,
                       progress=cache.progress)
        return model.state_dict(), model_meta(arch, recipe, dataset, extra_meta)

    return make


def fit_cached(cache: ModelCache, role: str, material: dict[str, Any], dataset: Any, rows: np.ndarray,
               arch: dict[str, Any], recipe: Any, extra_meta: dict[str, Any] | None = None):
    """Train ``arch`` with ``recipe`` on ``rows`` (the one training loop), or reuse the cached one."""
    return cache.get_or_make(role, _full_material(material, dataset, rows, arch, recipe),
                             _maker(cache, dataset, rows, arch, recipe, extra_meta))


@dataclass
class FitJob:
    """One model an attack needs: ``fit_cached``'s arguments."""

    role: str
    material: dict[str, Any]
    rows: np.ndarray
    recipe: Any


def fit_many(cache: ModelCache, jobs: list[FitJob], dataset: Any, arch: dict[str, Any]) -> list[Any]:
    """``fit_cached`` for every job, in order. Under torchrun the models not in the cache are independent
    jobs spread over the ranks (``training.parallel.spread``: each trained whole by one rank, seeded as in
    one process, so bit-identical to it), then stored by rank 0; in one process this is a plain loop."""
    if not dist.active():
        return [fit_cached(cache, job.role, job.material, dataset, job.rows, arch, job.recipe) for job in jobs]
    from unlearn_cli.training.parallel import spread

    makers = [_maker(cache, dataset, job.rows, arch, job.recipe) for job in jobs]
    fulls = [_full_material(job.material, dataset, job.rows, arch, job.recipe) for job in jobs]
    found = [cache.lookup(job.role, cache.key(job.role, full)) for job, full in zip(jobs, fulls)]
    missing = [i for i, ckpt in enumerate(found) if ckpt is None]
    trained = spread(missing, lambda i: [{k: v.detach().to("cpu") for k, v in makers[i]()[0].items()}],
                     lambda i: 1, arch) if missing else {}
    out = []
    for i, job in enumerate(jobs):
        if found[i] is not None:
            cache._count(job.role, "reused")
            out.append(found[i])
        else:   # every rank stores the broadcast state: rank 0 writes it, the others read it back
            meta = model_meta(arch, job.recipe, dataset)
            out.append(cache.get_or_make(job.role, fulls[i], lambda state=trained[i][0], meta=meta: (state, meta)))
    return out
