"""Export a profile as an aiconfigurator system: ``systems/<name>.yaml`` plus the perf tables it reads.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.export_aiconfigurator import export_aiconfigurator
    res = export_aiconfigurator(Profile.load("profiles/nvidia-h200.yaml"), "out/aic",
                                profile_path="profiles/nvidia-h200.yaml",
                                datasheet=Profile.load("profiles/datasheet/h200-sxm.yaml"))
    # aiconfigurator cli estimate --systems-paths out/aic/systems --system accelcal_cuda_nvidia_h200 \
    #     --backend vllm --model meta-llama/Meta-Llama-3.1-8B --isl 1024 --osl 128 --batch-size 1 --tp-size 1

Layout written (``DIR/systems`` is what ``--systems-paths`` takes; put it first when
``default`` is listed too, because the first ``query_versions.yaml`` found wins):

    DIR/systems/<name>.yaml                       system spec, data_dir: data/<name>
    DIR/systems/query_versions.yaml               makes <version> the queryable "current" for <name>
    DIR/systems/data/<name>/gemm/<backend>/<version>/gemm_perf.parquet
    DIR/systems/data/<name>/attention/<backend>/<version>/{context,generation}_attention_perf.parquet
    DIR/systems/data/<name>/comm/nccl/<nccl_version>/nccl_perf.parquet     (NCCL collectives only)
    ... each folder with a collection_meta.yaml naming the profile, its raw files and row counts
    DIR/accelcal_export.yaml                      every value's provenance and every warning

Tables hold the profile's raw measurements at their exact coordinates (``accelcal_source: measured``)
and, around them, the profile's fitted models evaluated on a grid (``accelcal_source: fit``): the grid
aiconfigurator interpolates needs values at every corner, which a quick sweep does not measure.  The
extra column is ignored by aiconfigurator's reader and lets anyone separate the two.  Latency is in
milliseconds and NCCL message sizes in elements of ``nccl_dtype``, as aiconfigurator stores them.

System fields: ``mem_bw`` is the peak (the datasheet figure when a datasheet prior is given, else the
measured read bandwidth) and ``mem_bw_empirical_scaling_factor`` = measured / ``mem_bw``, so
aiconfigurator's ``bytes / (mem_bw * factor)`` uses the measured bandwidth once.  Tensor FLOP/s are
speed-of-light ceilings aiconfigurator clamps its tables to: the datasheet figure when given, else the
fitted peak.  ``sm_version``, ``power`` (the power limit nvidia-smi reported) and ``nccl_version`` come
from the raw environment.  Fields nothing measured or cited (``misc.nccl_mem``, ``misc.other_mem``,
``node.inter_node_bw``, ...) are copied from ``fill_from`` (an aiconfigurator system YAML, recorded as
such) or left out with a warning; aiconfigurator refuses a spec without ``node.intra_node_bw`` /
``node.inter_node_bw``.

Format learned from aiconfigurator 0.12.0 (github.com/ai-dynamo/aiconfigurator, PyPI ``aiconfigurator``
/ ``aiconfigurator-core``): ``aic-core/src/aiconfigurator_core/systems/h200_sxm.yaml`` and
``h100_sxm.yaml`` (system keys), ``aic-core/rust/aiconfigurator-core/src/common/system_spec.rs``
(required / optional keys and their units), ``systems/data/h200_sxm/{gemm,attention,comm}/.../*.parquet``
(table columns, ms latency, element message sizes), ``sdk/perf_database.py`` (``--systems-paths``,
``data_dir`` relative to the systems folder, ``<family>/<backend>/<version>`` layout,
``collection_meta.yaml`` schema 1, ``query_versions.yaml`` slots) and
``rust/aiconfigurator-core/src/perf_database/gemm.rs`` (tables clamped to the speed of light from
``mem_bw`` and ``*_tc_flops``).  No code was copied.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from accelcal.atomic import atomic_write_text, atomic_write_with
from accelcal.vocab import DTYPE_BYTES

from .compose import collectives_origin, fabric_part
from .export import _best_busbw, memory_pattern
from .profile import MissingMeasurement, Profile

__all__ = ["AicExport", "export_aiconfigurator", "system_name", "AIC_GEMM_DTYPES", "AIC_COMM_OPS"]

AIC_GEMM_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp8_e4m3": "fp8"}
"""accelcal dtype -> aiconfigurator ``gemm_dtype`` (its GEMM quant modes have no fp16/fp32/tf32)."""

AIC_ATTN_DTYPES: dict[str, str] = {"bf16": "bfloat16"}
"""accelcal dtype -> aiconfigurator ``attn_dtype`` / ``kv_cache_dtype``."""

AIC_COMM_OPS: dict[str, str] = {"all_reduce": "all_reduce", "all_gather": "all_gather",
                                "reduce_scatter": "reduce_scatter", "all_to_all": "alltoall"}
"""accelcal collective op -> aiconfigurator ``nccl_perf`` ``op_name``."""

NCCL_DTYPE = "half"
"""The collective dtype written (aiconfigurator's default comm quant mode, a 16-bit element)."""
NCCL_ELEMENT_BYTES = DTYPE_BYTES["fp16"]

# Grids the fitted models are evaluated on (measured coordinates are added to them).
GRID_M = [2 ** i for i in range(15)]  # 1 .. 16384 tokens
GRID_BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256]
GRID_ISL = [1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
GRID_STEP = [2 ** i - 1 for i in range(1, 17)]  # kv tokens cached before the new one: 1 .. 65535
GRID_HEADS = [1, 2, 4, 8, 16, 32, 64]
GRID_KV_HEADS = [1, 2, 4, 8]
GRID_HEAD_DIM = [64, 128]
GRID_MESSAGE_ELEMENTS = [2 ** i for i in range(8, 29)]  # 256 .. 268435456 elements

MS_PER_S = 1e3


@dataclass
class AicExport:
    """What an aiconfigurator export wrote and why."""

    systems_dir: Path
    """The folder to pass to aiconfigurator's ``--systems-paths``."""
    system: str
    """The system name (``--system``)."""
    backend: str
    """The backend the tables are filed under (``--backend``)."""
    version: str
    """The perf-database version label (``--perf-db-version``; also the queryable "current")."""
    spec: dict[str, Any]
    """The system YAML as written."""
    tables: dict[str, int] = field(default_factory=dict)
    """Path (relative to ``systems_dir``) -> rows written."""
    provenance: dict[str, str] = field(default_factory=dict)
    """Spec key (dotted) -> where its value came from."""
    warnings: list[str] = field(default_factory=list)
    """What could not be exported or was taken from outside the profile."""
    missing_required: list[str] = field(default_factory=list)
    """Keys aiconfigurator needs that the system YAML lacks (dotted, e.g. ``node.intra_node_bw``): it will not load
    the system until they are given (--fill-from)."""


def system_name(p: Profile) -> str:
    """aiconfigurator-style system name for a profile: ``accelcal_`` + identity.name in snake case."""
    return "accelcal_" + re.sub(r"[^a-z0-9]+", "_", p.identity.name.lower()).strip("_")


def _raw_env(p: Profile, profile_path: str | os.PathLike | None) -> tuple[dict[str, Any], list[Path]]:
    """The first raw ``*.env.json`` beside the profile's raw CSVs (or {}), and those CSV paths."""
    if profile_path is None:
        return {}, []
    return p.identity.raw_env(profile_path)[1], p.identity.raw_csv_paths(profile_path)


def _raw_rows(csvs: Iterable[Path], ops: set[str], figure: str) -> list[dict[str, str]]:
    from accelcal.safe_io import read_csv

    rows = []
    for c in csvs:
        # a results CSV accelcal wrote has whole rows: a cut copy is refused, not exported short
        df = read_csv(c, what="raw data", whole_rows=True, dtype=str, keep_default_na=False)
        if not {"op", "figure", "status"} <= set(df.columns):
            continue  # a source the profile cites (a published table), not measurement rows
        rows += [r for r in df.to_dict("records") if r["op"] in ops and r["figure"] == figure and r["status"] == "ok"]
    return rows


def _num(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------- system YAML

def _spec(p: Profile, env: dict[str, Any], name: str, datasheet: Profile | None,
          fill: dict[str, Any] | None, fill_label: str, res: AicExport) -> dict[str, Any]:
    prov, warn = res.provenance, res.warnings
    gpu: dict[str, Any] = {}
    mem_pattern = memory_pattern(p)
    measured_bw = p.memory[mem_pattern].bandwidth_bytes_per_s if mem_pattern else None
    ds_mem = None
    if datasheet is not None:
        ds_mem = (datasheet.memory.get("read") or datasheet.memory.get("copy"))
    if ds_mem is not None:
        gpu["mem_bw"] = int(ds_mem.bandwidth_bytes_per_s)
        prov["gpu.mem_bw"] = f"datasheet peak ({datasheet.identity.name}; citations in that profile)"
    elif measured_bw is not None:
        gpu["mem_bw"] = int(measured_bw)
        prov["gpu.mem_bw"] = f"measured memory.{mem_pattern} bandwidth (no datasheet prior given: it is also the ceiling)"
    if measured_bw is not None and "mem_bw" in gpu:
        gpu["mem_bw_empirical_scaling_factor"] = round(measured_bw / gpu["mem_bw"], 6)
        prov["gpu.mem_bw_empirical_scaling_factor"] = (
            f"measured memory.{mem_pattern} {measured_bw:.4g} B/s / mem_bw {gpu['mem_bw']:.4g} B/s "
            "(aiconfigurator multiplies mem_bw by it once)")
        lat = p.memory[mem_pattern].latency_s
        if lat is not None:
            gpu["mem_empirical_constant_latency"] = lat
            prov["gpu.mem_empirical_constant_latency"] = f"measured memory.{mem_pattern} latency_s"
    gpu["mem_capacity"] = int(p.identity.memory_capacity_bytes)
    prov["gpu.mem_capacity"] = ("identity.memory_capacity_bytes (as the device reported it)"
                                if not p.is_datasheet else "identity.memory_capacity_bytes (datasheet)")
    for dt, key in (("bf16", "bfloat16_tc_flops"), ("fp8_e4m3", "fp8_tc_flops")):
        ds_e = datasheet.compute.get(dt) if datasheet is not None else None
        if ds_e is not None:
            gpu[key] = int(ds_e.peak_flop_per_s)
            prov[f"gpu.{key}"] = f"datasheet dense peak ({datasheet.identity.name}); aiconfigurator clamps tables to it"
        elif dt in p.compute:
            gpu[key] = int(p.compute[dt].peak_flop_per_s)
            prov[f"gpu.{key}"] = f"fitted compute.{dt}.peak_flop_per_s (no datasheet prior given)"
    sm = _sm_version(env.get("device_capability", ""))
    if sm is not None:
        gpu["sm_version"] = sm
        prov["gpu.sm_version"] = f"raw env device_capability {env['device_capability']!r}"
    power = _watts(env.get("gpu_power_limit", ""))
    if power is not None:
        gpu["power"] = power
        prov["gpu.power"] = f"raw env gpu_power_limit {env['gpu_power_limit']!r} (the enforced limit, not a TDP figure)"

    node: dict[str, Any] = {"num_gpus_per_node": int(p.identity.devices_per_node)}
    fabric = fabric_part(p, "intra_node") or fabric_part(p, "inter_node")
    prov["node.num_gpus_per_node"] = (
        f"devices_per_node of {fabric.name} ({fabric.source}: the devices per node its collectives ran on)"
        if fabric is not None else "identity.devices_per_node (devices measured, not the chassis size)")
    intra = _busbw(p, "intra_node") or _busbw(datasheet, "intra_node")
    if intra is not None:
        node["intra_node_bw"] = int(intra[0])
        prov["node.intra_node_bw"] = intra[1]
    inter = _busbw(p, "inter_node") or _busbw(datasheet, "inter_node")
    if inter is not None:
        node["inter_node_bw"] = int(inter[0])
        prov["node.inter_node_bw"] = inter[1]
    p2p = [c for c in p.collectives if c.op in ("send_recv", "send_recv_pingpong") and c.pieces[0].latency_s is not None
           and c.kernel is None]
    if p2p:
        c = min(p2p, key=lambda e: (e.scope != "intra_node", e.op != "send_recv"))
        node["p2p_latency"] = c.pieces[0].latency_s
        prov["node.p2p_latency"] = f"measured {c.label} first-piece latency"

    misc: dict[str, Any] = {}
    nccl = env.get("nccl_version") or p.identity.versions.get("nccl", "")
    if nccl:
        misc["nccl_version"] = str(nccl)
        prov["misc.nccl_version"] = "raw env nccl_version (torch.cuda.nccl.version())" if env.get("nccl_version") \
            else "identity.versions.nccl"

    spec = {"data_dir": f"data/{name}", "gpu": gpu, "node": node, "misc": misc}
    wanted = {"gpu": ("mem_bw", "mem_bw_empirical_scaling_factor", "mem_empirical_constant_latency",
                      "bfloat16_tc_flops", "int8_tc_flops", "fp8_tc_flops", "power", "sm_version"),
              "node": ("intra_node_bw", "inter_node_bw", "pcie_bw", "p2p_latency"),
              "misc": ("nccl_mem", "other_mem")}
    for sect, keys in wanted.items():
        for k in keys:
            if k in spec[sect]:
                continue
            if fill is not None and k in (fill.get(sect) or {}):
                v = fill[sect][k]
                if k.endswith("_bw") and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 1e9):
                    # aiconfigurator's bandwidths are bytes/s (its h100_sxm.yaml: intra_node_bw 450000000000)
                    raise ValueError(f"--fill-from {fill_label}: {sect}.{k} = {v!r}; expected bytes per second "
                                     f"(>= 1e9, e.g. 450000000000 for 450 GB/s)")
                spec[sect][k] = fill[sect][k]
                prov[f"{sect}.{k}"] = f"copied from {fill_label} (not measured by accelcal)"
                warn.append(f"{sect}.{k} = {fill[sect][k]!r} copied from {fill_label}: the profile has no such measurement")
            else:
                required = (sect, k) in (("gpu", "mem_bw"), ("node", "intra_node_bw"), ("node", "inter_node_bw"))
                need = " (aiconfigurator requires it: pass --fill-from an aiconfigurator system YAML)" if required else ""
                if required:
                    res.missing_required.append(f"{sect}.{k}")
                warn.append(f"{sect}.{k} left out: neither the profile nor a datasheet prior has it{need}")
    return spec


def _sm_version(capability: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(capability))
    return int(m.group(1)) * 10 + int(m.group(2)) if m else None


def _watts(text: str) -> float | None:
    m = re.match(r"\s*([0-9.]+)\s*W", str(text))
    return float(m.group(1)) if m else None


def _busbw(p: Profile | None, scope: str) -> tuple[float, str] | None:
    """(bus bandwidth per GPU, provenance) of the profile's largest all_reduce in ``scope``, or None."""
    if p is None:
        return None
    bw, note = _best_busbw(p, scope)
    source, name, _ = collectives_origin(p, scope)
    return None if bw is None else (bw, f"{source} ({name}): {note}")


# ---------------------------------------------------------------- tables

def _gemm_rows(p: Profile) -> list[dict[str, Any]]:
    rows = []
    for dt, aic_dt in AIC_GEMM_DTYPES.items():
        e = p.compute.get(dt)
        if e is None or not e.points:
            continue
        repeats: dict[tuple[int, int, int], list[float]] = {}
        for m, n, k, t in e.points:  # one shape can be measured for several models: take the median
            repeats.setdefault((int(m), int(n), int(k)), []).append(t)
        measured = {key: statistics.median(ts) for key, ts in repeats.items()}
        ms = sorted(set(GRID_M) | {m for m, _, _ in measured})
        ns = sorted({n for _, n, _ in measured})
        ks = sorted({k for _, _, k in measured})
        for m in ms:
            for n in ns:
                for k in ks:
                    t = measured.get((m, n, k))
                    src = "measured"
                    if t is None:
                        t, src = p.gemm_time_s(m, n, k, dt).time_s, "fit"
                    rows.append({"gemm_dtype": aic_dt, "m": m, "n": n, "k": k,
                                 "latency": t * MS_PER_S, "accelcal_source": src})
    return rows


def _attention_rows(p: Profile, csvs: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(context rows, generation rows): fitted model on the grid, measured cases at their coordinates."""
    ctx: dict[tuple, dict[str, Any]] = {}
    gen: dict[tuple, dict[str, Any]] = {}
    measured = _raw_rows(csvs, {"attn_prefill", "attn_decode"}, "device")
    for dt, aic_dt in AIC_ATTN_DTYPES.items():
        phases = p.attention.get(dt, {})
        def key_row(b, s, h, kv, d, step):
            return {"batch_size": b, "isl": s, "num_heads": h, "num_key_value_heads": kv, "head_dim": d,
                    "beam_width": 1, "attn_dtype": aic_dt, "kv_cache_dtype": aic_dt, "step": step, "window_size": 0}
        for h in GRID_HEADS:
            for kv in [x for x in GRID_KV_HEADS if x <= h and h % x == 0]:
                for d in GRID_HEAD_DIM:
                    for b in GRID_BATCH:
                        if "prefill" in phases:
                            for s in GRID_ISL:
                                t = p.attention_time_s("prefill", b, s, s, h, kv, d, dt, causal=True).time_s
                                ctx[(b, s, h, kv, d)] = {**key_row(b, s, h, kv, d, 0), "latency": t * MS_PER_S,
                                                         "accelcal_source": "fit"}
                        if "decode" in phases:
                            for step in GRID_STEP:
                                t = p.attention_time_s("decode", b, 1, step + 1, h, kv, d, dt, causal=False).time_s
                                gen[(b, step, h, kv, d)] = {**key_row(b, 1, h, kv, d, step), "latency": t * MS_PER_S,
                                                            "accelcal_source": "fit"}
        for r in measured:
            if r["dtype"] != dt:
                continue
            b, h, kv, d, q, kvl, t = (_num(r[c]) for c in ("batch", "heads", "kv_heads", "head_dim", "q_len", "kv_len",
                                                           "median_s"))
            if None in (b, h, kv, d, q, kvl, t):
                continue
            b, h, kv, d, q, kvl = (int(x) for x in (b, h, kv, d, q, kvl))
            if r["op"] == "attn_prefill" and q == kvl and "prefill" in phases:
                ctx[(b, q, h, kv, d)] = {**key_row(b, q, h, kv, d, 0), "latency": t * MS_PER_S,
                                         "accelcal_source": "measured"}
            elif r["op"] == "attn_decode" and q == 1 and "decode" in phases:
                gen[(b, kvl - 1, h, kv, d)] = {**key_row(b, 1, h, kv, d, kvl - 1), "latency": t * MS_PER_S,
                                               "accelcal_source": "measured"}
    return list(ctx.values()), list(gen.values())


def _nccl_rows(p: Profile) -> list[dict[str, Any]]:
    rows = []
    for c in p.collectives:
        if c.scope != "intra_node" or c.op not in AIC_COMM_OPS or c.group_size < 2 or c.kernel is not None:
            continue
        for elems in GRID_MESSAGE_ELEMENTS:
            try:
                t = p.collective_time_s(c.op, elems * NCCL_ELEMENT_BYTES, c.group_size, c.scope).time_s
            except MissingMeasurement:
                continue
            rows.append({"op_name": AIC_COMM_OPS[c.op], "nccl_dtype": NCCL_DTYPE, "num_gpus": c.group_size,
                         "message_size": elems, "latency": t * MS_PER_S, "accelcal_source": "fit"})
    return rows


def _write_table(path: Path, rows: list[dict[str, Any]], common: dict[str, str]) -> None:
    # aiconfigurator's tables are Parquet: a missing pyarrow raises ModuleNotFoundError, and accelcal.cli.main names
    # the 'parquet' extra and the command
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = {k: [v] * len(rows) for k, v in common.items()}
    for k in rows[0]:
        cols[k] = [r[k] for r in rows]
    atomic_write_with(path, lambda tmp: pq.write_table(pa.table(cols), tmp))


def _meta(framework: str, version: str, tables: dict[str, list[dict[str, Any]]], p: Profile,
          profile_path: str | os.PathLike | None, csvs: list[Path], scope: str | None = None) -> str:
    """``scope``: the tables are that scope's collectives, whose source and versions are their fabric part's."""
    doc = {
        "schema_version": 1,
        "provenance": "accelcal",
        "runtime": {"framework": framework, "version": version},
        "tables": {t: {"status": "partial"} for t in tables},
        "accelcal": {
            "profile": p.identity.name,
            "profile_path": str(profile_path) if profile_path else "",
            "source": p.identity.source,
            "device_name": p.identity.device_name,
            "host": p.identity.host,
            "date": p.identity.date,
            "command": p.identity.command,
            "versions": dict(p.identity.versions),
            "raw_data": [str(c) for c in csvs],
            "rows": {t: {"measured": sum(r["accelcal_source"] == "measured" for r in rows),
                         "fit": sum(r["accelcal_source"] == "fit" for r in rows)} for t, rows in tables.items()},
            "note": "status partial: a quick accelcal sweep; fit rows are the profile's fitted models on a grid",
        },
    }
    part = fabric_part(p, scope) if scope is not None else None
    if part is not None:
        # the rows are a fabric part's fits (a published log, say), not the device profile's measurements: its
        # source, versions and origin, none of the device run's host, date, command or raw files
        for k in ("host", "date", "command", "raw_data"):
            doc["accelcal"].pop(k)
        doc["accelcal"].update({"source": part.source, "collectives_from": part.name, "versions": dict(part.versions),
                                "origin": part.origin,
                                "note": f"status partial: {p.identity.name}'s {scope} collectives are {part.name}'s "
                                        f"({part.source}); fit rows are its fitted models on a grid"})
    return yaml.safe_dump(doc, sort_keys=False)


def export_aiconfigurator(p: Profile, out_dir: str | os.PathLike, *, profile_path: str | os.PathLike | None = None,
                          datasheet: Profile | None = None, fill_from: str | os.PathLike | None = None,
                          backend: str = "vllm") -> AicExport:
    """Write ``out_dir/systems/<name>.yaml`` and its perf tables; return what was written and every warning.

    Every file is written into a staging folder inside ``out_dir`` first and moved into place only once all of them
    are written: a failed export (a folder it cannot write, a missing extra) leaves ``out_dir`` as it was."""
    import shutil
    import tempfile

    out = Path(out_dir)
    made = [a for a in (out, *out.parents) if not a.exists()]  # folders this export makes: a failure takes them away
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".partial-export-", dir=out))
    ok = False
    try:
        res = _export_into(p, out, stage, profile_path, datasheet, fill_from, backend)
        for src in sorted(q for q in stage.rglob("*") if q.is_file()):
            dest = out / src.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
        ok = True
        return res
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ok and made:
            shutil.rmtree(made[-1], ignore_errors=True)


def _export_into(p: Profile, out_dir: Path, stage: Path, profile_path, datasheet, fill_from, backend) -> AicExport:
    """export_aiconfigurator's work: the paths it reports are under ``out_dir``, the files go to ``stage``."""

    def staged(path: Path) -> Path:
        return stage / path.relative_to(out_dir)

    if backend not in ("vllm", "sglang", "trtllm"):
        raise ValueError(f"export_aiconfigurator: backend must be vllm, sglang or trtllm, got {backend!r}")
    name = system_name(p)
    torch_v = p.identity.versions.get("torch", "") or "unknown"
    version = "accelcal-torch" + re.sub(r"[^0-9A-Za-z.]+", "_", torch_v)
    systems = Path(out_dir) / "systems"
    res = AicExport(systems_dir=systems, system=name, backend=backend, version=version, spec={})
    env, csvs = _raw_env(p, profile_path)
    if profile_path is not None and not csvs:
        res.warnings.append(f"no raw CSV found beside {profile_path} (identity.raw_data {p.identity.raw_data}): "
                            "attention tables hold fitted values only")
    fill = None
    if fill_from is not None:
        from accelcal.safe_io import load_yaml

        fill = load_yaml(fill_from, what="--fill-from") or {}
        if not isinstance(fill, dict) or not isinstance(fill.get("gpu"), dict) or not isinstance(fill.get("node"), dict):
            from accelcal.filekinds import document_kind

            kind = document_kind(fill)
            raise ValueError(f"--fill-from {fill_from}: not an aiconfigurator system YAML (expected its 'gpu:' and "
                             f"'node:' sections, as in aiconfigurator's systems/<name>.yaml)"
                             + (f"; it is {kind[1]}" if kind else ""))
    res.spec = _spec(p, env, name, datasheet, fill, str(fill_from), res)
    if p.is_datasheet:
        res.warnings.append("datasheet prior: no measured tables, only the system YAML")

    data = systems / res.spec["data_dir"]
    fw = {"framework": "accelcal", "version": version, "device": p.identity.device_name}
    groups: list[tuple[Path, str, str, dict[str, list[dict[str, Any]]], str]] = []
    gemm = [] if p.is_datasheet else _gemm_rows(p)
    if gemm:
        groups.append((data / "gemm" / backend / version, backend, version, {"gemm_perf": gemm}, "accelcal_torch_matmul"))
    else:
        res.warnings.append(f"no GEMM table: no measured GEMM points in {sorted(AIC_GEMM_DTYPES)}")
    ctx, gen = ([], []) if p.is_datasheet else _attention_rows(p, csvs)
    attn = {k: v for k, v in (("context_attention_perf", ctx), ("generation_attention_perf", gen)) if v}
    if attn:
        groups.append((data / "attention" / backend / version, backend, version, attn, "accelcal_torch_sdpa"))
    else:
        res.warnings.append(f"no attention tables: no attention fit in {sorted(AIC_ATTN_DTYPES)}")
    intra_part = fabric_part(p, "intra_node")
    # a composed fabric's NCCL (its log's), not the device run's
    nccl_v = intra_part.versions.get("nccl") if intra_part is not None else res.spec["misc"].get("nccl_version")
    comm = [] if p.is_datasheet else _nccl_rows(p)
    if comm and nccl_v:
        groups.append((data / "comm" / "nccl" / nccl_v, "nccl", nccl_v, {"nccl_perf": comm}, "NCCL"))
        if res.spec["misc"].get("nccl_version") != nccl_v:
            # aiconfigurator finds the table by misc.nccl_version (sdk/operations/communication.py): one value for both
            res.spec["misc"]["nccl_version"] = str(nccl_v)
            res.provenance["misc.nccl_version"] = (f"{intra_part.source} ({intra_part.name}): the NCCL its "
                                                   f"collectives ran on, which the nccl_perf table is filed under")
    elif comm:
        res.warnings.append("no nccl_perf table: collectives were measured but no NCCL version is recorded "
                            "(gloo or another library; aiconfigurator's nccl_perf models NCCL)")
    else:
        res.warnings.append("no nccl_perf table: the profile has no intra-node collective fits")
    engine_ar = sorted({c.kernel for c in p.collectives if c.kernel and c.op == "all_reduce"})
    res.warnings.append("no custom_allreduce_perf table: " + (
        f"the profile's engine all-reduce fits ({', '.join(engine_ar)}, from "
        f"{collectives_origin(p, 'intra_node')[1]}) are not exported to it" if engine_ar
        else "accelcal does not measure engine custom all-reduce kernels"))

    for folder, framework, ver, tables, kernel_source in groups:
        for t, rows in tables.items():
            op = {"gemm_perf": "gemm", "nccl_perf": None}.get(t, t.replace("_perf", ""))
            common = dict(fw, op_name=op, kernel_source=kernel_source) if op else dict(fw, kernel_source=kernel_source)
            if framework == "nccl":
                common["version"] = ver
            _write_table(staged(folder / f"{t}.parquet"), rows, common)
            res.tables[str((folder / f"{t}.parquet").relative_to(systems))] = len(rows)
        atomic_write_text(staged(folder / "collection_meta.yaml"), _meta(framework, ver, tables, p, profile_path, csvs,
                                                                 "intra_node" if framework == "nccl" else None))

    atomic_write_text(staged(systems / "query_versions.yaml"), yaml.safe_dump(
        {"schema_version": 1, "overrides": {name: {backend: {"current": version, "previous": None}}}}, sort_keys=False))
    atomic_write_text(staged(systems / f"{name}.yaml"), yaml.safe_dump(res.spec, sort_keys=False))
    atomic_write_text(staged(out_dir / "accelcal_export.yaml"), yaml.safe_dump({
        "format": "aiconfigurator", "system": name, "backend": backend, "perf_db_version": version,
        "systems_paths": str(systems), "profile": p.identity.name, "tables": res.tables,
        "provenance": res.provenance, "warnings": res.warnings}, sort_keys=False))
    return res
