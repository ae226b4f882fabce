"""Diagnostics built on the influence engine: label debugging and calibration (PUMA's Algorithms 2 and 3).

* ``rankers.py``: the label-issue rankers (plugins of ``unlearn.rankers``) and
  ``RankSettings``, the influence settings plus C and k.
* ``algorithms.py``: Algorithms 2 and 3, suspects from influence and confidence.
* ``labels.py``: ``rank`` one checkpoint's train split; ``evaluate``, the
  paper's flipped-label protocol (Figure 4 / Table 3).
* ``calibration_metrics.py``: ECE, MCE, adaptive and class-wise ECE, NLL,
  Brier, the reliability table; temperature scaling.
* ``calibration.py``: ``calibrate``, Algorithm 3 with C = ECE and PUMA's patch.
* ``plots.py``: reliability diagrams (the optional matplotlib extra).
"""
