"""Plans from measured parts: device profile + interconnect profiles, provenance, and no silent zero latency."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate.compose import compose, missing_hint
from accelcal.calibrate.profile import Profile, ProfileError
from accelcal.cli import main
from accelcal.planner.cluster import Cluster
from accelcal.planner.search import NoFeasiblePlan, PlanOptions, plan
from accelcal.planner.workload import Workload

ROOT = Path(__file__).parent.parent
H200 = ROOT / "profiles" / "nvidia-h200.yaml"
NVS = ROOT / "profiles" / "interconnect" / "h100-nvswitch-8.yaml"
NVS4 = ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"  # small messages measured (4 of 8 GPUs)
PCIE = ROOT / "profiles" / "interconnect" / "pcie-rtx4090-8.yaml"  # a PCIe-only node (8 x RTX 4090, no NVLink)
IB = ROOT / "profiles" / "interconnect" / "h100-2x8-ib-ndr400.yaml"
DATASHEET = ROOT / "profiles" / "datasheet" / "h100-sxm.yaml"
FAST = PlanOptions(sp_threshold=False)


def _costs(res):
    return [(c.label, c.ttft_s, c.tpot_s, c.tokens_per_s_per_device) for c in res.ranked]


def test_composed_equals_one_combined_profile():
    dev, ic = Profile.load(H200), Profile.load(NVS)
    combined = yaml.safe_load(dev.to_yaml())
    combined["collectives"] = [c for c in combined["collectives"] if c["scope"] != "intra_node"] + \
        [c.to_dict() for c in ic.collectives]
    combined["identity"]["devices_per_node"] = ic.identity.devices_per_node  # a node with 8-rank intra_node entries
    one = Profile.from_dict(combined, "combined")
    w = Workload(prompt_len=1024, output_len=128, batch=4)
    a = plan("llama3-70b", Cluster.homogeneous(compose(dev, ic), devices_per_node=8), w, FAST)
    b = plan("llama3-70b", Cluster.homogeneous(one, devices_per_node=8), w, FAST)
    assert _costs(a) and _costs(a) == _costs(b)
    assert a.provenance[1].startswith("intra-node: h100-nvswitch-8 - published by https://github.com/NVIDIA/nccl-tests/issues/290")
    assert a.provenance[0].startswith(f"device: nvidia-h200 - measured on vm, {dev.identity.date}")


def test_nvswitch_keeps_tp_inside_the_node_and_pcie_shrinks_it(capsys):
    dev = Profile.load(H200)
    w = Workload(prompt_len=1024, output_len=128, batch=1)
    nvs = plan("llama3-70b", Cluster.homogeneous(compose(dev, Profile.load(NVS4)), devices_per_node=8), w, FAST).best
    assert nvs.tp > 1 and nvs.scopes["tp"] == "intra_node"  # 70B at batch 1 on 8 devices: TP, inside the node
    pcie = Profile.load(PCIE)
    # Measured sizes only: a prefill-size all-reduce (8 MiB) over 8 ranks costs several times more on PCIe.
    big = 8 << 20
    assert pcie.collective_time_s("all_reduce", big, 8, "intra_node").time_s > \
        5 * Profile.load(NVS4).collective_time_s("all_reduce", big, 4, "intra_node").time_s
    rows = []
    for slowdown in (1, 4, 16, 64, 256):
        best = plan("llama3-70b", Cluster.homogeneous(compose(dev, pcie.with_collective_scale(float(slowdown))),
                                                      devices_per_node=8), w, FAST).best
        rows.append((slowdown, best.tp, best.pp, best.dp, best.scopes["tp"], best.ttft_s, best.tpot_s))
    first, last = rows[0], rows[-1]
    assert first[1] > 1  # 70B does not fit one H200: TP >= 2 even on PCIe
    assert last[1] < first[1] and (last[2] > 1 or last[3] > 1)  # slower collectives: TP shrinks, PP/DP take over
    cross = next(r for r in rows if r[1] < first[1])
    with capsys.disabled():
        print(f"\nNVSwitch (h100-nvswitch-4of8): TP{nvs.tp} PP{nvs.pp} DP{nvs.dp}  TTFT {nvs.ttft_s * 1e3:.3g} ms  "
              f"TPOT {nvs.tpot_s * 1e3:.3g} ms (llama3-70b, batch 1, 8 x H200)")
        print("PCIe-only (pcie-rtx4090-8) collectives x slowdown -> best layout:")
        for s, tp, pp, dp, scope, ttft, tpot in rows:
            print(f"  x{s:<4} TP{tp} PP{pp} DP{dp} ({scope})  TTFT {ttft * 1e3:.3g} ms  TPOT {tpot * 1e3:.3g} ms")
        print(f"  crossover: TP{first[1]} -> TP{cross[1]} at collectives x{cross[0]} slower than the published PCIe log")


def test_interconnect_scope_must_match():
    with pytest.raises(ProfileError, match=r"--interconnect h100-2x8-ib-ndr400: has no intra_node collectives "
                                           r"\(it has \['inter_node'\]\), so it is passed as --inter-node-profile"):
        compose(Profile.load(H200), interconnect=Profile.load(IB))
    # and the other way round: a one-host log given as the link between nodes belongs to --interconnect
    with pytest.raises(ProfileError, match=r"--inter-node-profile h100-nvswitch-8: has no inter_node collectives "
                                           r"\(it has \['intra_node'\]\), so it is passed as --interconnect \("):
        compose(Profile.load(H200), interconnect=Profile.load(NVS), inter_node=Profile.load(NVS))
    with pytest.raises(ProfileError, match="is an interconnect profile"):
        compose(Profile.load(NVS), interconnect=Profile.load(NVS))


def test_missing_collective_names_shipped_profiles():
    hint = missing_hint("all_reduce", "inter_node")
    assert "h100-2x8-ib-ndr400.yaml" in hint and "--inter-node-profile" in hint
    # no shipped log has send_recv, but the profiles whose all_reduce answers it (PP hand-offs) are named as such
    hint = missing_hint("send_recv", "inter_node")
    assert "h100-2x8-ib-ndr400.yaml (NVIDIA H100 80GB HBM3; send_recv not measured, answered by its all_reduce: " \
           "all_reduce inter_node measured for group size(s) [16]" in hint
    assert "no shipped interconnect profile has all_to_all (intra_node)" in missing_hint("all_to_all", "intra_node")
    # the library's group sizes (a log of 4 ranks) apart from the engines' own kernels' published tables
    assert ("h100-nvswitch-4of8.yaml (NVIDIA H100 80GB HBM3; all_reduce intra_node measured for group size(s) [4], "
            "[2, 4, 8] for the engines' own kernels (trtllm_custom_ar, vllm_custom_ar)") in missing_hint("all_reduce",
                                                                                                "intra_node")
    with pytest.raises(NoFeasiblePlan) as exc:
        plan("llama3-70b", Cluster.homogeneous(Profile.load(H200), devices_per_node=8), Workload(batch=1), FAST)
    assert "--interconnect profiles/interconnect/" in str(exc.value)
    tp = [r.reason for r in exc.value.rejections if r.tp > 1 and r.constraint == "measurement"]
    assert tp and "all_reduce over" in tp[0] and "h100-nvswitch-8.yaml" in tp[0] and "--interconnect" in tp[0]


def test_datasheet_zero_latency_is_refused_unless_asked(capsys):
    ds = Profile.load(DATASHEET)
    with pytest.raises(Exception) as exc:
        plan("llama3-70b", Cluster.homogeneous(ds, devices_per_node=8), Workload(batch=1), FAST)
    assert "gives no latency" in str(exc.value) and "--assume-zero-latency" in str(exc.value)
    assert main(["plan", "--profile", str(DATASHEET), "--model", "llama3-70b", "--devices-per-node", "8",
                 "--batch", "1", "--assume-zero-latency", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING: ASSUMED ZERO LATENCY")
    assert main(["plan", "--profile", str(DATASHEET), "--model", "llama3-70b", "--devices-per-node", "8",
                 "--batch", "1", "--assume-zero-latency", "--format", "json"]) == 0
    assert "ASSUMED ZERO LATENCY" in capsys.readouterr().out


def test_cli_examples_two_nodes_and_provenance(capsys):
    assert main(["plan", "--profile", str(H200), "--interconnect", str(NVS), "--inter-node-profile", str(IB),
                 "--model", "llama3.1-405b", "--nodes", "2", "--devices-per-node", "8", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "intra-node: h100-nvswitch-8" in out and "inter-node: h100-2x8-ib-ndr400" in out
    assert "Recommended:" in out


def test_measured_multi_device_profile_still_works_alone():
    d = yaml.safe_load(Profile.load(H200).to_yaml())
    d["collectives"] = [c.to_dict() for c in Profile.load(NVS).collectives]
    d["identity"]["name"] = "h200-with-own-collectives"
    d["identity"]["devices_per_node"] = 8  # as a calibration of all 8 GPUs records it
    res = plan("llama3-70b", Cluster.homogeneous(Profile.from_dict(copy.deepcopy(d), "x"), devices_per_node=8),
               Workload(batch=1), FAST)
    assert res.best.tp > 1 and res.provenance == [
        f"device + {len(d['collectives'])} collective fit(s): h200-with-own-collectives - measured on vm, "
        f"{d['identity']['date']}"]
    alone = plan("llama3-8b", Cluster.homogeneous(Profile.load(H200)), Workload(batch=1), FAST)
    assert alone.provenance[0].startswith("device (no collectives measured): nvidia-h200 - measured on vm")


def test_more_devices_per_node_than_the_fabric_describes_is_noted():
    from accelcal.planner.cluster import Cluster
    from accelcal.planner.search import PlanOptions, plan
    from accelcal.planner.workload import Workload
    from accelcal.calibrate.compose import compose
    from accelcal.calibrate.profile import Profile

    root = Path(__file__).resolve().parents[1] / "profiles"
    prof = compose(Profile.load(root / "nvidia-h100.yaml"), Profile.load(root / "interconnect" / "h100-nvswitch-4of8.yaml"))
    w = Workload(prompt_len=512, output_len=64, batch=4)
    wide = plan("llama3-8b", Cluster.homogeneous(prof, nodes=1, devices_per_node=16), w, PlanOptions())
    assert any(n.startswith("16 devices per node, but the profile's intra-node collectives come from nodes of 8")
               for n in wide.groups[0].notes)
    own = plan("llama3-8b", Cluster.homogeneous(prof, nodes=1), w, PlanOptions())
    assert not any("devices per node, but" in n for n in own.groups[0].notes)


def test_predict_json_names_the_profiles_it_composed(capsys):
    import json

    h100 = ROOT / "profiles" / "nvidia-h100.yaml"
    assert main(["predict", "--profile", str(h100), "--interconnect", str(NVS4), "--inter-node-profile", str(IB),
                 "--model", "llama3.1-70b", "--tp", "16", "--engine", "vllm", "--concurrency", "2", "--isl", "128",
                 "--osl", "4", "--format", "json"]) == 0
    inputs = json.loads(capsys.readouterr().out)["inputs"]
    assert inputs["inter_node_profile"] == "h100-2x8-ib-ndr400"
    assert inputs["profile"] == "nvidia-h100+h100-nvswitch-4of8+h100-2x8-ib-ndr400"
    # the table's header names each part once
    assert main(["predict", "--profile", str(h100), "--interconnect", str(NVS4), "--inter-node-profile", str(IB),
                 "--model", "llama3.1-70b", "--tp", "16", "--engine", "vllm", "--concurrency", "2", "--isl", "128",
                 "--osl", "4"]) == 0
    out = capsys.readouterr().out
    assert "llama3.1-70b on nvidia-h100+h100-nvswitch-4of8+h100-2x8-ib-ndr400  (weights" in out


def test_predict_and_plan_name_collectives_extrapolated_beyond_the_fabric_measured(capsys):
    import json

    h100 = ROOT / "profiles" / "nvidia-h100.yaml"
    gcp = ROOT / "profiles" / "interconnect" / "gcp-a3mega-h100-2x8.yaml"  # measured at 16 ranks over 2 nodes
    args = ["--profile", str(h100), "--interconnect", str(NVS4), "--inter-node-profile", str(gcp),
            "--model", "llama3-8b", "--engine", "vllm", "--isl", "256", "--osl", "8"]
    for method in ("simulate", "steady"):
        assert main(["predict", *args, "--tp", "32", "--concurrency", "4", "--method", method, "--format", "json"]) == 0
        notes = json.loads(capsys.readouterr().out)["notes"]
        said = [n for n in notes if n.startswith("collective answered beyond the profile's measurements")]
        assert said and "extrapolation from group 16" in said[0] and "inter_node,16" in said[0]
    # within what was measured (TP 4 on the 4-GPU NVSwitch log): nothing to say
    assert main(["predict", *args, "--tp", "4", "--concurrency", "4", "--format", "json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert not any("group 16" in n for n in notes)


def test_a_collective_scaled_across_more_nodes_is_never_faster_than_inside_one():
    # the IB log is 2 nodes x 8 (NVLink inside each node); scaled down to 4 ranks on 4 nodes its ring model would
    # beat the NVSwitch node's own 4-rank all-reduce: the inter-node answer is raised to the intra-node one
    h100 = Profile.load(ROOT / "profiles" / "nvidia-h100.yaml")
    p = compose(h100, Profile.load(NVS4), Profile.load(IB))
    for nbytes in (16384, 1 << 20, 64 << 20):
        local = p.collective_time_s("all_reduce", nbytes, 4, "intra_node")
        net = p.collective_time_s("all_reduce", nbytes, 4, "inter_node")
        assert net.time_s >= local.time_s
        if "intra-node-floor" in net.flags:
            assert net.time_s == local.time_s and "a network is not faster than the node's own fabric" in net.detail
    # a measured inter-node entry (16 ranks, as logged) stands as measured
    measured = p.collective_time_s("all_reduce", 1 << 20, 16, "inter_node")
    assert not measured.extrapolated and "intra-node-floor" not in measured.flags
    assert any("intra-node-floor" in p.collective_time_s("all_reduce", b, 4, "inter_node").flags
               for b in (16384, 1 << 20, 64 << 20))
