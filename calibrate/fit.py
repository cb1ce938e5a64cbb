"""From raw result tables to a Profile: every fit in one place.

    from accelcal.results import read_results
    from accelcal.calibrate.fit import fit_profile
    k = read_results(["results/kernels.csv"]); c = read_results(["results/collectives.csv"])
    profile = fit_profile(k, c, env=k_env_dict, command="accelcal calibrate --quick")
    profile.save("profiles/my-node.yaml")

Fits use the medians of the ``device`` figure (kernels) and ``max_over_ranks``
(collectives); skipped and failed rows are ignored.  Memory is piecewise
latency + bytes/bandwidth (one piece per cache level, count by held-out error).
A collective series is one timing mode and one dtype (:func:`select_collective_series`:
gloo -> ``blocking`` fp32, NCCL/RCCL -> ``pipelined`` bf16); sizes measured in
several rounds are reduced to the median of the round medians first.  A series that cannot be
fitted (too few points, ...) is left out with a note in ``notes`` (and printed
through ``progress``); a run with no GEMM data at all is an error.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import pandas as pd

from .fit_alpha_beta import fit_piecewise
from .fit_attention import attention_groups, fit_attention_table
from .fit_gemm import fit_gemm
from accelcal.vocab import (BUSBW_FACTORS, DTYPE_BYTES, ELEMENTWISE_GROUPS, SAMPLER_BYTES_PER_LOGIT, SCOPES,
                            gemm_element_bytes)

from .naming import slug
from .profile import CollectiveEntry, Identity, MemoryEntry, Overheads, Profile

__all__ = ["fit_profile", "collective_fit_mode", "select_collective_series", "median_over_repeats", "MEMORY_MAX_PIECES",
           "OVERHEAD_OPS"]

OVERHEAD_OPS = {"launch_eager": "eager_launch_s", "launch_sync": "launch_sync_s", "sync": "sync_s",
                "graph_kernel": "graph_kernel_s", "eager_dispatch": "eager_dispatch_s"}
"""Raw op name -> Overheads field."""

MEMORY_MAX_PIECES = 3
"""Memory fits may use up to one piece per cache level a working set can live in (L2, L3, DRAM)."""



def _ok(df: pd.DataFrame | None, figure: str | None) -> pd.DataFrame:
    if df is None or len(df) == 0:
        return pd.DataFrame()
    out = df[df["status"] == "ok"]
    if figure is not None:
        out = out[out["figure"] == figure]
    return out[out["median_s"].notna()]




def _identity(env: Mapping[str, Any], command: str, coll: pd.DataFrame) -> Identity:
    dtype_ = str(env.get("device_type") or "")
    if not dtype_:
        raise ValueError("the environment record (.env.json) has no 'device_type' (accelcal.kernels.environment writes it)")
    name = str(env.get("device_name") or dtype_)
    per_node = int(env.get("device_count") or 1)
    mem = env.get("device_memory_total_bytes")
    if not mem or float(mem) <= 0:
        raise ValueError(f"the environment record (.env.json): device_memory_total_bytes must be > 0, got {mem!r}")
    mem = float(mem)
    threads_per_device = None
    if dtype_ == "cpu":
        tpd, ranks = env.get("threads_per_device"), env.get("devices_per_node")
        if tpd and ranks:
            # A CPU "device" is one rank's share of the cores (calibrate ran the kernels with that many
            # threads), so N ranks are N devices each with 1/N of the RAM: TP=2 on 2 ranks then costs
            # each shard at one rank's compute, as the real run does.
            threads_per_device, per_node = int(tpd), int(ranks)
            mem = mem / per_node
        else:
            # Older raw data (kernels measured with every core): the node is one device; collectives ran
            # N processes on it, which is what a group size describes.
            per_node = 1
            if len(coll) and "group_size" in coll:
                intra = coll[coll.get("scope", "intra_node") == "intra_node"] if "scope" in coll else coll
                if len(intra):
                    per_node = max(per_node, int(intra["group_size"].max()))
            mem = mem / per_node  # N ranks share the node's RAM, as calibrate's own CPU devices do
    versions = {}
    for key, out in (("torch_version", "torch"), ("cuda_version", "cuda"), ("hip_version", "hip"),
                     ("nccl_version", "nccl"), ("python_version", "python"), ("gpu_driver_version", "driver"),
                     ("platform", "platform"), ("cpu_model", "cpu_model"), ("cpu_signature", "cpu_signature"),
                     ("accelcal_version", "accelcal"), ("accelcal_commit", "accelcal_commit")):
        v = env.get(key)
        if v not in (None, ""):
            versions[out] = str(v)
    threads = env.get("torch_num_threads")
    return Identity(
        name=str(env.get("profile_name") or slug(f"{dtype_}-{name}" + (f"-{threads}t" if dtype_ == "cpu" and threads else ""))),
        source="measured", device_type=dtype_, device_name=name, devices_per_node=per_node,
        nodes=int(env.get("nodes") or 1), memory_capacity_bytes=mem, host=str(env.get("host") or ""),
        date=str(env.get("date") or ""), command=command, versions=versions, citations=[], raw_data=[],
        threads_per_device=threads_per_device,
        covered_models=[m for m in _env_str(env, "for_models").split(",") if m] or None,
        covered_tp=[int(t) for t in _env_str(env, "for_tp").split(",") if t.strip()] or None,
        memory_in_use_at_start_bytes=memory_in_use_at_start(env))


def memory_in_use_at_start(env: Mapping[str, Any]) -> float | None:
    """Device memory in use when the kernel suite started (environment total - free); None on a CPU, where
    "free" is the host's available RAM, or when either figure is missing."""
    total, free = env.get("device_memory_total_bytes"), env.get("device_memory_free_bytes")
    if str(env.get("device_type") or "cpu") == "cpu" or not isinstance(total, (int, float)) \
            or not isinstance(free, (int, float)) or not 0 <= free <= total:
        return None
    return float(total - free)


def _env_str(env: Mapping[str, Any], key: str) -> str:
    v = env.get(key)
    return v if isinstance(v, str) else ""  # absent, or NaN from a results table


def collective_fit_mode(rows: pd.DataFrame) -> str | None:
    """Which timing mode of one collective series the profile fits (None: the table has no ``mode``).

    gloo calls are synchronous: every call returns only when the data has
    arrived, so a "pipelined" queue is just back-to-back blocking calls whose
    per-call average hides the rank-arrival skew each real call pays.  The
    planner costs one collective between two compute ops (a TP all-reduce),
    which is exactly the blocking figure (barrier, one call, MAX over ranks).
    Asynchronous backends (NCCL, RCCL) queue calls on the device; there the
    pipelined (back-to-back device) figure is the collective's own cost, like
    the kernels' device time.
    """
    if "mode" not in rows or not rows["mode"].isin(["pipelined", "blocking"]).any():
        return None
    sync = "backend" in rows and rows["backend"].astype(str).str.contains("gloo").all()
    want = "blocking" if sync else "pipelined"
    return want if (rows["mode"] == want).any() else str(rows["mode"].value_counts().idxmax())


def _fit_dtype(rows: pd.DataFrame, device_type: str) -> str:
    """The dtype a collective fit uses: what activations travel as (fp32 on CPUs, bf16 on accelerators) when measured."""
    want = "fp32" if device_type == "cpu" else "bf16"
    if (rows["dtype"] == want).any():
        return want
    return str(rows["dtype"].value_counts().idxmax())


def select_collective_series(rows: pd.DataFrame, device_type: str) -> tuple[pd.DataFrame, str | None, str]:
    """(rows, mode, dtype): the one timing mode and dtype of an (op, scope, group) series that the profile fits."""
    mode = collective_fit_mode(rows)
    if mode is not None:
        rows = rows[rows["mode"] == mode]
    dtype = _fit_dtype(rows, device_type)
    return rows[rows["dtype"] == dtype], mode, dtype


def median_over_repeats(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per size: repeated measurements of a size (calibrate's rounds) reduced to the median of their
    medians, so one round caught in a slow scheduling state does not move the fit, and k-fold held-out
    error still predicts sizes the fit has not seen."""
    if not len(rows) or not rows["size_bytes"].duplicated().any():
        return rows
    med = rows.groupby("size_bytes")["median_s"].median()
    first = rows.drop_duplicates("size_bytes").set_index("size_bytes")
    first["median_s"] = med
    return first.reset_index()


def fit_profile(kernels_df: pd.DataFrame, collectives_df: pd.DataFrame | None, env: Mapping[str, Any], command: str,
                progress: Callable[[str], Any] | None = None, notes: list[str] | None = None) -> Profile:
    """Fit GEMM, memory, overheads, attention and collectives; return a validated measured Profile."""
    notes = notes if notes is not None else []

    def note(msg: str) -> None:
        notes.append(msg)
        if progress is not None:
            progress(msg)

    kdev = _ok(kernels_df, "device")
    kall = _ok(kernels_df, None)
    coll = _ok(collectives_df, "max_over_ranks")
    ident = _identity(env, command, coll)
    if ident.device_type == "cpu" and ident.threads_per_device is None and ident.devices_per_node > 1:
        note(f"CPU kernels measured with {env.get('torch_num_threads') or 'all'} thread(s) (the whole node), "
             f"collectives over {ident.devices_per_node} ranks: each of the {ident.devices_per_node} devices gets "
             f"1/{ident.devices_per_node} of the RAM but the whole node's compute, so plans over them are optimistic; "
             f"accelcal calibrate measures one rank's share of the cores")

    compute = {}
    gemm = kdev[kdev["op"] == "gemm"] if len(kdev) else kdev
    wave = env.get("device_sm_count") if ident.device_type in ("cuda", "rocm") else None
    for dtype, g in (gemm.groupby("dtype") if len(gemm) else []):
        if dtype not in DTYPE_BYTES:
            note(f"gemm: dtype {dtype!r} is not a known dtype; skipped")
            continue
        try:
            compute[dtype] = fit_gemm(dtype, g[["m", "n", "k", "median_s"]].astype(float).values.tolist(),
                                      wave_units=int(wave) if wave else None)
        except ValueError as exc:
            note(f"gemm {dtype}: not fitted: {exc}")
            continue
        q = compute[dtype].quality
        note(f"fitted gemm {dtype}: {q.points} shapes, held-out median {q.heldout_median_rel_err:.1%}, "
             f"p90 {q.heldout_p90_rel_err:.1%}{' FLAGGED' if q.flags else ''}")
    grouped = kdev[kdev["op"] == "grouped_gemm"] if len(kdev) else kdev
    for dtype, g in (grouped.groupby("dtype") if len(grouped) else []):
        # kept as measured: the planner asks for the ratio to its own stacked-GEMM estimate (ComputeEntry.grouped_ratio)
        if dtype not in compute:
            note(f"grouped gemm {dtype}: {len(g)} case(s) kept out: no {dtype} GEMM fit to compare them with")
            continue
        entry = compute[dtype]
        entry.grouped_points = g[["experts", "m", "n", "k", "median_s"]].astype(float).values.tolist()
        ratios = [r for _, r in entry.grouped_ratio_table(*gemm_element_bytes(dtype))]
        note(f"grouped gemm {dtype}: {len(entry.grouped_points)} cases, measured / stacked-GEMM estimate "
             f"{min(ratios):.3g}..{max(ratios):.3g} (median per tokens-per-expert)")
    if not compute:
        ops = sorted(set(kall["op"])) if len(kall) else []
        raise ValueError("no GEMM dtype could be fitted (need >= 4 ok 'device' gemm rows per dtype); "
                         + (f"ops present: {ops}" if ops else "the kernel results have no ok rows at all")
                         + (f"; notes: {'; '.join(notes)}" if notes else ""))

    def memory_like(name: str, g: pd.DataFrame, what: str) -> MemoryEntry | None:
        # time = latency + bytes / bandwidth, piecewise: each cache level the working set fits in (L2, L3, DRAM)
        # has its own bandwidth; the number of pieces is chosen by held-out error, as for the collectives.
        try:
            f = fit_piecewise(name, g["bytes"].astype(float).values, g["median_s"].astype(float).values,
                              max_pieces=MEMORY_MAX_PIECES, target="memory")
        except ValueError as exc:
            note(f"{name}: not fitted: {exc}")
            return None
        p = f.pieces[-1]
        note(f"fitted {name}: {len(f.pieces)} piece(s), {', '.join(f'{q.bandwidth_bytes_per_s / 1e9:.2f}' for q in f.pieces)} "
             f"GB/s{what}, latency {f.pieces[0].latency_s * 1e6:.2f} us, held-out median "
             f"{f.quality.heldout_median_rel_err:.1%}{' FLAGGED' if f.quality.flags else ''}")
        return MemoryEntry(latency_s=p.latency_s, bandwidth_bytes_per_s=p.bandwidth_bytes_per_s, quality=f.quality,
                           pieces=f.pieces if len(f.pieces) > 1 else None)

    memory = {}
    for pattern in ("copy", "read", "write"):
        g = kdev[kdev["op"] == pattern] if len(kdev) else kdev
        # bytes = bytes moved (a copy of S moves 2S): the unit memory_time_s takes.
        if len(g) and (e := memory_like(f"memory {pattern}", g, "")) is not None:
            memory[pattern] = e

    elementwise: dict[str, dict[str, MemoryEntry]] = {}
    has_ew = len(kdev) and "group" in kdev.columns
    ew = kdev[kdev["op"] == "elementwise"] if has_ew else None
    for (dtype, group), g in (ew.groupby(["dtype", "group"], sort=True) if ew is not None and len(ew) else ()):
        # bytes: the torch-eager traffic model's bytes for the group (kernels/elementwise.py), as the planner counts.
        if group in ELEMENTWISE_GROUPS and (e := memory_like(f"elementwise {group} {dtype}", g, "")) is not None:
            elementwise.setdefault(str(dtype), {})[str(group)] = e

    sampler: dict[str, MemoryEntry] = {}
    sm = kdev[kdev["op"] == "sampler"] if len(kdev) and "kind" in kdev.columns else None
    for kind, g in (sm.groupby("kind", sort=True) if sm is not None and len(sm) else ()):
        # bytes: logits x the kind's bytes per logit (kernels/sampler.py), as the planner counts them.
        if kind in SAMPLER_BYTES_PER_LOGIT and (e := memory_like(f"sampler {kind}", g, " of its traffic model")) is not None:
            sampler[str(kind)] = e

    over = Overheads()
    for op, fld in OVERHEAD_OPS.items():
        g = kall[kall["op"] == op] if len(kall) else kall
        if len(g):
            # One figure per overhead op: prefer the device figure where both exist.
            dev = g[g["figure"] == "device"]
            setattr(over, fld, float((dev if len(dev) else g)["median_s"].median()))

    attention = fit_attention_table(attention_groups(kdev), wave_units=int(wave) if wave else None, note=note)

    collectives = []
    if len(coll):
        for col in ("op", "size_bytes", "group_size"):
            if col not in coll:
                raise ValueError(f"the collectives results have no {col!r} column")
        c = coll.copy()
        if "scope" not in c:
            c["scope"] = "intra_node"
        for (op, scope, gs), g in c.groupby(["op", "scope", "group_size"]):
            if op not in BUSBW_FACTORS or scope not in SCOPES:
                note(f"collective {op}/{scope}: unknown op or scope; skipped")
                continue
            g, _, dtype = select_collective_series(g, ident.device_type)
            g = median_over_repeats(g)
            try:
                f = fit_piecewise(f"{op}[{scope},{int(gs)}]", g["size_bytes"].astype(float).values,
                                  g["median_s"].astype(float).values, max_pieces=3, target="collective")
            except ValueError as exc:
                note(f"collective {op} {scope} group {int(gs)}: not fitted: {exc}")
                continue
            collectives.append(CollectiveEntry(op=op, scope=scope, group_size=int(gs), dtype=str(dtype),
                                               pieces=f.pieces, quality=f.quality))
            note(f"fitted {op} {scope} group {int(gs)}: {len(f.pieces)} piece(s), held-out median "
                 f"{f.quality.heldout_median_rel_err:.1%}{' FLAGGED' if f.quality.flags else ''}")

    if compute and not memory:
        # every plan costs each layer's memory-bound kernels from it: a GEMM-only profile could plan nothing
        have = sorted(set(kdev["op"])) if len(kdev) else []
        raise ValueError(f"the kernel results have GEMM measurements but no memory ones (ops {have}; a device "
                         f"profile needs copy/read/write from the kernel suite's memory cases): run accelcal bench "
                         f"kernels with them and pass that CSV too")
    mv = env.get("method_version", 1)
    profile = Profile(identity=ident, compute=compute, memory=memory, elementwise=elementwise, sampler=sampler, overheads=over,
                      collectives=collectives,
                      attention=attention, method_version=int(mv) if mv and not (isinstance(mv, float) and math.isnan(mv)) else 1)
    # Round-trip through the strict loader: a fit that produced an unloadable profile fails here, not later.
    return Profile.from_dict(profile.to_dict(), origin="fit_profile result")
