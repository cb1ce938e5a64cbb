"""Synthetic profiles for the planner tests, as dicts in the documented YAML layout.

    from tests.planner_profiles import h100_like, gloo_cpu_like
    p = Profile.from_dict(h100_like(inter_node_slowdown=10.0))

``h100_like`` takes its compute, memory and NVLink figures from the NVIDIA H100
SXM datasheet (989.4 TFLOP/s dense bf16, 3.35 TB/s HBM3, 80 GB, 900 GB/s NVLink
i.e. 450 GB/s per direction) and ConnectX-7 NDR (400 Gb/s = 50 GB/s per GPU)
for inter-node links; latencies are round synthetic values.  ``gloo_cpu_like``
is a slow-interconnect node shaped like a gloo-over-loopback CPU measurement
(collective latency ~100 us, ~1 GB/s).  These are test fixtures (source:
datasheet, labelled), not measurements.
"""

from __future__ import annotations

import copy

QUALITY = {"points": 0, "median_rel_err": 0.0, "max_rel_err": 0.0, "heldout_median_rel_err": 0.0,
           "heldout_p90_rel_err": 0.0, "range_min": 1.0, "range_max": 1.0e12, "converged": True, "flags": []}

# nccl-tests busbw factors turn a link's bus bandwidth into the S/t bandwidth the profile stores
def _factor(op: str, n: int) -> float:
    return {"all_reduce": 2 * (n - 1) / n, "send_recv": 1.0}.get(op, (n - 1) / n)


def _collectives(busbw: float, latency_s: float, scope: str, sizes: list[int]) -> list[dict]:
    out = []
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"):
        for n in ([2] if op == "send_recv" else sizes):
            out.append({"op": op, "scope": scope, "group_size": n, "dtype": "bf16",
                        "pieces": [{"max_bytes": None, "latency_s": latency_s * (1 if op == "send_recv" else 1 + n / 8),
                                    "bandwidth_bytes_per_s": busbw / _factor(op, n)}],
                        "quality": dict(QUALITY)})
    return out


def _base(name: str, peak: float, hbm: float, mem_bytes: float, dpn: int, launch_s: float, graph_s: float) -> dict:
    return {
        "schema_version": 1, "method_version": 1,
        "identity": {"name": name, "source": "datasheet", "device_type": "cuda", "device_name": name,
                     "devices_per_node": dpn, "nodes": 1, "memory_capacity_bytes": mem_bytes, "host": "synthetic",
                     "date": "2026-01-01T00:00:00Z", "command": "tests/planner_profiles.py", "versions": {},
                     "citations": ["NVIDIA H100 Tensor Core GPU datasheet (SXM5): 989.4 TFLOPS bf16 dense, "
                                   "3.35 TB/s, 80 GB, NVLink 900 GB/s; ConnectX-7 400 Gb/s"],
                     "raw_data": []},
        "compute": {"bf16": {"peak_flop_per_s": peak, "memory_bandwidth_bytes_per_s": hbm, "overhead_s": 4.0e-6,
                             "points": [], "quality": dict(QUALITY)}},
        "memory": {p: {"latency_s": 3.0e-6, "bandwidth_bytes_per_s": hbm, "quality": dict(QUALITY)}
                   for p in ("copy", "read", "write")},
        "overheads": {"eager_launch_s": launch_s, "launch_sync_s": 2 * launch_s, "sync_s": launch_s,
                      "graph_kernel_s": graph_s},
        "attention": {"bf16": {ph: {"latency_s": 5.0e-6, "flop_per_s": 0.6 * peak, "bytes_per_s": 0.8 * hbm,
                                    "quality": dict(QUALITY)} for ph in ("prefill", "decode")}},
        "collectives": [],
    }


def h100_like(inter_node_slowdown: float = 12.0, nodes_for_sizes: int = 8, intra: bool = True) -> dict:
    """8 x H100-like devices per node; inter-node collectives ``inter_node_slowdown`` x slower per byte."""
    d = _base("h100-like", 989.4e12, 3.35e12, 80.0e9, 8, 6.0e-6, 1.5e-6)
    if intra:
        d["collectives"] += _collectives(450.0e9, 8.0e-6, "intra_node", [2, 4, 8])
    sizes = [8 * k for k in range(2, nodes_for_sizes + 1)] + [2, 4]
    d["collectives"] += _collectives(450.0e9 / inter_node_slowdown, 8.0e-6 * max(1.0, inter_node_slowdown / 2),
                                     "inter_node", sorted(set(sizes)))
    return d


def gloo_cpu_like(devices_per_node: int = 8) -> dict:
    """A node whose compute is H100-like but whose collectives are gloo-CPU slow."""
    d = _base("slow-collectives", 989.4e12, 3.35e12, 80.0e9, devices_per_node, 6.0e-6, 1.5e-6)
    d["collectives"] += _collectives(1.0e9, 100.0e-6, "intra_node", [2, 4, 8])
    d["collectives"] += _collectives(0.5e9, 200.0e-6, "inter_node", [2, 4, 8, 16])
    return d


def scaled(d: dict, **identity) -> dict:
    out = copy.deepcopy(d)
    out["identity"].update(identity)
    return out
