"""The attacks ``unlearn attack`` knows, and the one function that runs them.

:func:`run_attack` is the library entry point the command calls: it builds
the splits, attacks the target and (optionally) a reference checkpoint with
the very same attacker, and returns the report entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unlearn_cli.errors import BadInput
from unlearn_cli.attacks.base import Env, Splits, summarize
from unlearn_cli.attacks.forget_quality import ForgetQualityAttack
from unlearn_cli.attacks.lira import LiraAttack
from unlearn_cli.attacks.shadow import ModelCache
from unlearn_cli.attacks.shokri import ShokriAttack
from unlearn_cli.attacks.threshold import LossAttack

ATTACKS: dict[str, type] = {
    "shokri": ShokriAttack,
    "loss": LossAttack,
    "lira": LiraAttack,
    "forget-quality": ForgetQualityAttack,
}
#: The paper's attack (PUMA Table 2).
DEFAULT_ATTACK = "shokri"


def get_attack(name: str) -> type:
    if name not in ATTACKS:
        raise BadInput(f"unknown attack '{name}'; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[name]


@dataclass
class AttackResult:
    target: dict[str, Any]                    # metrics[<attack>]
    reference: dict[str, Any] | None          # metrics["reference"][<attack>] or None
    cache: dict[str, Any] = field(default_factory=dict)  # models trained / reused


def run_attack(
    name: str,
    settings: Any,
    *,
    dataset: Any,
    checkpoint: Any,
    forget_rows: np.ndarray,
    cache_dir: Path,
    reference: Any = None,
    device: Any = "cpu",
    seed: int = 0,
    progress: Callable[[int, int], None] = lambda done, total: None,
    warn: Callable[[str], None] = lambda message: None,
    method: Any = None,
) -> AttackResult:
    """Attack ``checkpoint`` (and ``reference``) about ``forget_rows``.

    ``method`` replaces the registry's method in the forget-quality attack
    (tests and embedding callers pass their own).
    """
    from unlearn_cli.models.predict import load_predictor

    attack_cls = get_attack(name)
    cache = ModelCache(Path(cache_dir), device=device, progress=progress, warn=warn)
    splits = Splits.make(dataset, forget_rows, settings.retain_sample, seed)
    env = Env(dataset=dataset, checkpoint=checkpoint, splits=splits, cache=cache, device=device,
              seed=seed, warn=warn)
    attack = attack_cls(env, settings, method) if attack_cls is ForgetQualityAttack else attack_cls(env, settings)
    target = summarize(attack.evaluate(checkpoint, load_predictor(checkpoint, device)), splits)
    ref = None
    if reference is not None:
        ref = summarize(attack.evaluate(reference, load_predictor(reference, device)), splits)
    counts = cache.summary()
    # Run totals (target and reference share the attacker), on both entries so they keep one shape.
    for entry in (target, ref):
        if entry is not None:
            entry.update({"models_trained": counts["models_trained"], "models_reused": counts["models_reused"]})
    return AttackResult(target, ref, counts)
