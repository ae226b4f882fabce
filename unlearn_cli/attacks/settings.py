"""Typed, documented settings of each built-in attack (``unlearn attack --set key=value``).

Each attack has a dataclass whose fields are its settings, each made by
:func:`unlearn_cli.options.option` (a default, the reason for it and, for
numbers, the valid range). :func:`unlearn_cli.options.parse_options`
(``owner="attack 'NAME'"``, ``word="setting"``) converts ``--set`` values to
the declared types, rejects unknown keys (listing the valid ones) and values
out of range or not finite, before any model is trained.
No numpy here: help texts read these classes at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearn_cli.options import BATCH_SIZE, EPOCHS, LR, MAX_COUNT, option

#: Models an attack trains (shadows, references, forget-quality pairs): a sanity bound; each one is a
#: full training run, and the papers' own counts stop at 512.
MAX_MODELS = 1024


@dataclass
class CommonSettings:
    retain_sample: int = option(
        500, "remaining train records sampled for the retain row (0 = all): "
             "enough for a rate to +/-2%, cheap on any data set", ge=0, le=MAX_COUNT)


@dataclass
class ShokriSettings(CommonSettings):
    shadows: int = option(5, "shadow models: the PUMA paper's appendix A uses five", ge=1, le=MAX_MODELS)
    # At most half: each shadow needs as many unseen train records as it trained on.
    shadow_fraction: float = option(
        0.09, "share of the train split each shadow trains on: the paper's 'less than 10%'", gt=0, le=0.5)
    shadow_epochs: int = option(50, "epochs per shadow model: the paper's 50 (recipe otherwise the target's)",
                                **EPOCHS)
    attack_epochs: int = option(200, "epochs of the (128, 64) attack MLP: its training set is small, so "
                                     "this is a few seconds", **EPOCHS)
    attack_lr: float = option(1e-3, "Adam learning rate of the attack MLP", **LR)
    attack_batch_size: int = option(64, "mini-batch of the attack MLP", **BATCH_SIZE)
    threshold: float = option(0.5, "member if the attack MLP's P(member) exceeds this", ge=0, le=1)


@dataclass
class LossSettings(CommonSettings):
    # A cross-entropy is >= 0; above 1e6 every record is a member.
    threshold: float | None = option(
        None, "member if the record's loss is at most this; default: the model's mean loss on its "
              "remaining training records (Yeom et al. 2018: the expected training loss)", ge=0, le=1e6)


@dataclass
class LiraSettings(CommonSettings):
    # At least two: one IN and one OUT reference per record.
    references: int = option(16, "reference models, each on a random half of the population; "
                                 "Carlini et al. see diminishing returns past 64, 16 is affordable on CPU",
                             ge=2, le=MAX_MODELS)
    mode: str = option("online", "online (IN and OUT references) or offline (OUT only, one-sided test)",
                       choices=("online", "offline"))
    fixed_variance: bool = option(True, "one pooled variance for all records: per-record variances need "
                                        "about 64 references (Carlini et al. 2022)")
    offline_alpha: float = option(0.05, "offline mode: member if the one-sided p-value under OUT is below this",
                                  gt=0, lt=1)


@dataclass
class ForgetQualitySettings(CommonSettings):
    models: int = option(8, "original models unlearned by the method, and as many retrained ones; the "
                            "challenge used 512, 8 keeps a small MLP under a minute", ge=2, le=MAX_MODELS)
    delta: float = option(1e-5, "delta of the (epsilon, delta) reading: the NeurIPS 2023 challenge's value",
                          ge=0, lt=1)
    bin_width: float = option(0.5, "epsilon bin width of the score 2/2^n: the challenge's value", gt=0, le=1e3)
    offline_alpha: float = option(0.05, "member if the target's confidence is above the retrained models' "
                                        "at this one-sided p-value", gt=0, lt=1)
