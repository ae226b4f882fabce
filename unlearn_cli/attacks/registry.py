"""The attacks ``unlearn attack`` knows, and the one function that runs them.

Attacks are the ``unlearn.attacks`` plugins (built-ins included), found
through the one plugin loader. :func:`run_attack` is the library entry point
the command calls: it builds the splits, attacks the target and (optionally) a
reference checkpoint with the very same attacker, and returns the report
entries. Cheap to import (no numpy): help texts read :data:`BUILT_IN` at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from unlearn_cli import plugins
from unlearn_cli.attacks.settings import ForgetQualitySettings, LiraSettings, LossSettings, ShokriSettings
from unlearn_cli.errors import BadInput

#: The paper's attack (PUMA Table 2).
DEFAULT_ATTACK = "shokri"

#: The built-in attacks in the order they are listed (the paper's first, then by cost), with their
#: settings classes, so that help texts need not import the attacks (numpy); other plugins follow by name.
BUILT_IN: dict[str, type] = {
    "shokri": ShokriSettings,
    "loss": LossSettings,
    "lira": LiraSettings,
    "forget-quality": ForgetQualitySettings,
}


def names() -> list[str]:
    """Every registered attack: the built-ins in their order, then other plugins by name."""
    found = plugins.names("attacks")
    return [n for n in BUILT_IN if n in found] + [n for n in found if n not in BUILT_IN]


def get_attack(name: str) -> type:
    listed = names()
    if name not in listed:
        raise BadInput(f"unknown attack '{name}'; choose one of: {', '.join(listed)}")
    return plugins.load("attacks", name)


def settings_class(name: str) -> type:
    """The attack's ``Settings``; a built-in's without importing the attack."""
    return BUILT_IN[name] if name in BUILT_IN else get_attack(name).Settings


@dataclass
class AttackResult:
    target: dict[str, Any]                    # metrics[<attack>]
    reference: dict[str, Any] | None          # metrics["reference"][<attack>] or None
    cache: dict[str, Any] = field(default_factory=dict)  # models trained / reused
    original: dict[str, Any] | None = None    # metrics[<attack>]["original"] or None
    scored: dict[str, Any] = field(default_factory=dict)  # "target"/"original"/"reference" -> base.Scored
    splits: Any = None                        # base.Splits: the rows every model was attacked on


def run_attack(
    name: str,
    settings: Any,
    *,
    dataset: Any,
    checkpoint: Any,
    forget_rows: Any,
    cache_dir: Path,
    reference: Any = None,
    original: Any = None,
    device: Any = "cpu",
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    warn: Callable[[str], None] = lambda message: None,
    method: Any = None,
) -> AttackResult:
    """Attack ``checkpoint`` (and ``original``, ``reference``) about ``forget_rows`` (data set rows).

    Every model faces the very same attacker (shadow or reference models
    trained once); per-record scores are kept in ``scored`` for the
    bootstrap intervals (``attacks.proof``). ``method`` replaces the
    registry's method in the forget-quality attack (tests and embedding
    callers pass their own).
    """
    from unlearn_cli.attacks.base import Env, Splits, summarize
    from unlearn_cli.attacks.shadow import ModelCache
    from unlearn_cli.models.predict import load_predictor

    attack_cls = get_attack(name)
    if getattr(attack_cls, "needs_recipe", False):
        from unlearn_cli.training.importing import require_recipe

        require_recipe(checkpoint, f"attack '{name}' must train shadow/reference models like it")
    cache = ModelCache(Path(cache_dir), device=device, progress=progress, warn=warn)
    splits = Splits.make(dataset, forget_rows, settings.retain_sample, seed)
    env = Env(dataset=dataset, checkpoint=checkpoint, splits=splits, cache=cache, device=device,
              seed=seed, warn=warn, method=method)
    attack = attack_cls(env, settings)
    scored = {}
    for role, ckpt in (("target", checkpoint), ("original", original), ("reference", reference)):
        if ckpt is not None:
            scored[role] = attack.evaluate(ckpt, load_predictor(ckpt, device))
    entries = {role: summarize(s, splits) for role, s in scored.items()}
    counts = cache.summary()
    # Run totals (every model shares the attacker), on every entry so they keep one shape.
    for entry in entries.values():
        entry.update({"models_trained": counts["models_trained"], "models_reused": counts["models_reused"]})
    return AttackResult(entries["target"], entries.get("reference"), counts, entries.get("original"), scored, splits)
