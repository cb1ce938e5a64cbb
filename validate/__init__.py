"""Closing the loop: real torch decoder layers timed on the device, compared with the planner.

    $ accelcal validate --profile profiles/my-cpu.yaml --nproc 2 --quick

    from accelcal.validate.runner import run_validation
    run = run_validation("profiles/my-cpu.yaml", device="cpu", quick=True, write=False)
    print(run.median_abs_rel_err)

Modules: ``layers`` (dense/MoE/TP layers), ``configs`` (cases as data),
``measure`` (timing through kernels.timing), ``tp_worker`` (multi-rank cases),
``compare`` / ``ranking`` (errors, the TP vs DP ranking), ``breakdown``
(per-node diagnosis), ``runner`` (one run), ``cli``.  Importing this package
imports no torch; ``layers``, ``measure`` and ``breakdown`` do.
"""
