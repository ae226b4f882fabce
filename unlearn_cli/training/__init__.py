"""Training: the one training loop and the runs built on it.

loop.py        the one training loop, recipes, seeded init, the replayable batch order
fit.py         a seeded model trained on some rows; a new checkpoint's base metadata
train.py       ``unlearn train``'s library: plain, SISA or tracked, evaluated and written
sisa.py        SISA: shards, slices, constituents, and retraining the affected ones
update_log.py  Amnesiac's update log: every batch's parameter update, and subtracting them
"""
