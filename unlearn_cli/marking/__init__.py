"""Marking: choosing which training records to forget (``unlearn mark``).

strategies.py  ``mark``, and the cluster (PUMA appendix A), random and class strategies
ordered.py     the Ordered scenario: records in the fewest recorded batches or SISA shards
result.py      ``Marking`` and the checks every strategy shares
"""
