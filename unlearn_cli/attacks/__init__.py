"""Membership-inference attacks that verify a removal (``unlearn attack``): plugins of ``unlearn.attacks``.

- ``base.py``: the plugin protocol (``Attack``, its ``Env``, the ``Scored`` it returns) and the report shape.
- ``registry.py``: the registered attacks in listing order, and ``run_attack``, the library entry point.
- ``settings.py``: the built-in attacks' typed ``--set`` settings.
- ``shokri.py``: Shokri et al.'s shadow-model attack, set up as in the PUMA paper (the default).
- ``threshold.py``: Yeom et al.'s loss-threshold attack.
- ``lira.py``: Carlini et al.'s likelihood-ratio attack (LiRA).
- ``forget_quality.py``: the NeurIPS 2023 challenge's forget-quality score.
- ``shadow.py``: shadow, reference and attack models, trained through the one training loop and cached.
- ``signals.py``: per-record signals read off logits (loss, logit-scaled confidence, Shokri features).
- ``metrics.py``: numpy-only arithmetic (AUC, TPR at low FPR, member rates, per-record epsilon).
- ``bootstrap.py``: seeded stratified percentile bootstrap intervals (1000 resamples, 95%), paired across models.
- ``original.py``: the original model an attack's power is measured on (``--original`` or the lineage parent).
- ``verdict.py``: the power check (does the original's AUC interval clear chance?), the per-metric verdict
  against a reference (paired-bootstrap gap intervals) and the ``--max-gap`` gate.
- ``proof.py``: intervals, power and verdict added to the report entries; ROC curve data.
- ``plots.py``: ``--plot DIR``: log-log ROC curves and score histograms (the optional ``plots`` extra).
"""
