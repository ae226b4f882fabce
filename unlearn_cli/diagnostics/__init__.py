"""Diagnostics built on the influence engine: label debugging and calibration (PUMA's Algorithms 2 and 3).

* ``rankers.py``: the label-issue rankers (plugins of ``unlearn.rankers``) and
  ``RankSettings``, the influence settings plus C, k and the folds.
* ``loo.py``: the default ranker's out-of-sample evidence (exact leave-one-out
  of a kernel smoother; no k trainings) and the estimate of how many labels
  are wrong (confident joint).
* ``kfold.py``: the ``kfold`` ranker, cleanlab's recipe (k trainings).
* ``algorithms.py``: Algorithms 2 and 3, suspects from influence and confidence.
* ``labels.py``: ``rank`` one checkpoint's train split; ``evaluate``, the
  paper's flipped-label protocol (Figure 4 / Table 3).
* ``table.py``: the per-record label-issue table (``--out-table``).
* ``calibration_metrics.py``: ECE, MCE, adaptive and class-wise ECE, NLL,
  Brier, the reliability table; temperature scaling.
* ``heldout.py``: which held-out records calibrate fits on and reports on;
  folding a temperature into the weights.
* ``calibration.py``: ``calibrate``, Algorithm 3 with C = ECE and PUMA's patch.
* ``plots.py``: reliability diagrams (the optional matplotlib extra).
"""
