"""The DAG planner: parallel layouts for decoder-only Transformer inference, costed from a profile.

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.cluster import Cluster
    from accelcal.planner.search import plan
    from accelcal.planner.workload import Workload
    res = plan("llama3-70b", Cluster.homogeneous(Profile.load("profiles/datasheet/h100-sxm.yaml")),
               Workload(prompt_len=2048, output_len=256, batch=8))
    print(res.best.label, res.best.why)

    $ accelcal plan --profile profiles/datasheet/h100-sxm.yaml --model llama3-70b

Modules (model configs and implementation presets: accelcal.models): workload, parallelism, cluster, dag (per-layer DAG),
cost (profile queries per node), memory, predict (one layer, for validate/),
search (enumerate, rank, Pareto), why, report, export, cli.  Pure Python: no
torch import anywhere in this package.
"""
