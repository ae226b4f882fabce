"""The influence engine: J, C, the curvature of J, its inverse, and what PUMA builds on them.

* ``settings.py``: ``InfluenceSettings``, the one settings dataclass (curvature,
  damping, solver and its knobs, samples, cache) that PUMA, debug-labels and
  calibrate embed.
* ``criteria.py``: the training objective J and the criteria C (plugins of
  ``unlearn.criteria``).
* ``scores.py``: the model as a function of its parameters; psi by one
  forward-mode pass, weighted gradient sums by one backward pass.
* ``curvature.py``: J's Gauss-Newton matrix or Hessian, as products and as
  explicit matrices.
* ``layers.py``: per-layer hooks (inputs, pseudo-loss output gradients) for the
  exact GGN's rows and K-FAC's factors.
* ``solvers/``: the iHVP solvers, one module each (plugins of ``unlearn.solvers``).
* ``engine.py``: ``InfluenceEngine``, model + J + C + solver + cached
  v = (H + dI)^-1 grad C for one checkpoint.
* ``reweight.py``: lambda of equation 10.
* ``patch.py``: Algorithm 1 as one function, ``puma_patch``.
"""
