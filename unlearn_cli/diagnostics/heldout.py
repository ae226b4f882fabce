"""Which records calibrate fits on and which it reports on: held-out records only, never the train split.

A model is most confident on the records it trained on, so a temperature or
an eta chosen there sharpens the model instead of softening it (measured: T =
0.038 fitted on train records took breast-cancer's test NLL from 0.315 to
1.558). The rule:

* the manifest has ``splits.validation`` and a test split: fit on the
  validation records, report on the test records;
* only one of the two: a seeded carve-out of it, ``fit_share`` (``--holdout``,
  default one half) to fit on and the rest to report on, so that no reported
  number comes from a record the fit saw;
* neither: refused (exit 2): there is nothing held out to fit on.

``fold_temperature`` writes a fitted temperature into the weights (the last
linear layer divided by T), checked on records against logits / T, so that
``calibrate --out`` can publish it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.errors import BadInput

FOLD_CHECK = 64  # records on which the folded weights must reproduce logits / T


def split_holdout(rows: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) of ``rows``: a seeded split with round(share * n) records held."""
    held = int(round(share * len(rows)))
    if held < 1 or held >= len(rows):
        raise BadInput(f"--holdout {share} leaves no records on one side of {len(rows)} held-out records")
    perm = np.random.default_rng([int(seed), 7]).permutation(rows)
    return np.sort(perm[held:]), np.sort(perm[:held])


def held_out_rows(dataset: Any, fit_share: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(rows to fit on, rows to report on, what they are) following the module's rule."""
    validation = np.asarray(dataset.validation_indices(), dtype=np.int64)
    test = np.asarray(dataset.test_indices(), dtype=np.int64)
    name = dataset.manifest_path.name if getattr(dataset, "manifest_path", None) is not None else dataset.name
    if len(validation) and len(test):
        return validation, test, {"fit": "validation split", "report": "test split",
                                  "fit_records": int(len(validation)), "report_records": int(len(test))}
    if not len(validation) and not len(test):
        raise BadInput(f"{name}: calibrate fits on held-out records and this manifest has only a train split; "
                       "add splits.validation or a test split")
    only, label = (validation, "validation") if len(validation) else (test, "test")
    if len(only) < 2:
        raise BadInput(f"{name}: the {label} split has {len(only)} record; calibrate needs at least 2 held-out "
                       "records (one to fit on, one to report on); add splits.validation")
    report, fit = split_holdout(only, fit_share, seed)
    return fit, report, {"fit": f"seeded {fit_share:.0%} of the {label} split (no validation split)",
                         "report": f"the other {1 - fit_share:.0%} of the {label} split",
                         "fit_records": int(len(fit)), "report_records": int(len(report))}


def fold_temperature(fmodel: Any, params: dict[str, Any], temperature: float, x: Any) -> dict[str, Any] | None:
    """``params`` with the last linear layer's weight and bias divided by T, or None when that is not
    exactly softmax(logits / T) on ``x`` (a model whose logits do not come straight from that layer)."""
    import torch

    names = [n for n in params if n.endswith(".weight") and params[n].dim() == 2]
    if not names:
        return None
    weight = names[-1]
    bias = weight[: -len("weight")] + "bias"
    folded = dict(params)
    folded[weight] = params[weight] / temperature
    if bias in params:
        folded[bias] = params[bias] / temperature
    with torch.no_grad():
        sample = x[:FOLD_CHECK]
        want = fmodel(params, sample) / temperature
        got = fmodel(folded, sample)
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        return None
    return folded
