"""``accelcal plan``: recommend TP/PP/DP/EP/SP layouts from a profile.

    $ accelcal plan --profile profiles/datasheet/h100-sxm.yaml --model llama3-70b
    $ accelcal plan --profile node.yaml --inter-node-profile ib.yaml --model llama3.1-405b \\
          --nodes 8 --prompt-len 4096 --output-len 512 --batch 16 --tpot 0.05 --format json
    $ accelcal plan --profile h100.yaml --extra-group a100.yaml:2 --model llama3-8b   # DP across device types
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from accelcal.calibrate.compose import add_profile_arguments, plan_profiles, require_device_profile
from accelcal.exitcodes import EXIT_INFEASIBLE, EXIT_OK, EXIT_TARGETS_MISSED
from accelcal.models import preset_names
from accelcal.models.implementation import DEFAULT_IMPLEMENTATION, implementation_names
from accelcal.output import add_format_option
from accelcal.units import fmt_time_s
from accelcal.vocab import SERVING_DTYPES

from .serving.cli import add_range_arguments
from .serving.moe_op import add_moe_table_argument, load_moe_tables


DTYPE_PREFERENCE = ("bf16", "fp16", "fp32", "tf32", "fp8_e4m3")
"""The dtypes --dtype plans in, in the order plan picks one when the profile lacks the model's."""


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="rank parallel layouts for a model on a profiled cluster",
                       description="Enumerate TP x PP x DP (x EP for MoE, SP for prefill), cost each layer DAG "
                                   "from the profile, and rank the layouts with the reasons. Exit 3 when no layout "
                                   "fits, 4 when layouts fit but none meets --ttft/--tpot/--request-rate.")
    add_profile_arguments(p, "profile YAML of one node (accelcal calibrate or profiles/datasheet/)")
    add_moe_table_argument(p)
    p.add_argument("--assume-zero-latency", action="store_true", default=None,
                   help="cost collectives whose latency the profile does not give (datasheet priors) at 0 s instead "
                        "of rejecting the layouts that need them; every output then says so (layer-level plan only: "
                        "refused with --engine, which always costs such latencies at 0 s and warns)")
    p.add_argument("--model", default="llama3-8b",
                   help=f"preset ({', '.join(preset_names())}), a model config .yaml, or a Hugging Face "
                        f"config.json or its folder (default: llama3-8b)")
    p.add_argument("--dtype", default=None,
                   help=f"weight/KV dtype to plan in, one the profile has compute data for ({', '.join(DTYPE_PREFERENCE)}; "
                        f"accelcal show lists a profile's) (default: the model's, or the profile's first of those if "
                        "it lacks that; "
                        "a note says when the profile runs fp32 GEMMs much faster than the model's 16-bit dtype, as on "
                        "a CPU without native bf16 units)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default: 1)")
    p.add_argument("--devices-per-node", type=int, default=None,
                   help="devices per node (default: the profile's identity.devices_per_node)")
    p.add_argument("--extra-group", action="append", default=None,
                   metavar="PROFILE:NODES[:DEVICES]",
                   help="another device type joined by DP (repeatable); TP/PP stay inside each group")
    p.add_argument("--prompt-len", "--isl", type=int, default=2048,
                   help="prompt tokens per request (default: 2048; --isl as in accelcal predict)")
    p.add_argument("--output-len", "--osl", type=int, default=256,
                   help="generated tokens per request (default: 256; --osl as in accelcal predict)")
    p.add_argument("--batch", type=int, default=None,
                   help="sequences decoded together per replica (default: 8)")
    p.add_argument("--ttft", type=float, default=None, help="time-to-first-token target, seconds")
    p.add_argument("--tpot", type=float, default=None, help="time-per-output-token target, seconds")
    p.add_argument("--request-rate", type=float, default=None, help="offered load, requests/s for the cluster")
    p.add_argument("--cuda-graphs", action="store_true", default=None,
                   help="cost launches as CUDA-graph replay instead of eager")
    p.add_argument("--implementation", choices=implementation_names(), default=None,
                   help="how the layer is written, which sets kernels launched per norm/rotary/activation/MoE "
                        "routing (models/presets/implementations): fused = a serving engine's fused kernels "
                        "(default), torch-eager = plain PyTorch eager, as accelcal validate runs it")
    p.add_argument("--objective", choices=("auto", "latency", "throughput"), default=None,
                   help="rank by request latency or tokens/s per device; auto (the default) = throughput when a "
                        "--ttft, --tpot or --request-rate target is given, else latency")
    p.add_argument("--max-layouts", type=int, default=None,
                   help="refuse a search costing more layouts than this per device group (default: 200000)")
    p.add_argument("--memory-utilization", type=float, default=None,
                   help="fraction of device memory a plan may use (default: 0.9)")
    add_format_option(p)
    p.add_argument("--top", type=int, default=10, help="plans to list (default: 10)")
    p.add_argument("--export-dir", default=None,
                   help="write the best plan's DAGs (JSON, DOT) and a Chrome/Perfetto trace here")
    serving = p.add_argument_group("serving engines (accelcal.planner.serving.search): with --engine, search "
                                   "layout x concurrency for the most output tokens/s per device meeting --ttft/--tpot")
    serving.add_argument("--engine", action="append", default=[],
                         help="engine preset (vllm, sglang, trtllm, static; repeatable or comma-separated): search "
                              "layout x concurrency with the engine's own batching and memory rules; the layer-level "
                              "options (" + ", ".join(f"--{n.replace('_', '-')}" for n in PLANNER_ONLY)
                              + ") are refused with it")
    serving.add_argument("--concurrency", default=None,
                         help=f"total concurrencies to sweep, comma-separated (default: {SWEEP})")
    serving.add_argument("--target-stat", choices=("mean", "p90", "p99"), default=None,
                         help="statistic of TTFT/TPOT the targets bound (default mean; p90/p99 re-checked by simulation)")
    serving.add_argument("--weight-dtype", choices=SERVING_DTYPES, default=None,
                         help="serving: weight dtype (default: the model's)")
    serving.add_argument("--kv-dtype", choices=SERVING_DTYPES, default=None,
                         help="serving: KV cache dtype (default: the model's, bf16 for the presets)")
    serving.add_argument("--plot", default=None, help="serving: write the Pareto front as a PNG file here")
    add_range_arguments(serving, mode_default=None, prefix="serving: ")
    serving.add_argument("--engine-version", default=None, metavar="RELEASE",
                         help="serving: the release of the one --engine searched (e.g. 0.12.0): its documented "
                              "defaults, as accelcal predict --engine-version takes them (default: the newest)")
    serving.add_argument("--engine-arg", action="append", default=None, metavar="KEY=VALUE",
                         help="serving: override one engine preset key for every --engine searched, as accelcal "
                              "predict takes it (e.g. max_seqs=64, token_budget=2048); repeatable")
    p.set_defaults(func=run)


def parse_extra_group(spec: str) -> tuple[str, list[int]]:
    """``PROFILE:NODES[:DEVICES]`` -> (profile path, [nodes] or [nodes, devices per node]), each number >= 1."""
    head, sep, last = spec.rpartition(":")
    if not sep:
        raise ValueError(f"--extra-group {spec!r}: expected PROFILE:NODES[:DEVICES], e.g. a100.yaml:2 or a100.yaml:2:8")
    fields = [last]
    path = head
    h2, sep2, mid = head.rpartition(":")
    if sep2 and mid.strip().lstrip("+-").isdigit():
        path, fields = h2, [mid, last]
    if not path.strip():
        raise ValueError(f"--extra-group {spec!r}: the PROFILE before ':NODES' is empty; expected "
                         f"PROFILE:NODES[:DEVICES]")
    if len(fields) == 2 and path.rpartition(":")[2].strip().lstrip("+-").isdigit():
        raise ValueError(f"--extra-group {spec!r}: more than two numbers after the profile; expected "
                         f"PROFILE:NODES[:DEVICES]")
    nums = []
    for what, text in zip(("NODES", "DEVICES"), fields):
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"--extra-group {spec!r}: {what} must be an integer >= 1, got {text!r}") from None
        if n < 1:
            raise ValueError(f"--extra-group {spec!r}: {what} must be an integer >= 1, got {n}")
        nums.append(n)
    return path, nums


PLANNER_ONLY: dict = {"dtype": None, "extra_group": [], "batch": 8, "cuda_graphs": False,
                      "implementation": DEFAULT_IMPLEMENTATION, "objective": "auto", "max_layouts": 200_000,
                      "memory_utilization": 0.9, "export_dir": None, "assume_zero_latency": False}
"""Options of the layer-level planner and their defaults: the serving search (--engine) has its own engine,
batching and memory rules and takes none of them."""
SWEEP = "1,2,4,8,16,32,64,128,256"
"""Total concurrencies the serving search sweeps unless --concurrency says otherwise."""
SERVING_ONLY = ("concurrency", "target_stat", "weight_dtype", "kv_dtype", "plot", "engine_arg", "range_ratio",
                "range_mode", "engine_version")
"""Options of the serving search: they mean nothing without --engine."""


def _positive(name: str, v: int | None) -> None:
    if v is not None and v < 1:
        raise ValueError(f"--{name} must be >= 1, got {v}")


def _pick_dtype(model, prof, dtype: str | None):
    import dataclasses

    have = prof.dtypes()
    if dtype is not None:
        if dtype not in have:
            raise ValueError(f"--dtype {dtype}: profile {args_name(prof)} has compute data for {have} only")
        return dataclasses.replace(model, weight_dtype=dtype, kv_dtype=dtype)
    if model.weight_dtype in have:
        return model
    pick = next((d for d in DTYPE_PREFERENCE if d in have), None)
    if pick is None:
        raise ValueError(f"profile {args_name(prof)} has no compute data (dtypes: {have})")
    print(f"[plan] profile {args_name(prof)} has no {model.weight_dtype} compute data (it has {have}); "
          f"planning {model.name} in {pick} (choose with --dtype)", file=sys.stderr)
    return dataclasses.replace(model, weight_dtype=pick, kv_dtype=pick)


def _dtype_speed_note(model, prof, tokens: int) -> str | None:
    """A line when ``prof`` runs fp32 GEMMs at least 1.5x faster than the model's 16-bit dtype at the model's MLP
    shape over ``tokens`` rows (a CPU without native bf16 units): the plan stays in the checkpoint's dtype, and
    ``--dtype fp32`` plans the model upcast."""
    dt = model.weight_dtype
    if dt not in ("bf16", "fp16") or "fp32" not in prof.dtypes() or dt not in prof.dtypes():
        return None
    m, n, k = max(1, int(tokens)), model.ffn_size or model.expert_ffn_size or model.hidden_size, model.hidden_size
    t16, t32 = (prof.gemm_time_s(m, n, k, d).time_s for d in (dt, "fp32"))
    if not t32 * 1.5 <= t16:
        return None
    return (f"[plan] profile {args_name(prof)} runs fp32 GEMMs x{t16 / t32:.3g} faster than {dt} at {model.name}'s "
            f"MLP shape (M {m}, N {n}, K {k}: {fmt_time_s(t32)} against {fmt_time_s(t16)}; a device without native "
            f"{dt} units, such as a CPU without AVX-512 BF16 or AMX); planning in {dt}, the checkpoint's dtype; "
            f"--dtype fp32 plans it upcast, where 4 bytes per weight fit")


def _serving_document(reason: str, rejected: list, res=None, top: int = 0, meets: bool = False,
                      command: str | None = None) -> dict:
    """The serving search's JSON document, one key set found or not (``res`` None: nothing found, ``reason`` why;
    feasible / reason as predict's), so a program reads one shape."""
    return {"feasible": res is not None, "reason": reason, "rejected": rejected,
            "ranked": [c.to_dict() for c in res.ranked[:top]] if res else [],
            "pareto": [c.to_dict() for c in res.pareto] if res else [],
            "search_s": res.search_s if res else None, "warnings": res.warnings if res else [],
            "notes": res.notes if res else [], "meets_targets": meets,
            "best_simulated": res.best.simulated if res else None,
            "open_loop_best": (res.open_loop or None) if res else None,
            "best_notes": res.best_notes if res else [], "best_predict_command": command}


def _run_serving(args: argparse.Namespace, model, prof, inter) -> int:
    """``accelcal plan --engine ...``: the serving search (planner/serving/search.py); ``prof`` already composed."""
    from .serving.cli import parse_engine_args
    from .serving.engine import check_version
    from accelcal.progress import LOG_EVERY_S, StageProgress

    from .serving.predict import node_devices
    from .serving.workload import LONG_SIMULATION_REQUESTS, REQUESTS_PER_CLIENT, default_requests
    from .serving.search import NoServingLayout, ServingTargets, format_search, plot_pareto, search_serving

    spec = SWEEP if args.concurrency is None else args.concurrency
    try:
        # each concurrency once, in the order given (4,4,1 is two points, not three rows with one twice)
        conc = list(dict.fromkeys(int(x) for x in str(spec).strip().split(",")))
    except ValueError:
        raise ValueError(f"--concurrency {spec!r}: expected comma-separated integers >= 1, e.g. 8,32,128 (leave it "
                         f"out for the default sweep {SWEEP})") from None
    most = default_requests(max(conc))
    if most > LONG_SIMULATION_REQUESTS:
        print(f"accelcal plan: note: the re-checks simulate {REQUESTS_PER_CLIENT} requests per client step by step, "
              f"{most} at --concurrency {max(conc)}, for each layout they re-check, which may take many minutes; a "
              f"sweep of smaller concurrencies answers sooner", file=sys.stderr)
    if args.target_stat is not None and args.ttft is None and args.tpot is None and args.request_rate is None:
        raise ValueError(f"--target-stat {args.target_stat}: it says which statistic --ttft and --tpot bound (and "
                         f"--request-rate's open-loop run reports); give one of them (without targets the search "
                         f"ranks layouts by their mean latency)")
    engines = list(dict.fromkeys(e.strip() for spec in args.engine for e in spec.split(",") if e.strip()))
    if not engines:
        raise ValueError("--engine: expected engine names (vllm, sglang, trtllm, static) or preset YAML files")
    dpn = node_devices(prof, args.devices_per_node)
    targets = ServingTargets(args.ttft, args.tpot, args.target_stat or "mean", args.request_rate)
    overrides = parse_engine_args(args.engine_arg or [])
    tables = load_moe_tables(args.moe_table)
    try:
        # a bar per pass on a terminal (the re-checks by simulation take most of a long search); in a log, a line
        # every 20 s of a pass and its closing line once it has run that long (a search of seconds adds nothing)
        bar = StageProgress("plan", log_every_s=LOG_EVERY_S, quiet_below_s=LOG_EVERY_S)
        res = search_serving(prof, model, args.nodes * dpn, engines, conc, args.prompt_len, args.output_len, targets,
                             args.weight_dtype, args.kv_dtype, inter, top=args.top, engine_overrides=overrides,
                             range_ratio=args.range_ratio, range_mode=args.range_mode or "around",
                             devices_per_node=args.devices_per_node, progress=bar,
                             moe_tables=tables, engine_version=check_version(args.engine_version or ""))
    except NoServingLayout as exc:
        print(f"accelcal plan: {exc}", file=sys.stderr)
        if args.format == "json":  # the found document's keys, empty, as predict keeps its schema
            print(json.dumps(_serving_document(str(exc), exc.rejected), indent=1, sort_keys=True))
        return EXIT_INFEASIBLE
    # with targets, a pass counts once the simulation confirms it (the steady state's TTFT assumes
    # desynchronised clients and can be far below a closed loop's)
    confirmed = not targets.any or res.best.simulated
    meets = not res.best.misses and confirmed
    command = _predict_command(args, res.best, engines, res.devices_per_node, tables)
    if args.format == "json":
        print(json.dumps(_serving_document("", res.rejected, res, args.top, meets, command), indent=1, sort_keys=True))
    else:
        print(format_search(res, args.top), end="")
        steady = (" (a steady-state row: --method steady gives its figures; leave it out to simulate it)"
                  if not res.best.simulated else "")
        print(f"the best row as accelcal predict runs it{steady} (vary its flags to try another load or layout):\n"
              f"  {command}")
    if args.plot:
        try:
            plot_pareto(res, args.plot)
        except OSError as exc:
            raise ValueError(f"--plot {args.plot}: cannot write it: {exc.strerror or exc}") from None
        print(f"wrote {args.plot}", file=sys.stderr)
    if targets.any and res.best.misses:
        print(f"accelcal plan: no engine x layout x concurrency meets the targets; closest: {res.best.label} "
              f"({'; '.join(res.best.misses)})", file=sys.stderr)
        return EXIT_TARGETS_MISSED
    if not confirmed:
        print(f"accelcal plan: no engine x layout x concurrency the simulation re-checked meets the targets; the "
              f"steady state's best, {res.best.label}, is not confirmed: check it with accelcal predict",
              file=sys.stderr)
        return EXIT_TARGETS_MISSED
    return EXIT_OK


def _predict_command(args: argparse.Namespace, best, engines: list[str], devices_per_node: int,
                     moe_tables=()) -> str:
    """The ``accelcal predict`` command line that runs ``best`` (a ServingCandidate) as the search re-checks it: the
    same profiles, model, request lengths and spread, dtypes and engine settings as this ``plan``, the row's layout
    and concurrency; its engine as the user named it (a preset file stays a path).  ``devices_per_node``: the
    search's, given whenever the user gave it or an inter-node profile (predict composes the profiles its own way
    and could otherwise place node boundaries elsewhere)."""
    import shlex

    from .serving.engine import EnginePreset

    spec = next((e for e in engines if EnginePreset.resolve(e).name == best.engine), best.engine)
    cmd = ["accelcal", "predict", "--profile", args.profile]
    for flag, v in (("--interconnect", args.interconnect), ("--inter-node-profile", args.inter_node_profile)):
        if v:
            cmd += [flag, v]
    if args.devices_per_node is not None or args.inter_node_profile:
        cmd += ["--devices-per-node", str(devices_per_node)]
    cmd += ["--model", args.model, "--engine", spec] + best.predict_flags
    if args.engine_version:
        cmd += ["--engine-version", args.engine_version]
    # predict takes the table of its one engine (``moe_tables``: the search's); another engine's is refused there
    cmd += [x for t in moe_tables if t.engine == best.engine for x in ("--moe-table", t.origin)]
    cmd += ["--isl", str(args.prompt_len), "--osl", str(args.output_len)]
    if not best.simulated:  # the row's figures are the steady state's; predict simulates by default
        cmd += ["--method", "steady"]
    for flag, v in (("--weight-dtype", args.weight_dtype), ("--kv-dtype", args.kv_dtype),
                    ("--range-ratio", args.range_ratio), ("--range-mode", args.range_mode)):
        if v is not None:
            cmd += [flag, str(v)]
    for kv in args.engine_arg or []:
        cmd += ["--engine-arg", kv]
    return shlex.join(cmd)


def _check_plot_path(path: str) -> None:
    """--plot must name a PNG file that can be written (checked before any search)."""
    import importlib.util
    import os

    if not path.strip():
        raise ValueError("--plot: expected a PNG file name, got an empty one")
    if os.path.isdir(path):
        raise ValueError(f"--plot {path}: is a directory; give a file name, e.g. {os.path.join(path, 'pareto.png')}")
    if not path.lower().endswith(".png"):
        raise ValueError(f"--plot {path}: the plot is a PNG image; give it a .png name")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"--plot {path}: {parent} is a file, not a folder")
    if not os.path.isdir(parent):
        raise ValueError(f"--plot {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"--plot {path}: the folder {parent} is not writable")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install -e '.[plot]'")


def args_name(prof) -> str:
    return str(prof.identity.name)


def run(args: argparse.Namespace) -> int:
    from accelcal.calibrate.profile import Profile

    from .cluster import Cluster, DeviceGroup
    from .export import write_exports
    from accelcal.models import ModelConfig
    from .report import format_table, no_plan_json, to_json
    from .search import NoFeasiblePlan, PlanOptions, plan
    from .workload import Workload

    for name in ("nodes", "devices_per_node", "top", "prompt_len", "output_len", "batch"):
        _positive({"prompt_len": "prompt-len (--isl)", "output_len": "output-len (--osl)"}.get(
            name, name.replace("_", "-")), getattr(args, name))
    for name in ("ttft", "tpot", "request_rate"):
        v = getattr(args, name)
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {v}")
    for name, slip_s in (("ttft", 60.0), ("tpot", 1.0)):
        v = getattr(args, name)
        if v is not None and v >= slip_s:
            # seconds, as the help says; a target this long is usually milliseconds typed as seconds
            print(f"note: --{name} {v:g} is {v:g} s (targets are in seconds); for {v:g} ms pass --{name} {v / 1e3:g}",
                  file=sys.stderr)
    if not args.engine:
        given = [f"--{n.replace('_', '-')}" for n in SERVING_ONLY if getattr(args, n) is not None]
        given += ["--moe-table"] if args.moe_table else []  # a list option: empty when not given
        if given:
            raise ValueError(f"{', '.join(given)}: option(s) of the serving search; add --engine "
                             f"(vllm, sglang, trtllm, static) or leave them out")
    else:
        given = [f"--{n.replace('_', '-')}" for n in PLANNER_ONLY if getattr(args, n) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: option(s) of the layer-level planner; the serving search "
                             f"(--engine) sets batching, memory and launches from the engine preset (--engine-arg "
                             f"overrides its keys), so it takes none of them: leave them out or drop --engine"
                             + ("; its dtypes are --weight-dtype and --kv-dtype" if "--dtype" in given else "")
                             + ("; it costs latencies a datasheet prior lacks at 0 s and warns" if
                                "--assume-zero-latency" in given else ""))
        if args.plot is not None:
            _check_plot_path(args.plot)
    # the planner options default to None so that any the user typed is seen above, even at its default value
    for n, d in PLANNER_ONLY.items():
        if getattr(args, n) is None:
            setattr(args, n, list(d) if isinstance(d, list) else d)
    if args.max_layouts < 1:
        raise ValueError(f"--max-layouts must be >= 1, got {args.max_layouts}")
    if not 0 < args.memory_utilization <= 1:
        raise ValueError(f"--memory-utilization must be in (0, 1], got {args.memory_utilization}")
    if args.export_dir:  # before any planning: a bad destination is an error in milliseconds
        from accelcal.preflight import check_dir

        check_dir(args.export_dir, what="--export-dir", need_bytes=16 * 2**20)
    model = ModelConfig.resolve(args.model)
    extra_inter = Profile.load(args.inter_node_profile, what="--inter-node-profile") if args.inter_node_profile else None
    # One profile per device group: device numbers from --profile, each scope's collectives from its fabric; other
    # device groups keep the inter-node link as given.
    prof, inter = plan_profiles(Profile.load(args.profile, what="--profile"), Profile.load(args.interconnect, what="--interconnect") if args.interconnect else None,
                                extra_inter)
    if args.engine:
        return _run_serving(args, model, prof, inter)
    model = _pick_dtype(model, prof, args.dtype)
    note = _dtype_speed_note(model, prof, args.prompt_len) if args.dtype is None else None
    if note:
        print(note, file=sys.stderr)
    groups = [DeviceGroup(str(prof.identity.device_name), prof, args.nodes, args.devices_per_node, inter)]
    for spec in args.extra_group:
        path, nums = parse_extra_group(spec)
        try:
            gp = Profile.load(path)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"--extra-group {spec!r}: {exc}") from None
        require_device_profile(gp, "--extra-group")
        name = str(gp.identity.device_name)
        if any(g.name == name for g in groups):
            name = f"{name} #{len(groups) + 1}"
        groups.append(DeviceGroup(name, gp, nums[0], nums[1] if len(nums) > 1 else None, extra_inter))
    workload = Workload(args.prompt_len, args.output_len, args.batch, args.ttft, args.tpot, args.request_rate)
    options = PlanOptions(cuda_graphs=args.cuda_graphs, objective=args.objective, implementation=args.implementation,
                          memory_utilization=args.memory_utilization, assume_zero_latency=args.assume_zero_latency,
                          max_layouts=args.max_layouts)
    progress = (lambda msg: print(msg, file=sys.stderr)) if sum(g.devices for g in groups) >= 32 else None
    try:
        result = plan(model, Cluster(groups), workload, options, progress)
    except NoFeasiblePlan as exc:
        print(f"accelcal plan: {exc}", file=sys.stderr)
        if args.format == "json":
            print(json.dumps(no_plan_json(model, workload, options, str(exc)), indent=1, sort_keys=True))
        return EXIT_INFEASIBLE
    if args.format == "json":
        from accelcal.safe_io import dumps_finite

        print(dumps_finite(to_json(result, args.top), what="the plan", indent=1, sort_keys=True))
    else:
        print(format_table(result, args.top), end="")
    if args.export_dir:
        paths = write_exports(result.best, args.export_dir, model.layers)
        print(f"wrote {len(paths)} files to {args.export_dir} (open trace.json in https://ui.perfetto.dev)",
              file=sys.stderr)
    if not all(g.ranked[0].meets_targets for g in result.groups if g.ranked):
        where = "ranked first in the JSON" if args.format == "json" else "listed above"
        print(f"accelcal plan: no plan meets the targets (the closest are {where})", file=sys.stderr)
        return EXIT_TARGETS_MISSED
    return EXIT_OK
