"""Regenerates ../calibrate/good_measured.yaml and the bad profiles beside this file.

    python tests/data/bad_profiles/generate.py
"""
import copy, yaml, os
from accelcal.calibrate.synthetic import synth_kernels, synth_collectives, synth_env
from accelcal.calibrate.fit import fit_profile
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
p = fit_profile(synth_kernels(), synth_collectives(), synth_env(), "synthetic test data (calibrate.synthetic)")
# keep the file small: a few GEMM points per dtype is enough for loader tests
for e in p.compute.values():
    e.points = e.points[:6]
p.save(f"{root}/calibrate/good_measured.yaml")
good = yaml.safe_load(open(f"{root}/calibrate/good_measured.yaml"))
ds = yaml.safe_load(open(os.path.join(root, "..", "..", "profiles", "datasheet", "h100-sxm.yaml")))

cases = {}
def case(name, expect, base=good):
    def deco(fn):
        d = copy.deepcopy(base)
        r = fn(d)
        cases[name] = (expect, r if isinstance(r, str) else yaml.safe_dump(d, sort_keys=False))
        return fn
    return deco

@case("unknown_top_key", "(top level): unknown key(s) ['notes']")
def _(d): d["notes"] = "hello"
@case("missing_identity", "(top level): missing required key(s) ['identity']")
def _(d): del d["identity"]
@case("schema_version_2", "schema_version: unknown schema version 2")
def _(d): d["schema_version"] = 2
@case("number_as_string", "memory.copy.bandwidth_bytes_per_s: expected a number, got the string '1e9'")
def _(d):
    d["memory"]["copy"]["bandwidth_bytes_per_s"] = "1e9"
    return yaml.safe_dump(d, sort_keys=False).replace("'1e9'", "1e9")
@case("nan_peak", "compute.fp32.peak_flop_per_s: expected a finite number, got nan")
def _(d): d["compute"]["fp32"]["peak_flop_per_s"] = float("nan")
@case("inf_latency", "memory.read.latency_s: expected a finite number, got inf")
def _(d): d["memory"]["read"]["latency_s"] = float("inf")
@case("negative_latency", "collectives[0].pieces[0].latency_s: expected >= 0")
def _(d): d["collectives"][0]["pieces"][0]["latency_s"] = -1e-6
@case("bandwidth_unit_slip", "memory.write.bandwidth_bytes_per_s: 1.2e+19 is above the plausible ceiling 1e+14")
def _(d): d["memory"]["write"]["bandwidth_bytes_per_s"] = 1.2e19
@case("flops_unit_slip", "compute.bf16.peak_flop_per_s: 8e+20 is above the plausible ceiling 1e+17")
def _(d): d["compute"]["bf16"]["peak_flop_per_s"] = 8e20
@case("latency_hours", "overheads.eager_launch_s: 3600 is above the plausible ceiling 10")
def _(d): d["overheads"]["eager_launch_s"] = 3600.0
@case("int_as_word", "identity.devices_per_node: expected an integer, got str 'eight'")
def _(d): d["identity"]["devices_per_node"] = "eight"
@case("unknown_source", "identity.source: expected one of ['measured', 'datasheet'], got 'simulated'")
def _(d): d["identity"]["source"] = "simulated"
@case("datasheet_without_citations", "identity.citations: a datasheet profile must cite", base=ds)
def _(d): d["identity"]["citations"] = []
@case("last_piece_bounded", "collectives[1].pieces[1].max_bytes: the last piece must have max_bytes: null")
def _(d): d["collectives"][1]["pieces"][-1]["max_bytes"] = 1e9
@case("duplicate_collective", "collectives[2]: duplicate entry for (op, scope, group_size, kernel)")
def _(d): d["collectives"].append(copy.deepcopy(d["collectives"][0]))
@case("unknown_dtype", "compute: expected one of ['fp32', 'tf32', 'bf16', 'fp16', 'fp8_e4m3'], got 'fp64'")
def _(d): d["compute"]["fp64"] = d["compute"].pop("fp32")
@case("short_point", "compute.fp32.points[2]: expected [m, n, k, time_s] (4 numbers)")
def _(d): d["compute"]["fp32"]["points"][2] = d["compute"]["fp32"]["points"][2][:3]
@case("quality_unknown_key", "memory.copy.quality: unknown key(s) ['r2']")
def _(d): d["memory"]["copy"]["quality"]["r2"] = 0.99
@case("converged_string", "compute.fp32.quality.converged: expected true/false, got 'yes'")
def _(d): d["compute"]["fp32"]["quality"]["converged"] = "yes"
@case("measured_null_latency", "memory.copy.latency_s: expected a number, got null")
def _(d): d["memory"]["copy"]["latency_s"] = None
@case("empty_file", "(top level): the file is empty")
def _(d): return ""
@case("not_yaml", "not valid YAML")
def _(d): return "schema_version: 1\nidentity: {name: [unclosed\n"
@case("range_inverted", "collectives[0].quality: range_min (1e+08) > range_max (1024)")
def _(d): d["collectives"][0]["quality"].update(range_min=1e8, range_max=1024.0)
@case("pieces_descending", "collectives[1].pieces: max_bytes must ascend")
def _(d):
    pcs = d["collectives"][1]["pieces"]
    pcs.insert(1, dict(pcs[0], max_bytes=1000.0))
@case("unknown_memory_pattern", "memory: unknown key(s) ['stream']")
def _(d): d["memory"]["stream"] = d["memory"]["copy"]
@case("top_level_list", "(top level): expected a mapping of profile sections (schema_version, identity, compute, ...), got list")
def _(d): return "- 1\n- 2\n"
@case("missing_quality_measured", "compute.bf16.quality: missing; required for measured profiles")
def _(d): del d["compute"]["bf16"]["quality"]

for f in [x for x in os.listdir(f"{root}/bad_profiles") if x.endswith(".yaml")]:
    os.unlink(f"{root}/bad_profiles/{f}")
for name, (expect, text) in cases.items():
    with open(f"{root}/bad_profiles/{name}.yaml", "w") as fh:
        fh.write(f"# expect: {expect}\n" + text)
print(len(cases))
