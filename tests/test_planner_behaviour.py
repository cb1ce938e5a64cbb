"""Planner behaviour: the accelerator-notes guidelines as consequences of profile numbers."""

from __future__ import annotations

import json
import math

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.planner.cluster import Cluster, DeviceGroup
from accelcal.planner.search import PlanOptions, plan
from accelcal.planner.report import to_json
from accelcal.planner.workload import Workload

from planner_profiles import gloo_cpu_like, h100_like

W = Workload(prompt_len=1024, output_len=256, batch=8)


def _h100(slowdown: float = 12.0) -> Profile:
    return Profile.from_dict(h100_like(inter_node_slowdown=slowdown))


def test_tp_stays_inside_node_when_inter_node_is_10x_slower():
    res = plan("llama3.1-405b", Cluster.homogeneous(_h100(10.0), nodes=2), W, PlanOptions(objective="latency"))
    assert res.best.scopes["tp"] == "intra_node"
    assert res.best.tp <= 8 and res.best.tp * res.best.pp == 16  # needs both nodes for memory
    spanning = [c for c in res.ranked if c.scopes["tp"] == "inter_node"]
    assert spanning, "TP16 across nodes must be a costed alternative"
    assert spanning[0].request_latency_s > res.best.request_latency_s
    assert any(line.startswith("TP kept inside a node") and "collectives[all_reduce,inter_node," in line
               for line in res.best.why)
    # with equal intra/inter speeds, TP may span nodes (and here it wins: weight reads split 16 ways)
    eq = plan("llama3.1-405b", Cluster.homogeneous(_h100(1.0), nodes=2), W, PlanOptions(objective="latency"))
    assert eq.best.scopes["tp"] == "inter_node" and eq.best.tp == 16


def test_slow_collectives_favour_tp1_with_dp_in_decode():
    res = plan("llama3-8b", Cluster.homogeneous(Profile.from_dict(gloo_cpu_like())),
               Workload(prompt_len=512, output_len=256, batch=8))
    assert (res.best.tp, res.best.pp, res.best.dp) == (1, 1, 8)
    tp_plans = [c for c in res.ranked if c.tp > 1]
    assert tp_plans and min(c.tpot_s for c in tp_plans) > res.best.tpot_s
    assert any("TP1" in line and "collectives cost" in line for line in res.best.why)


def test_fast_all_reduce_70b_small_batch_decode_favours_tp():
    res = plan("llama3-70b", Cluster.homogeneous(_h100()), Workload(prompt_len=512, output_len=256, batch=1))
    assert res.best.tp == 8 and res.best.pp == 1
    pp_plans = [c for c in res.ranked if c.pp > 1]
    assert pp_plans and min(c.tpot_s for c in pp_plans) > res.best.tpot_s
    assert any(line.startswith("TP8") for line in res.best.why)


def test_model_that_does_not_fit_gets_exactly_the_split_memory_requires():
    res = plan("llama3-70b", Cluster.homogeneous(_h100()), Workload(prompt_len=512, output_len=256, batch=1),
               PlanOptions(objective="throughput"))
    need = min(c.tp * c.pp for c in res.ranked)
    assert res.best.tp * res.best.pp == need == 2  # 141 GB of weights, 72 GB allowed per device
    mem = [r for r in res.rejected if r.constraint == "memory" and r.tp * r.pp < need]
    assert mem and all(r.tp * r.pp == 1 for r in mem)
    one = next(r for r in mem if r.sp == 1)
    assert "141.11 GB" in one.reason and "> limit 0.9 x 80 GB = 72 GB" in one.reason and "over by" in one.reason


def test_sp_only_above_the_computed_prompt_length_and_never_in_decode():
    cluster = Cluster.homogeneous(_h100(), nodes=2)
    base = plan("llama3-8b", cluster, Workload(prompt_len=512, output_len=256, batch=8))
    th = base.sp_threshold
    assert th["prompt_len"] and th["sp"] == 2, th
    L = th["prompt_len"]
    key = (th["tp"], th["pp"])

    def pair(res):
        same = {c.sp: c for c in res.ranked if (c.tp, c.pp, c.ep) == (*key, 1)}
        return same[1], same[2]

    short = plan("llama3-8b", cluster, Workload(prompt_len=L - 1, output_len=256, batch=8))
    no_sp, with_sp = pair(short)
    assert with_sp.ttft_s >= no_sp.ttft_s and short.best.sp == 1
    long = plan("llama3-8b", cluster, Workload(prompt_len=L, output_len=256, batch=8))
    no_sp, with_sp = pair(long)
    assert with_sp.ttft_s < no_sp.ttft_s
    assert long.ranked.index(with_sp) < long.ranked.index(no_sp)
    for c in long.ranked:
        assert not any(n.name.startswith("sp_") for n in c.decode.layer.nodes)
        assert any(n.name.startswith("sp_") for n in c.prefill.layer.nodes) == (c.sp > 1)


def test_moe_ep_groups_stay_inside_a_node_when_inter_node_all_to_all_is_slower():
    slow = plan("mixtral-8x7b", Cluster.homogeneous(_h100(10.0), nodes=2), W)
    ep = [c for c in slow.ranked if c.ep > 1]
    assert ep and ep[0].scopes["ep"] == "intra_node"
    assert any(c.scopes["ep"] == "inter_node" for c in ep), "cross-node EP must be costed, not excluded"
    fast = plan("mixtral-8x7b", Cluster.homogeneous(_h100(1.0), nodes=2), W)
    assert [c for c in fast.ranked if c.ep > 1][0].scopes["ep"] == "inter_node"


@pytest.mark.parametrize("model,nodes", [("llama3-70b", 1), ("mixtral-8x7b", 2)])
def test_doubling_every_bandwidth_never_makes_a_plan_slower(model, nodes):
    p = _h100()
    a = plan(model, Cluster.homogeneous(p, nodes=nodes), W)
    b = plan(model, Cluster.homogeneous(p.with_bandwidth_scale(2.0), nodes=nodes), W)
    fast = {(c.tp, c.pp, c.ep, c.sp): c for c in b.ranked}
    assert set(fast) == {(c.tp, c.pp, c.ep, c.sp) for c in a.ranked}
    for c in a.ranked:
        f = fast[(c.tp, c.pp, c.ep, c.sp)]
        assert f.ttft_s <= c.ttft_s * (1 + 1e-12) and f.tpot_s <= c.tpot_s * (1 + 1e-12), c.label
    assert b.best.request_latency_s <= a.best.request_latency_s


def test_costs_are_deterministic():
    runs = [json.dumps(to_json(plan("deepseek-moe", Cluster.homogeneous(_h100(), nodes=2), W), top=50),
                       sort_keys=True) for _ in range(2)]
    assert runs[0] == runs[1]


def test_heterogeneous_cluster_dp_spans_device_types():
    h = _h100()
    small = Profile.from_dict(h100_like()).with_bandwidth_scale(0.5)
    cluster = Cluster([DeviceGroup("fast", h, nodes=1), DeviceGroup("slow", small, nodes=1, devices_per_node=4)])
    res = plan("llama3-8b", cluster, W)
    assert [g.group for g in res.groups] == ["fast", "slow"]
    for g in res.groups:  # TP/PP stay inside one group
        assert all(c.devices <= g.devices for c in g.ranked)
    comb = res.combined()
    assert comb["devices"] == sum(g.ranked[0].devices for g in res.groups)
    assert math.isclose(comb["tokens_per_s"], sum(g.ranked[0].tokens_per_s for g in res.groups))
    assert comb["tpot_s_worst"] == max(g.ranked[0].tpot_s for g in res.groups)


def test_when_no_plan_meets_the_targets_the_closest_ranks_first():
    import dataclasses

    w = dataclasses.replace(W, ttft_s=1e-6)  # no layout prefills 1024 tokens in a microsecond
    res = plan("llama3-8b", Cluster.homogeneous(_h100(), nodes=1), w, PlanOptions(objective="throughput"))
    ranked = res.groups[0].ranked
    assert all(c.misses for c in ranked)
    factors = [c.miss_factor for c in ranked]
    assert factors == sorted(factors) and factors[0] == pytest.approx(min(c.ttft_s for c in ranked) / 1e-6)
    assert res.best.ttft_s == min(c.ttft_s for c in ranked)  # not the layout with the most throughput
    assert any(f"the closest ({ranked[0].label})" in n for n in res.groups[0].notes)


def test_auto_objective_ranks_by_throughput_once_any_target_is_given():
    import dataclasses

    cluster = Cluster.homogeneous(_h100(), nodes=1)
    assert plan("llama3-8b", cluster, W, PlanOptions()).groups[0].objective == "latency"
    for target in ({"ttft_s": 10.0}, {"tpot_s": 1.0}, {"request_rate_per_s": 0.5}):
        g = plan("llama3-8b", cluster, dataclasses.replace(W, **target), PlanOptions()).groups[0]
        assert g.objective == "throughput", target
        meeting = [c for c in g.ranked if not c.misses]
        assert [c.tokens_per_s_per_device for c in meeting] == sorted(
            (c.tokens_per_s_per_device for c in meeting), reverse=True)
