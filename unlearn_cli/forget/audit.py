"""Answering an auditor from the ledger: which runs removed these IDs, and do these checkpoints still hold them.

``check_ids`` looks each ID up by its digest (plain SHA-256, and HMAC-SHA256
under the ledger key when one is given) in the ``ok`` lines of the ledger.
A checkpoint no longer holds an ID when a run that removed it produced that
checkpoint or one of its lineage ancestors (the ``parent_sha256`` chain the
lineage records), or when the checkpoint's own SISA metadata lists the ID's
digest as removed. Ledger lines under another key cannot be searched; they
are counted so the answer says so.

The answer names each ID by its position among the arguments and its digest,
never raw: it goes into report files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.digests import LedgerKey, id_digest, key_id_of
from unlearn_cli.ops.ledger import read_ledger


def _run_fields(line: dict[str, Any]) -> dict[str, Any]:
    keep = ("run_id", "time", "command", "method", "status", "key_id", "recovered")
    out = {k: line[k] for k in keep if k in line}
    out["input"] = {k: (line.get("input") or {}).get(k) for k in ("path", "sha256")}
    out["output"] = {k: (line.get("output") or {}).get(k) for k in ("path", "sha256")}
    out["removed_ids_digest"] = line.get("removed_ids_digest")
    return out


def _checkpoint_facts(path: Path) -> dict[str, Any]:
    from unlearn_cli.models.checkpoint import read_header_meta

    header = read_header_meta(path)
    meta = header["meta"]
    lineage = meta.get("lineage") or []
    if not isinstance(lineage, list):
        raise BadInput(f"{path}: lineage is not a list")
    chain = {header["sha256"]} | {str(e.get("parent_sha256")) for e in lineage
                                  if isinstance(e, dict) and e.get("parent_sha256")}
    sisa = meta.get("sisa") if isinstance(meta.get("sisa"), dict) else {}
    return {"path": str(path), "sha256": header["sha256"], "chain": chain, "lineage": lineage,
            "sisa_digests": {str(d) for d in sisa.get("removed_digests") or []},
            "sisa_key_id": sisa.get("removed_key_id")}


def _in_lineage(run: dict[str, Any], lineage: list[Any]) -> bool:
    """Does the checkpoint's lineage record this run's step (same parent, same removed-set digest)?"""
    return any(isinstance(e, dict) and e.get("parent_sha256") == run["input"]["sha256"]
               and e.get("removed_ids_digest") == run["removed_ids_digest"] for e in lineage)


def _verdict(ckpt: dict[str, Any], runs: list[dict[str, Any]], digests: dict[str | None, str]) -> dict[str, Any]:
    by = [r for r in runs if r["output"]["sha256"] in ckpt["chain"]]
    sisa_key = ckpt["sisa_key_id"]
    in_sisa = sisa_key in digests and digests[sisa_key] in ckpt["sisa_digests"]
    return {"path": ckpt["path"], "sha256": ckpt["sha256"], "holds": not (by or in_sisa),
            "removed_by": [r["run_id"] for r in by], "lineage_confirms": any(_in_lineage(r, ckpt["lineage"])
                                                                         for r in by),
            "sisa_lists_removed": bool(in_sisa)}


def check_ids(ledger_path: str | os.PathLike, ids: Sequence[str], checkpoints: Sequence[str | os.PathLike],
              key: LedgerKey | None, warn: Callable[[str], None]) -> dict[str, Any]:
    """Per ID: the runs that removed it and, per checkpoint, whether it still holds it; plus a summary."""
    ledger_path = Path(ledger_path)
    if not ids:
        raise BadInput("give at least one ID to look up")
    if not ledger_path.exists():
        raise BadInput(f"{ledger_path}: no such ledger")
    ledger = read_ledger(ledger_path, warn)
    ckpts = [_checkpoint_facts(Path(p)) for p in checkpoints]
    answers, other_keys = [], 0
    for position, record_id in enumerate(ids, start=1):
        digests = {None: id_digest(record_id)}
        if key is not None:
            digests[key.key_id] = id_digest(record_id, key)
        lines, other_keys = ledger.runs_removing(digests)
        runs = [_run_fields(line) for line in lines]
        verdicts = [_verdict(c, runs, digests) for c in ckpts]
        removed = bool(runs) and not any(v["holds"] for v in verdicts)
        answers.append({"arg": position, "digest": digests[key_id_of(key)], "found": bool(runs),
                        "status": "removed" if removed else ("not found" if not runs else "still held"),
                        "runs": runs, "checkpoints": verdicts})
    if other_keys:
        warn(f"{other_keys} ledger line(s) record digests under another ledger key and cannot be searched "
             "with this one" if key is not None else
             f"{other_keys} ledger line(s) record keyed digests; pass --ledger-key to search them")
    return {"ids": answers, "key_id": key_id_of(key), "lines_other_key": other_keys,
            "summary": {"ids": len(answers), "removed": sum(a["status"] == "removed" for a in answers),
                        "not_found": sum(a["status"] == "not found" for a in answers),
                        "still_held": sum(a["status"] == "still held" for a in answers)}}
