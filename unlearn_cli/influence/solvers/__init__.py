"""iHVP solvers: one module per way of applying (H + dI)^-1, each a plugin of ``unlearn.solvers``.

* ``base.py``: the ``Solver`` interface, ``CurvatureSettings`` (the user's
  settings plus the recipe's weight decay and the seed), the damped curvature
  product, the relative residual, ``auto``'s choice and ``build_solver``.
* ``exact.py``: the explicit damped matrix and its Cholesky factor (Woodbury
  when there are fewer GGN rows than parameters).
* ``cg.py``: conjugate gradients on matrix-free products.
* ``lissa.py``: the stochastic Neumann recursion of Koh & Liang (2017).
* ``kfac.py``: K-FAC and EK-FAC, factorised once per checkpoint and cached.
"""
