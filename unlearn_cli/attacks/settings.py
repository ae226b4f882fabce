"""Typed, documented settings of each built-in attack (``unlearn attack --set key=value``).

Each attack has a dataclass whose fields are its settings, each made by
:func:`unlearn_cli.options.option` (a default and the reason for it).
:func:`unlearn_cli.options.parse_options` (``owner="attack 'NAME'"``,
``word="setting"``) converts ``--set`` values to the declared types and
rejects unknown keys, listing the valid ones; ``validate()`` checks ranges.
No numpy here: help texts read these classes at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearn_cli.errors import BadInput
from unlearn_cli.options import option


@dataclass
class CommonSettings:
    retain_sample: int = option(
        500, "remaining train records sampled for the retain row (0 = all): "
             "enough for a rate to +/-2%, cheap on any data set")

    def validate(self) -> None:
        if self.retain_sample < 0:
            raise BadInput(f"retain_sample must be >= 0, got {self.retain_sample}")


@dataclass
class ShokriSettings(CommonSettings):
    shadows: int = option(5, "shadow models: the PUMA paper's appendix A uses five")
    shadow_fraction: float = option(
        0.09, "share of the train split each shadow trains on: the paper's 'less than 10%'")
    shadow_epochs: int = option(50, "epochs per shadow model: the paper's 50 (recipe otherwise the target's)")
    attack_epochs: int = option(200, "epochs of the (128, 64) attack MLP: its training set is small, so "
                                     "this is a few seconds")
    attack_lr: float = option(1e-3, "Adam learning rate of the attack MLP")
    attack_batch_size: int = option(64, "mini-batch of the attack MLP")
    threshold: float = option(0.5, "member if the attack MLP's P(member) exceeds this")

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
    threshold: float | None = option(
        None, "member if the record's loss is at most this; default: the model's mean loss on its "
              "remaining training records (Yeom et al. 2018: the expected training loss)")


@dataclass
class LiraSettings(CommonSettings):
    references: int = option(16, "reference models, each on a random half of the population; "
                                 "Carlini et al. see diminishing returns past 64, 16 is affordable on CPU")
    mode: str = option("online", "online (IN and OUT references) or offline (OUT only, one-sided test)",
                       choices=("online", "offline"))
    fixed_variance: bool = option(True, "one pooled variance for all records: per-record variances need "
                                        "about 64 references (Carlini et al. 2022)")
    offline_alpha: float = option(0.05, "offline mode: member if the one-sided p-value under OUT is below this")

    def validate(self) -> None:
        super().validate()
        if self.references < 2:
            raise BadInput(f"references must be >= 2 (at least one IN and one OUT per record), got {self.references}")
        if not 0.0 < self.offline_alpha < 1.0:
            raise BadInput(f"offline_alpha must be in (0, 1), got {self.offline_alpha}")


@dataclass
class ForgetQualitySettings(CommonSettings):
    models: int = option(8, "original models unlearned by the method, and as many retrained ones; the "
                            "challenge used 512, 8 keeps a small MLP under a minute")
    delta: float = option(1e-5, "delta of the (epsilon, delta) reading: the NeurIPS 2023 challenge's value")
    bin_width: float = option(0.5, "epsilon bin width of the score 2/2^n: the challenge's value")
    offline_alpha: float = option(0.05, "member if the target's confidence is above the retrained models' "
                                        "at this one-sided p-value")

    def validate(self) -> None:
        super().validate()
        if self.models < 2:
            raise BadInput(f"models must be >= 2, got {self.models}")
        if not 0.0 <= self.delta < 1.0 or not self.bin_width > 0:
            raise BadInput("delta must be in [0, 1) and bin_width > 0")
        if not 0.0 < self.offline_alpha < 1.0:
            raise BadInput(f"offline_alpha must be in (0, 1), got {self.offline_alpha}")
