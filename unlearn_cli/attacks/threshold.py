"""The loss-threshold attack of Yeom et al. (CSF 2018).

A record is called a member when the model's loss on it is at most a
threshold. Yeom et al. set the threshold to the model's expected training
loss; here that is the mean loss of the attacked model on its remaining
training records (train split minus the request), which the auditor knows.
No shadow models: it is the cheap population baseline that every stronger
attack must beat. ``--set threshold=T`` fixes the threshold instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.attacks.base import Attack, Scored
from unlearn_cli.attacks.settings import LossSettings
from unlearn_cli.attacks.signals import model_logits, per_record_loss


class LossAttack(Attack):
    name = "loss"
    summary = "Yeom et al.: member if the loss is at most the mean training loss"
    Settings = LossSettings

    def _losses(self, predictor: Any, rows: np.ndarray) -> np.ndarray:
        env = self.env
        return per_record_loss(model_logits(predictor, env.dataset, rows, env.device), env.dataset.y[rows])

    def evaluate(self, checkpoint: Any, predictor: Any) -> Scored:
        env = self.env
        threshold = self.settings.threshold
        if threshold is None:
            if len(env.splits.remaining) == 0:
                from unlearn_cli.errors import BadInput

                raise BadInput("the loss attack's threshold is the mean loss on the remaining train records, and "
                               "the request covers all of them; pass --set threshold=T")
            threshold = float(self._losses(predictor, env.splits.remaining).mean())

        def score_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            loss = self._losses(predictor, rows)
            return -loss, loss <= threshold  # score: higher = more member-like

        scores, decisions = self.by_split(score_rows)
        return Scored(scores, decisions, extra={"threshold": threshold})
