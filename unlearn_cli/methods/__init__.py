"""Unlearning methods: plugins of the ``unlearn.methods`` entry-point group (``unlearn forget --method``).

- ``base.py``: the plugin protocol (``Method``, its ``Request`` and ``Outcome``) and how to register one.
- ``registry.py``: the registered methods (through ``unlearn_cli.plugins``), ``get`` and ``describe``.
- ``_shared.py``: steps the methods share (``FineTuning`` base, SGD through the one training loop, sidecars).
- ``puma.py``: PUMA (Wu et al. 2022), re-weight and patch once.
- ``retrain.py``: retrain from scratch, the exact reference.
- ``sisa.py``: SISA (Bourtoule et al. 2021), retrain the affected shards.
- ``amnesiac.py``: Amnesiac ML (Graves et al. 2021), subtract recorded batch updates.
- ``boundary.py``: Boundary Shrink and Boundary Expanding (Chen et al. 2023).
- ``salun.py``: SalUn (Fan et al. 2024), saliency-masked random-label fine-tuning.
- ``neggrad.py``: NegGrad+ (Kurmanji et al. 2023), ascent on forget plus descent on retain.
- ``finetune.py``: fine-tune on the remaining records (NeurIPS 2023 challenge baseline).

BatchNorm running statistics are buffers, not parameters. ``puma`` keeps them (the influence engine
sees the model in eval mode and patches parameters only); ``retrain`` recomputes them from scratch;
``sisa`` constituents each have their own (retrained ones recompute theirs); ``amnesiac``'s update
log records their per-step change with the weights' and subtracts it with the batch; the fine-tuning
methods (``boundary-*``, ``salun``, ``neggrad``, ``finetune``) train in train mode and so update them.
"""
