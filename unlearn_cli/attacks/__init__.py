"""Membership-inference attacks that verify a removal (``unlearn attack``).

``registry.run_attack`` is the entry point; ``base`` says what an attack is
given and returns; ``shokri`` (the PUMA paper's set-up), ``threshold`` (Yeom
et al.'s loss attack), ``lira`` (Carlini et al.) and ``forget_quality`` (the
NeurIPS 2023 challenge score) are the attacks; ``shadow`` trains and caches
their models through the one training loop; ``metrics`` and ``signals`` hold
the numpy-only arithmetic.
"""
