"""The forget workflow, and the one path by which a new checkpoint is published (forget's and calibrate's).

run.py         ``forget``: the order of operations every method shares (plan, lock, gather, apply, publish)
job.py         ``ForgetJob`` (what a caller asks) and ``RunFacts`` (what a run found on the way)
config.py      a method's options from --config/--set; its checkpoint requirement (SISA, update log)
requests.py    request files read and merged; queue files screened one by one
targets.py     output and ledger paths, their locks, stale temps of a killed run, the base to start from
publish.py     child metadata + lineage entry, the verified atomic publish, ledger lines, settling the queue
calibrated.py  calibrate's patched checkpoint published through publish.py (lineage + ledger line)
"""
