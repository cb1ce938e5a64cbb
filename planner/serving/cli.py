"""``accelcal predict``: what one serving engine delivers for one layout and one load.

    $ accelcal predict --profile profiles/nvidia-h100.yaml --model llama3-8b --tp 1 --engine vllm \\
          --concurrency 16 --isl 1024 --osl 128
    $ accelcal predict --profile P --interconnect nvlink.yaml --model M.yaml --tp 4 --engine sglang \\
          --request-rate 2.5 --isl 2048 --osl 256 --num-requests 400 --weight-dtype fp8_e4m3 --format json
    $ accelcal predict ... --engine vllm --engine-arg token_budget=2048 --engine-arg max_seqs=64   # your flags
    $ accelcal predict ... --engine trtllm --engine-version 1.0.0rc3 --deployment aiconfigurator   # its recipe

Exit 0 with a prediction, 3 when the deployment is infeasible (the reason on stderr and in the JSON),
2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from accelcal.calibrate.compose import add_profile_arguments
from accelcal.progress import LOG_EVERY_S, StageProgress
from accelcal.units import count
from accelcal.vocab import FP8_SCALINGS, SERVING_DTYPES

from .deployment import DEPLOYMENTS
from .engine import EnginePreset, engine_names, release_range_notes, version_key
from .moe_op import add_moe_table_argument, load_moe_tables
from .step_cost import STEP_PARTS
from .workload import (LONG_SIMULATION_REQUESTS, MAX_REQUESTS, RANGE_MODES, REQUESTS_PER_CLIENT, ServingWorkload,
                       default_requests)


class _OneEngine(argparse.Action):
    """``--engine`` once: predict runs one engine (a second --engine replaced the first without a word)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) not in (None, values):  # the same one twice is still one engine
            parser.error(f"--engine given twice ({getattr(namespace, self.dest)}, {values}): predict runs one engine; "
                         f"accelcal plan --engine A --engine B compares several")
        setattr(namespace, self.dest, values)


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict TTFT / TPOT / tokens/s of a serving engine for one layout and load",
                       description="Simulate a serving engine (continuous batching, chunked prefill, paged KV) at a "
                                   "closed-loop concurrency or an open-loop request rate, every step costed from the "
                                   "profile.")
    add_profile_arguments(p, "device profile YAML (accelcal calibrate, or profiles/*.yaml)")
    add_moe_table_argument(p)
    p.add_argument("--model", required=True,
                   help="model preset name, a model config .yaml, or a Hugging Face config.json or its folder")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree of one engine replica (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages of one replica (default 1)")
    p.add_argument("--dp", type=int, default=1, help="replicas behind a load balancer sharing the load (default 1)")
    p.add_argument("--ep", type=int, default=1,
                   help="expert parallelism of a MoE model: 1 (experts TP-split, the default), equal to --tp (experts "
                        "spread over the replica's TP group: vLLM --enable-expert-parallel, SGLang --ep-size), a divisor "
                        "of --tp (experts over that many groups of the TP ranks, each TP-splitting its experts: "
                        "TensorRT-LLM moe_expert_parallel_size, SGLang --ep-size below --tp-size), or --tp "
                        "x k for k dividing --dp (experts spread over k replicas whose attention runs data-parallel: "
                        "SGLang --enable-dp-attention, vLLM --data-parallel-size with expert parallelism, TensorRT-LLM "
                        "enable_attention_dp; e.g. --tp 1 --dp 8 --ep 8)")
    p.add_argument("--moe-tp", type=int, default=0, metavar="N",
                   help="with --ep 1, split every expert N = --tp x k ways over k replicas whose attention runs "
                        "data-parallel, k dividing --dp (vLLM --data-parallel-size for a MoE model without "
                        "--enable-expert-parallel: its expert layers form one DP x TP tensor-parallel group; SGLang "
                        "--enable-dp-attention without --ep-size); default 0: each replica keeps every expert, split "
                        "--tp ways (replicas behind a load balancer)")
    p.add_argument("--devices-per-node", type=int, default=None, metavar="N",
                   help="devices per node, where node boundaries fall for TP, PP and EP groups (a group wider than a "
                        "node runs over --inter-node-profile); default: the profile's (its interconnect's)")
    p.add_argument("--engine", required=True, action=_OneEngine,
                   help=f"engine preset: {', '.join(engine_names())} (or a preset .yaml)")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset key for your deployment, e.g. token_budget=2048 (vLLM "
                        "--max-num-batched-tokens; 0 = no token budget), max_seqs=64, memory_fraction=0.85 "
                        "(vLLM --gpu-memory-utilization, SGLang --mem-fraction-static), "
                        "cuda_graph_sizes=[1,2,4,8], overlap_scheduling=false, tp_all_reduce_kernel= (empty: NCCL "
                        "for TP all-reduces instead of the engine's own kernel), host_step_s=0.002 "
                        "host_s_per_seq=3e-5 (the engine's host work per step and per scheduled request, seconds; "
                        "0 in every preset); repeatable; keys as in "
                        "planner/serving/presets/*.yaml")
    p.add_argument("--deployment", choices=DEPLOYMENTS, default="default",
                   help="engine settings recipe: the engine's defaults, or the configuration NVIDIA aiconfigurator's "
                        "generator writes (token budget, batch size, KV fraction, CUDA graphs, fp8 KV for fp8 "
                        "weights; planner/serving/deployment.py cites each rule)")
    p.add_argument("--engine-version", default="",
                   help="engine release: its own defaults that changed between releases (the preset's 'since' "
                        "entries, e.g. vLLM's async scheduling from 0.14.0) and the --deployment recipe's rules for "
                        "it; empty (default) = the newest documented")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", type=int, default=None,
                      help="closed loop: requests in flight, over all --dp replicas together (--dp 2 --concurrency "
                           "32: 16 each), as one benchmark client against the load balancer")
    load.add_argument("--request-rate", type=float, default=None,
                      help="open loop: Poisson arrivals, requests/s, over all --dp replicas together")
    p.add_argument("--isl", "--prompt-len", type=int, required=True,
                   help="input tokens per request (--prompt-len as in accelcal plan)")
    p.add_argument("--osl", "--output-len", type=int, required=True,
                   help="output tokens per request (--output-len as in accelcal plan)")
    p.add_argument("--num-requests", type=int, default=None,
                   help="requests in the run (default: 10 x concurrency, at least 100; open loop 200, at least 2 per "
                        "--dp replica)")
    add_range_arguments(p)
    p.add_argument("--warmup-requests", type=int, default=0,
                   help="requests run first and left out of the metrics (aiperf --warmup-request-count; "
                        "default 0)")
    p.add_argument("--warmup-drains", action="store_true",
                   help="the client waits for every warm-up response, then starts the measured requests as a "
                        "fresh burst (aiperf's default); without it they follow the warm-up in one loop")
    p.add_argument("--turnaround-ms", type=float, default=None,
                   help="client-to-engine delay bound per request, ms (default "
                        f"{ServingWorkload.turnaround_s * 1e3:g}: a client and server on one host; 0 = none)")
    p.add_argument("--client-gap-ms", type=float, default=0.0,
                   help="closed loop: the client's pause between a response's last token and its next request, ms "
                        "(outside TTFT; it changes how arrivals cluster; default 0)")
    p.add_argument("--weight-dtype", choices=SERVING_DTYPES, default=None,
                   help="weights and GEMMs (fp8_e4m3: 1 byte per weight, costed from the profile's fp8 GEMMs; "
                        "default: the model's own precision: a preset's weight_dtype (deepseek-v3: fp8_e4m3) or a "
                        "Hugging Face config's fp8 quantization_config, else bf16; routed experts stored weight-only "
                        "(gpt-oss mxfp4, kimi-k2.5 int4) keep that format whatever this says)")
    p.add_argument("--fp8-scaling", choices=FP8_SCALINGS, default=None,
                   help="fp8 weight scaling (block-scaled GEMMs are costed from the per-tensor measurements, noted; "
                        "default: block when the model's quantization config gives a weight_block_size)")
    p.add_argument("--kv-dtype", choices=SERVING_DTYPES, default=None,
                   help="KV cache dtype (fp8_e4m3: 1 byte per element, twice the sequences in the pool; default: "
                        "the model's, bf16 for the presets, or what --deployment sets)")
    p.add_argument("--method", choices=("simulate", "steady"), default="simulate",
                   help="step-level simulation (default) or the analytic steady state (closed loop only: "
                        "--concurrency; it leaves out the client's turnaround, gaps, warm-up and length spread)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or json: ttft_/tpot_/request_latency_ mean, p50, p90, p99 (_s), itl_mean_s, "
                        "output_tokens_per_s (per device, per user), requests_per_s, max_concurrent_sequences, "
                        "memory (bytes by part), decode_step, feasible, reason, notes, warnings (README lists all)")
    p.set_defaults(func=run)


def preset_changes(preset: EnginePreset) -> dict | None:
    """The keys ``preset`` (a user's file) sets differently from the shipped preset of its name; None when no shipped
    preset has that name."""
    from dataclasses import fields

    from .engine import _NOT_KEYS

    if preset.name not in engine_names():
        return None
    shipped = EnginePreset.from_name(preset.name)
    return {f.name: getattr(preset, f.name) for f in fields(EnginePreset)
            if f.name not in _NOT_KEYS and getattr(preset, f.name) != getattr(shipped, f.name)}


def _load_profiles(args):
    from accelcal.calibrate.profile import Profile

    from .predict import combine_profiles

    prof = Profile.load(args.profile, what="--profile")
    ic = Profile.load(args.interconnect, what="--interconnect") if args.interconnect else None
    inter = Profile.load(args.inter_node_profile, what="--inter-node-profile") if args.inter_node_profile else None
    return combine_profiles(prof, ic, inter)


def run(args: argparse.Namespace) -> int:
    from accelcal.models import ModelConfig

    from .deployment import apply_deployment
    from .engine import check_version
    from .predict import predict_serving, serving_dtypes
    from .step_cost import StepCostError

    if args.concurrency is not None and args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.isl is not None and args.isl < 1:
        raise ValueError(f"--isl must be >= 1 token, got {args.isl}")
    if args.osl is not None and args.osl < 1:
        raise ValueError(f"--osl must be >= 1 token, got {args.osl}")
    if args.warmup_drains and not args.warmup_requests:
        raise ValueError("--warmup-drains: there is no warm-up to drain; give --warmup-requests N (N >= 1) with it")
    engine = EnginePreset.resolve(args.engine)
    version = check_version(args.engine_version)
    model = ModelConfig.resolve(args.model)
    weight_dtype, kv_dtype, _, _ = serving_dtypes(model, args.weight_dtype, args.kv_dtype, args.fp8_scaling)
    preset = engine
    prof, inter, notes = _load_profiles(args)
    # the release's defaults, then the device's (the engine reads its memory and name at start-up), then a recipe's
    engine, kv_dtype, recipe_notes = apply_deployment(args.deployment, engine, version, args.isl, args.osl,
                                                      args.concurrency, weight_dtype, kv_dtype, profile=prof,
                                                      kv_dtype_given=args.kv_dtype is not None)
    recipe_notes[:0] = release_range_notes(preset, version)
    if not model.qk_norm:  # how an engine launches a q/k norm says nothing about a model without one
        recipe_notes = [n for n in recipe_notes if ": qk_norm_kernels = " not in n]
    overrides = parse_engine_args(args.engine_arg)
    try:
        engine = engine.with_overrides(overrides, "--engine-arg (this deployment)")
    except ValueError as exc:
        raise ValueError(f"--engine-arg: {exc}") from None
    tables = load_moe_tables(args.moe_table)
    if version:
        notes += [f"--moe-table {t.origin}: published for {t.engine} {t.engine_version}, while this prediction runs "
                  f"{t.engine} {version}: the op's time is {t.engine_version}'s" for t in tables
                  if t.engine == engine.name and version_key(t.engine_version)[:3] != version_key(version)[:3]]
    if args.method == "simulate" and args.concurrency is not None:
        sent = (args.num_requests or default_requests(args.concurrency)) + (args.warmup_requests or 0)
        if LONG_SIMULATION_REQUESTS < sent <= MAX_REQUESTS:  # above it the workload refuses the run, saying why
            print(f"accelcal predict: note: {sent} requests to simulate step by step"
                  + ("" if args.num_requests else f" ({REQUESTS_PER_CLIENT} per client at --concurrency "
                                                   f"{args.concurrency})")
                  + ", which may take minutes; --num-requests N simulates fewer, --method steady answers at once",
                  file=sys.stderr)
    # a long simulation (thousands of clients) shows a bar on a terminal after a few seconds; in a log (output
    # piped) a line every 20 s and a closing one, so a run of minutes is not silent, and a quick one adds nothing
    bar = StageProgress("predict", log_every_s=LOG_EVERY_S, quiet_below_s=LOG_EVERY_S)
    try:
        res = predict_serving(prof, model, engine, args.tp, args.pp, args.dp, args.concurrency, args.isl,
                              args.osl, args.request_rate, args.num_requests, args.weight_dtype, kv_dtype,
                              inter, args.method, args.range_ratio, args.fp8_scaling,
                              turnaround_s=None if args.turnaround_ms is None else args.turnaround_ms / 1e3,
                              client_gap_s=args.client_gap_ms / 1e3, warmup_requests=args.warmup_requests,
                              warmup_drains=args.warmup_drains, ep=args.ep, range_mode=args.range_mode,
                              moe_tp=args.moe_tp, devices_per_node=args.devices_per_node,
                              moe_tables=tables, progress=bar.counter("simulated requests"))
    except StepCostError as exc:
        msg = str(exc) + ("; " + "; ".join(notes) if notes else "")
        raise ValueError(msg) from None
    finally:
        bar.close()
    # the settings that ran: a release default or recipe rule an --engine-arg replaced says so after it
    over = "the preset's" + (" and any value the notes above give" if recipe_notes else "")
    ran = [f"--engine-arg {k}={getattr(engine, k)!r}: the value this run used, over {over}" for k in overrides]
    from accelcal.models.hf_config import hf_config_path

    # a config.json is read with assumptions (hf_config notes them into the model's source): show them
    read = [f"model {model.name}: {model.source}"] if hf_config_path(str(args.model)) is not None else []
    res.notes = read + notes + recipe_notes + ran + res.notes
    res.engine_settings = {"preset": engine.name, "version": version or "newest", "deployment": args.deployment,
                           "engine_args": {k: getattr(engine, k) for k in overrides},
                           "release_defaults": preset.release_defaults(version)}
    if str(args.engine).endswith((".yaml", ".yml")):
        # a preset file of the user's: which file, and what it changes from the shipped preset of its name
        changed = preset_changes(preset)
        res.engine_settings.update(preset_file=str(args.engine), preset_file_changes=changed)
        res.notes.insert(0, f"engine preset file {args.engine} (name {preset.name})" + (
            ": it differs from the shipped " + preset.name + " preset in " + ", ".join(f"{k}={v!r}" for k, v in
                                                                                  changed.items())
            if changed else (": the same keys as the shipped preset" if changed is not None else
                             ": no shipped preset has its name")))
    if args.format == "json":
        print(json.dumps(res.to_json(), indent=1, sort_keys=True))
    else:
        print(format_prediction(res), end="")
    if not res.feasible:
        print(f"accelcal predict: infeasible: {res.reason}", file=sys.stderr)
        return 3
    return 0


def _latency_row(mean_s: float, p50_s: float | None = None, p90_s: float | None = None,
                 p99_s: float | None = None) -> str:
    """'mean X ms   p50 Y ms   p90 Z ms   p99 W ms' in ms, or in s when a value reaches 10 s (an 88 s TTFT reads
    88.770 s, not 88769.70 ms); one unit per row so its figures compare at a glance."""
    named = (("mean", mean_s), ("p50", p50_s), ("p90", p90_s), ("p99", p99_s))
    vals = [v for _, v in named if v is not None]
    mul, unit, spec = (1.0, "s ", "10.3f") if max(vals) >= 10.0 else (1e3, "ms", "10.2f")
    return "   ".join(f"{name} {v * mul:{spec}} {unit}" for name, v in named if v is not None).rstrip()


def add_range_arguments(p: Any, mode_default: str | None = "around", prefix: str = "") -> None:
    """--range-ratio and --range-mode, one text for accelcal predict and plan --engine (``prefix`` before each help;
    ``mode_default`` None where an option given must be seen as given)."""
    p.add_argument("--range-ratio", type=float, default=None,
                   help=prefix + "the benchmark client's --random-range-ratio r: lengths uniform in x(1 - r) .. "
                        "x(1 + r) (--range-mode around, vllm bench serve) or x r .. x (--range-mode below); default: "
                        "fixed lengths (0 around, 1 below)")
    p.add_argument("--range-mode", choices=RANGE_MODES, default=mode_default,
                   help=prefix + "what --range-ratio means (default around): 'around' x(1 +- r) as vllm bench serve's "
                        "random dataset; 'below' x r .. x as SGLang's bench_serving and the benchmark_serving.py "
                        "copies InferenceMAX runs (there --isl/--osl are the longest lengths). Without --range-ratio "
                        "the lengths are fixed in either mode; SGLang bench_serving at its own defaults (r = 0, "
                        "lengths 1 .. x) is --range-ratio 0 --range-mode below")


def parse_engine_args(items: list[str]) -> dict:
    """``["token_budget=2048", "chunked_prefill=false"]`` -> {"token_budget": 2048, "chunked_prefill": False}
    (values read as YAML scalars or lists; the keys and types are checked by EnginePreset.with_overrides)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--engine-arg {item!r}: expected KEY=VALUE, e.g. token_budget=2048")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"--engine-arg {item!r}: cannot read the value {value!r}") from None
    return out


def _spread(w: dict) -> str:
    """' (lengths drawn: ...)' when the client's range ratio spreads them, else ''."""
    wl = ServingWorkload(isl=w["isl"], osl=w["osl"], concurrency=1, range_ratio=w.get("range_ratio"),
                         range_mode=w.get("range_mode", "around"))
    if wl.fixed_lengths:
        return ""
    (il, ih), (ol, oh) = wl.bounds(wl.isl), wl.bounds(wl.osl)
    return f" (uniform {il}..{ih} x {ol}..{oh}: --range-ratio {wl.range_ratio:g} {wl.range_mode})"


def format_prediction(res) -> str:
    lay = res.layout
    w = res.workload
    load = (f"concurrency {w['concurrency']}" if w["concurrency"] is not None
            else f"{w['request_rate_per_s']:g} requests/s")
    if w["concurrency"] is not None and w.get("client_gap_s"):
        load += f" (client gap {w['client_gap_s'] * 1e3:g} ms)"  # it moves the TTFT a reader compares
    ep = (f" EP{lay['ep']}" if lay.get("ep", 1) > 1 else "") + (f" MoE-TP{lay['moe_tp']}" if lay.get("moe_tp") else "")
    lines = [f"WARNING: {x}" for x in res.warnings]
    lines += [f"{res.engine}  TP{lay['tp']} PP{lay['pp']} DP{lay['dp']}{ep} ({count(lay['devices'], 'device')})  {load}  "
              f"isl {w['isl']} osl {w['osl']}{_spread(w)}"]
    i = res.inputs
    if i:
        # a composed profile's name already lists its inter-node part (device+fabric+inter-node)
        inter = i["inter_node_profile"]
        lines.append(f"  {i['model']} on {i['profile']}"
                     + (f" + {inter}" if inter and inter not in str(i["profile"]).split("+") else "")
                     + f"  (weights {i['weight_dtype']}"
                     + (f", routed experts {i['expert_weight_dtype']}" if i.get("expert_weight_dtype") else "")
                     + f", KV {i['kv_dtype']}; {i['method']})")
    if not res.feasible:
        lines.append(f"INFEASIBLE: {res.reason}")
        return "\n".join(lines) + "\n"
    m = res.metrics
    ms = 1e3
    lines += [
        f"  TTFT            {_latency_row(m.ttft_mean_s, m.ttft_p50_s, m.ttft_p90_s, m.ttft_p99_s)}",
        (f"  TPOT            {_latency_row(m.tpot_mean_s, m.tpot_p50_s, m.tpot_p90_s, m.tpot_p99_s)}"
         if w["osl"] > 1 else "  TPOT            n/a: one output token per request (--osl 1), no token after the first"),
        f"  ITL             {_latency_row(m.itl_mean_s)}" if w["osl"] > 1 else "  ITL             n/a (--osl 1)",
        f"  request latency mean {m.request_latency_mean_s:10.3f} s"
        + "".join(f"    {name} {v:10.3f} s" for name, v in (("p50", m.request_latency_p50_s),
                                                            ("p90", m.request_latency_p90_s),
                                                            ("p99", m.request_latency_p99_s)) if v is not None),
        f"  output tokens/s {m.output_tokens_per_s:10.1f}   per device {m.output_tokens_per_s_per_device:.1f}   "
        + (f"per user {m.output_tokens_per_s_per_user:.1f}" if w["osl"] > 1 else "per user n/a")
        + f"   (requests/s {m.requests_per_s:.3f})",
        f"  KV: {res.memory.get('kv_tokens', 0)} tokens ({res.memory.get('kv_blocks', 0)} blocks)"
        f"{' per replica' if lay['dp'] > 1 else ''}; at most {count(res.max_concurrent_sequences, 'sequence')} at once"
        f"{' in a replica' if lay['dp'] > 1 else ''}; {count(res.preemptions, 'preemption')}; "
        f"{res.steps_simulated} steps simulated",
    ]
    d = res.decode_step if w["osl"] > 1 else {}  # one token per request: the prefill makes it, nothing decodes
    if w["osl"] == 1:
        lines.append("  typical decode step: none (--osl 1: each request's one token comes from its prefill)")
    if d:
        lines.append(f"  typical decode step: batch {d.get('batch', '?')} at KV {d.get('kv_len_mean', '?')}: "
                     f"{d['total'] * ms:.3f} ms (ms of it: "
                     + ", ".join(f"{name} {d[k] * ms:.3f}" for k, name in STEP_PARTS.items() if k in d)
                     + f"; {'CUDA graph' if d['cuda_graphs'] else 'eager'}"
                     + ("; the engine's host work sets the step" if d.get("host_sets_step") else "") + ")"
                     + (f"; PP: the pass of its slowest micro-batch, {d['micro_batch_sequences']} sequences"
                        if d.get("micro_batch_sequences") else ""))
    lines.append(f"  prefill share of decode time: {res.prefill_share_of_decode_time:.1%}")
    for n in res.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines) + "\n"
