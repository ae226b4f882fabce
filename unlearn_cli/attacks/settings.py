"""Typed, documented settings of each attack (``unlearn attack --set key=value``).

Each attack has a dataclass whose fields are its settings, each with a default
and ``metadata={"doc": ...}`` saying why that default. Unknown keys are
errors listing the valid ones; values are converted to the declared type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, get_type_hints

from unlearn_cli.errors import BadInput


def _opt(default: Any, doc: str, **extra: Any) -> Any:
    return field(default=default, metadata={"doc": doc, **extra})


@dataclass
class CommonSettings:
    retain_sample: int = _opt(
        500, "remaining train records sampled for the retain row (0 = all): "
             "enough for a rate to +/-2%, cheap on any data set")

    def validate(self) -> None:
        if self.retain_sample < 0:
            raise BadInput(f"retain_sample must be >= 0, got {self.retain_sample}")


@dataclass
class ShokriSettings(CommonSettings):
    shadows: int = _opt(5, "shadow models: the PUMA paper's appendix A uses five")
    shadow_fraction: float = _opt(
        0.09, "share of the train split each shadow trains on: the paper's 'less than 10%'")
    shadow_epochs: int = _opt(50, "epochs per shadow model: the paper's 50 (recipe otherwise the target's)")
    attack_epochs: int = _opt(200, "epochs of the (128, 64) attack MLP: its training set is small, so "
                                   "this is a few seconds")
    attack_lr: float = _opt(1e-3, "Adam learning rate of the attack MLP")
    attack_batch_size: int = _opt(64, "mini-batch of the attack MLP")
    threshold: float = _opt(0.5, "member if the attack MLP's P(member) exceeds this")

    def validate(self) -> None:
        super().validate()
        if self.shadows < 1:
            raise BadInput(f"shadows must be >= 1, got {self.shadows}")
        if not 0.0 < self.shadow_fraction <= 0.5:
            # Each shadow needs as many unseen train records as it trained on.
            raise BadInput(f"shadow_fraction must be in (0, 0.5], got {self.shadow_fraction}")
        if self.shadow_epochs < 1 or self.attack_epochs < 1:
            raise BadInput("shadow_epochs and attack_epochs must be >= 1")
        if not self.attack_lr > 0 or self.attack_batch_size < 1:
            raise BadInput("attack_lr must be > 0 and attack_batch_size >= 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise BadInput(f"threshold must be in [0, 1], got {self.threshold}")


@dataclass
class LossSettings(CommonSettings):
    threshold: float | None = _opt(
        None, "member if the record's loss is at most this; default: the model's mean loss on its "
              "remaining training records (Yeom et al. 2018: the expected training loss)")


@dataclass
class LiraSettings(CommonSettings):
    references: int = _opt(16, "reference models, each on a random half of the population; "
                               "Carlini et al. see diminishing returns past 64, 16 is affordable on CPU")
    mode: str = _opt("online", "online (IN and OUT references) or offline (OUT only, one-sided test)",
                     choices=("online", "offline"))
    fixed_variance: bool = _opt(True, "one pooled variance for all records: per-record variances need "
                                      "about 64 references (Carlini et al. 2022)")
    offline_alpha: float = _opt(0.05, "offline mode: member if the one-sided p-value under OUT is below this")

    def validate(self) -> None:
        super().validate()
        if self.references < 2:
            raise BadInput(f"references must be >= 2 (at least one IN and one OUT per record), got {self.references}")
        if not 0.0 < self.offline_alpha < 1.0:
            raise BadInput(f"offline_alpha must be in (0, 1), got {self.offline_alpha}")


@dataclass
class ForgetQualitySettings(CommonSettings):
    models: int = _opt(8, "original models unlearned by the method, and as many retrained ones; the "
                          "challenge used 512, 8 keeps a small MLP under a minute")
    delta: float = _opt(1e-5, "delta of the (epsilon, delta) reading: the NeurIPS 2023 challenge's value")
    bin_width: float = _opt(0.5, "epsilon bin width of the score 2/2^n: the challenge's value")
    offline_alpha: float = _opt(0.05, "member if the target's confidence is above the retrained models' "
                                      "at this one-sided p-value")

    def validate(self) -> None:
        super().validate()
        if self.models < 2:
            raise BadInput(f"models must be >= 2, got {self.models}")
        if not 0.0 <= self.delta < 1.0 or not self.bin_width > 0:
            raise BadInput("delta must be in [0, 1) and bin_width > 0")
        if not 0.0 < self.offline_alpha < 1.0:
            raise BadInput(f"offline_alpha must be in (0, 1), got {self.offline_alpha}")


def describe(settings_cls: type) -> list[dict[str, Any]]:
    """name, default and doc of every setting (for help text and reports)."""
    return [{"name": f.name, "default": f.default, "doc": f.metadata.get("doc", "")}
            for f in dataclasses.fields(settings_cls)]


def _coerce(attack: str, name: str, value: Any, tp: Any, choices: Any) -> Any:
    args = getattr(tp, "__args__", ())
    if type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        tp = next(a for a in args if a is not type(None))
    text = value.strip() if isinstance(value, str) else value
    try:
        if tp is bool:
            low = str(text).lower()
            if isinstance(text, bool):
                result: Any = text
            elif low in ("1", "true", "yes", "on"):
                result = True
            elif low in ("0", "false", "no", "off"):
                result = False
            else:
                raise ValueError
        elif tp is int:
            result = int(text)
        elif tp is float:
            result = float(text)
        else:
            result = str(text)
    except (TypeError, ValueError):
        raise BadInput(f"attack '{attack}' setting '{name}' expects {getattr(tp, '__name__', tp)}, "
                       f"got '{value}'") from None
    if choices is not None and result not in choices:
        raise BadInput(f"attack '{attack}' setting '{name}' must be one of {', '.join(choices)}, got '{result}'")
    return result


def parse_settings(settings_cls: type, values: Mapping[str, Any], attack: str) -> Any:
    """Build the settings from ``--set`` values; unknown keys list the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for attack '{attack}'; "
            f"valid: {', '.join(fields)}"
        )
    hints = get_type_hints(settings_cls)
    kwargs = {k: _coerce(attack, k, v, hints[k], fields[k].metadata.get("choices")) for k, v in values.items()}
    settings = settings_cls(**kwargs)
    settings.validate()
    return settings
