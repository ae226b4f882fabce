"""The Python API: what your own code calls to load, forget and attack without the CLI.

    import unlearn_cli

    model = unlearn_cli.load("walkthrough/model.safetensors")
    model.module          # the rebuilt torch.nn.Module, weights loaded, eval mode
    model.evaluate()      # {"train": {"n", "accuracy", "loss", "ece"}, "test": {...}}
    report = unlearn_cli.unlearn("walkthrough/model.safetensors", ["88", "95"], method="puma",
                                 out="walkthrough/api.safetensors", eta=0.05)
    report["metrics"]["after"]["forget"]["accuracy"]
    attacked = unlearn_cli.attack("walkthrough/api.safetensors", ["88", "95"], attack="loss")
    attacked["metrics"]["loss"]["forget"]["member_rate"]

``unlearn`` runs ``unlearn forget`` (it cannot be ``unlearn_cli.forget``: that
name is the forget workflow's package, which would shadow it). A face, like
``cli/``: each call runs the same library path as its command
(``forget.run.forget``, ``attacks.registry.run_attack``,
``models.datasets.open_checkpoint``) and returns the dict that command's
``--json`` report holds (``command``, ``version``, ``status``, ``inputs``,
``outputs``, ``config``, ``metrics``, ``timings``; ``warnings`` when there
were any). Failures raise the package's errors (``unlearn_cli.errors``:
``BadInput`` is exit code 2 on the command line, ``GateFailed`` 3,
``LockHeld`` 4) instead of exiting. Nothing here prints; warnings go to ``warn``
(default: collected in the report only).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

from unlearn_cli import __version__

PathLike = Union[str, "os.PathLike[str]"]
#: A request: a request (ids) file, or the IDs themselves (any iterable of str/int).
Ids = Union[PathLike, Iterable[Any]]


@dataclass
class Loaded:
    """A checkpoint opened with its data set (what ``unlearn inspect``/``evaluate`` read)."""

    checkpoint: Any   # models.checkpoint.Checkpoint: path, sha256, meta, state (the tensors)
    dataset: Any      # data.dataset.Dataset: the manifest's features, labels, IDs and splits
    module: Any       # torch.nn.Module rebuilt from the recorded architecture, weights loaded, eval mode

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint's metadata: arch, training recipe, dataset digest, lineage."""
        return self.checkpoint.meta

    def evaluate(self, device: str = "cpu") -> dict[str, Any]:
        """n, accuracy, loss and ECE per split of the data set (``unlearn evaluate``'s metrics)."""
        from unlearn_cli.models.predict import evaluate_splits

        splits = {"train": self.dataset.train_indices(), "test": self.dataset.test_indices()}
        return evaluate_splits(self.module, self.dataset, splits, device)


def load(path: PathLike, data: PathLike | None = None) -> Loaded:
    """Open a checkpoint, its data set (``data`` or the recorded manifest, digest-checked) and its module."""
    from unlearn_cli.models.datasets import open_checkpoint

    ckpt, dataset = open_checkpoint(Path(path), None if data is None else Path(data))
    return Loaded(checkpoint=ckpt, dataset=dataset, module=ckpt.build_model("cpu"))


def unlearn(checkpoint: PathLike, ids: Ids, method: str = "puma", *, out: PathLike | None = None,
           data: PathLike | None = None, ledger: PathLike | None = None, force: bool = False,
           ignore_unknown: bool = False, seed: int | None = None, device: str = "cpu",
           warn: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """Remove the records ``ids`` from ``checkpoint``, as ``unlearn forget`` does; returns its report.

    ``options`` are the method's options (``--set key=value``; see ``unlearn
    methods``). The new checkpoint goes to ``out`` (default
    ``<stem>.unlearned.safetensors`` beside the input), verified and renamed
    into place, with a ledger line (default ``unlearn-ledger.jsonl`` beside
    it); an existing ``out`` is replaced only with ``force=True``. IDs given
    as a list are written to a temporary request file, which the report and
    the ledger name.
    """
    from unlearn_cli.errors import BadInput
    from unlearn_cli.forget.job import ForgetJob
    from unlearn_cli.forget.run import forget as run_forget
    from unlearn_cli.forget.targets import may_replace_output, plan_targets
    from unlearn_cli.training.loop import resolve_device

    ckpt_path = Path(checkpoint)
    out_path = None if out is None else Path(out)
    ledger_path = None if ledger is None else Path(ledger)
    targets = plan_targets(ckpt_path, out_path, ledger_path, None, False)
    if not may_replace_output(ckpt_path, targets, False, force):
        raise BadInput(f"{targets.out} exists; pass force=True to replace it")
    report, record = _report("forget", warn)
    with _request_file(ids) as request:
        job = ForgetJob(checkpoint=ckpt_path, requests=[request], method=method,
                        data=None if data is None else Path(data), out=out_path,
                        sets=[f"{k}={_set_value(v)}" for k, v in options.items()], ignore_unknown=ignore_unknown,
                        device=resolve_device(device), seed=seed, ledger=ledger_path)
        t0 = time.perf_counter()
        fields = run_forget(job, warn=record, timings=report["timings"])
    report.update({k: v for k, v in fields.items() if k != "timings"})
    return _finish(report, t0)


def attack(checkpoint: PathLike, ids: Ids, attack: str = "loss", *, reference: PathLike | None = None,
           data: PathLike | None = None, cache_dir: PathLike | None = None, seed: int = 0, device: str = "cpu",
           warn: Callable[[str], None] | None = None, original: PathLike | None = None,
           **settings: Any) -> dict[str, Any]:
    """Membership-inference ``attack`` on the records ``ids``, as ``unlearn attack`` does; returns its report.

    ``settings`` are the attack's settings (``--set key=value``). With
    ``reference`` (e.g. the retrained checkpoint) the same attacker also
    attacks it: ``report["metrics"]["reference"][attack]``, and
    ``report["metrics"][attack]["verdict"]`` says per metric whether the two
    are indistinguishable. ``original`` (default: the lineage parent beside the
    checkpoint) is attacked too, for ``report["metrics"][attack]["power"]``;
    every number has a ``<key>_ci`` 95% bootstrap interval. No gates: compare
    ``report["metrics"][attack]["forget"]["member_rate"]`` yourself. Shadow
    and reference models are cached in ``cache_dir`` (default
    ``<checkpoint dir>/.unlearn-cache``).
    """
    from unlearn_cli.attacks.registry import get_attack, run_attack
    from unlearn_cli.attacks.shadow import default_cache_dir
    from unlearn_cli.data.ids import check_known, read_requests
    from unlearn_cli.models.checkpoint import load_checkpoint
    from unlearn_cli.models.datasets import dataset_for, open_checkpoint
    from unlearn_cli.options import as_dict, parse_options
    from unlearn_cli.training.loop import resolve_device

    report, record = _report("attack", warn)
    t0 = time.perf_counter()
    parsed = parse_options(get_attack(attack).Settings, settings, owner=f"attack '{attack}'", word="setting")
    dev = resolve_device(device)
    ckpt, dataset = open_checkpoint(Path(checkpoint), None if data is None else Path(data))
    ref_ckpt = None
    if reference is not None:  # same data set, same train split: the rows mean the same records
        ref_ckpt = load_checkpoint(Path(reference))
        dataset_for(ref_ckpt, Path(data) if data is not None else dataset.manifest_path)
    with _request_file(ids) as path:
        request = read_requests([path])
    if request.duplicates:
        record(f"{len(request.duplicates)} repeated ID(s) in {request.source} collapsed")
    known, _ = check_known(request.ids, dataset.train_ids, dataset.test_ids)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(ckpt.path)
    report["inputs"] = {"checkpoint": {"path": str(ckpt.path), "sha256": ckpt.sha256},
                        "data": {"path": str(dataset.data_path), "sha256": dataset.data_sha256},
                        "ids": {"path": request.source, "sha256": request.sha256}}
    if ref_ckpt is not None:
        report["inputs"]["reference"] = {"path": str(ref_ckpt.path), "sha256": ref_ckpt.sha256}
    report["config"] = {"attack": attack, "settings": as_dict(parsed), "seed": seed, "device": str(dev),
                        "cache_dir": str(cache), "gates": {"max_member_rate": None, "max_auc": None}}
    from unlearn_cli.attacks.original import Original, resolve_original
    from unlearn_cli.attacks.proof import add_evidence
    from unlearn_cli.attacks.verdict import power_warning

    found = (resolve_original(ckpt, None if original is None else Path(original))
             if get_attack(attack).attacks_original else Original("skip"))
    if found.checkpoint is not None:
        dataset_for(found.checkpoint, dataset.manifest_path)
    result = run_attack(attack, parsed, dataset=dataset, checkpoint=ckpt, forget_rows=dataset.index_of(known),
                        cache_dir=cache, reference=ref_ckpt, original=found.checkpoint, device=dev, seed=seed,
                        warn=record)
    add_evidence(result, None if found.kind == "skip" else found.kind, seed)
    if result.original is not None:
        result.target["original"] = result.original
    if result.target.get("power", {}).get("proves_nothing"):
        record(power_warning(result.target["power"]))
    report["metrics"] = {attack: result.target}
    if result.reference is not None:
        report["metrics"]["reference"] = {attack: result.reference}
    report["metrics"][attack]["models_by_role"] = result.cache["by_role"]
    return _finish(report, t0)


# -- helpers ---------------------------------------------------------------------

def _report(command: str, warn: Callable[[str], None] | None) -> tuple[dict[str, Any], Callable[[str], None]]:
    """An empty report shaped like the command's ``--json`` one, and a ``warn`` that also records there."""
    report: dict[str, Any] = {"command": command, "version": __version__, "status": "ok", "inputs": {},
                              "outputs": {}, "config": {}, "timings": {}, "metrics": {}}

    def record(message: str) -> None:
        report.setdefault("warnings", []).append(message)
        if warn is not None:
            warn(message)

    return report, record


def _finish(report: dict[str, Any], t0: float) -> dict[str, Any]:
    from unlearn_cli.cli.output import _clean  # the reports' one JSON cleaner (numpy scalars, NaN -> null)

    report["timings"]["total_s"] = round(time.perf_counter() - t0, 6)
    return _clean(report)


def _set_value(value: Any) -> str:
    """A method option as ``--set`` text (booleans as the lower-case words the option parser reads)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@contextmanager
def _request_file(ids: Ids) -> Iterator[str]:
    """A request file's path: ``ids`` itself, or a temporary file of the given IDs, one per line."""
    if isinstance(ids, (str, os.PathLike)):
        yield os.fspath(ids)
        return
    with tempfile.TemporaryDirectory(prefix="unlearn-api-") as folder:
        path = Path(folder) / "ids.txt"
        path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        yield str(path)
