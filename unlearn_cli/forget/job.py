"""What a forget run is asked to do (``ForgetJob``) and what it found on the way (``RunFacts``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn_cli.forget.requests import Requests
from unlearn_cli.forget.targets import Targets


@dataclass
class ForgetJob:
    checkpoint: Path
    requests: list[str]
    method: str
    data: Path | None = None
    out: Path | None = None
    config_file: Path | None = None
    sets: list[str] = field(default_factory=list)
    ignore_unknown: bool = False
    device: Any = "cpu"
    seed: int | None = None
    queue: Path | None = None        # take every *.txt in this folder; move them to done/ or failed/
    ledger: Path | None = None       # default: unlearn-ledger.jsonl beside the output
    in_place: bool = False           # replace the input checkpoint (atomically)
    wait: float = 0.0                # seconds to wait for another run's lock before exit 4
    ledger_key: Path | None = None   # key file for keyed ID digests (default: $UNLEARN_LEDGER_KEY_FILE)


@dataclass
class RunFacts:
    """What the later steps of one run need to know (kept together to keep signatures short)."""

    job: ForgetJob
    method_config: Any
    seed: int
    targets: Targets
    base: Path
    ckpt: Any
    dataset: Any
    requests: Requests
    known: list[str]
    new: list[str]
    skipped: list[str]
    already: int
    previously: Any = None           # ops.ledger.Removed: ID digests removed on the way to ``ckpt``
    key: Any = None                  # ops.digests.LedgerKey, or None (plain SHA-256 digests)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
