"""An engine's MoE op timed on one device: a published latency table by tokens, one entry per expert shape.

    from accelcal.calibrate.moe_table import MoeOpTable
    t = MoeOpTable.load("profiles/engine-kernels/h100-vllm-0.14.0-moe.yaml")
    est = t.time_s("fp8_e4m3_block", hidden_size=7168, expert_ffn_size=2048, top_k=8, experts=256,
                   moe_tp=8, moe_ep=1, tokens=4096)
    est.time_s, est.detail          # seconds of one MoE layer's routed-expert op on one device, and how

A serving engine runs a MoE layer's routed experts as one op of its own (vLLM's and SGLang's Triton fused_moe,
TensorRT-LLM's CUTLASS MoE): routing, the token permutation, the gate/up and down grouped GEMMs, the activation and
the weighted sum back.  The kernel suite times torch's GEMMs and grouped GEMM, not these ops, and on the engines
they run slower than the dense-GEMM estimate at prefill sizes (``benchmarks/engine_moe_tables.py``).  A table made
by ``accelcal import moe-table`` from a published collection (NVIDIA aiconfigurator's ``moe_perf`` tables) lets the
serving costing take that op's time instead, for the engine and device it was collected on; it is ``published``,
never shown as measured here.  Queries interpolate log-log between the collected token counts and scale linearly
in tokens past the largest (flagged ``extrapolated``); an expert shape or layout the table lacks answers None and
the costing keeps the profile's estimate.

Weights are named in accelcal's terms (``WEIGHT_KINDS``): bf16, fp8_e4m3 (per-tensor scales), fp8_e4m3_block
(block-scaled), mxfp4 and int4 (weight-only, activations bf16; int4 at the group size the publication ran).
"""

from __future__ import annotations

import bisect
import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from accelcal.safe_io import dumps_finite, load_yaml

from .profile import Estimate
from .profile.errors import ProfileError
from .profile.perf import interp_log

__all__ = ["MoeOpEntry", "MoeOpTable", "PUBLISHED_WEIGHTS", "WEIGHT_KINDS", "KIND", "moe_weight_kind"]

KIND = "moe_op_table"
"""The file's ``kind`` key: tells a MoE op table from a profile."""

WEIGHT_KINDS = ("bf16", "fp8_e4m3", "fp8_e4m3_block", "mxfp4", "int4")
"""Routed-expert weight formats a table entry may hold."""

PUBLISHED_WEIGHTS = {"bfloat16": "bf16", "fp8": "fp8_e4m3", "fp8_block": "fp8_e4m3_block", "w4a16_mxfp4": "mxfp4",
                     "int4_wo": "int4"}
"""aiconfigurator's ``moe_dtype`` names -> WEIGHT_KINDS (its ``common.MoEQuantMode`` values; other modes, e.g.
nvfp4, are skipped on import)."""

DISTRIBUTION_ORDER = ("balanced", "power_law_1.01", "power_law_1.2")
"""Token-to-expert routing a query prefers, first found wins: uniform routing as the planner's DAG assumes, then
the least skewed power law aiconfigurator collects (its default workload, ``sdk/config.py``
``workload_distribution = "power_law"``, with a per-model exponent)."""


def moe_weight_kind(weight_dtype: str, fp8_scaling: str = "per_tensor", expert_weight_dtype: str = "") -> str:
    """The WEIGHT_KINDS name of a model's routed experts: their weight-only storage where they have one (gpt-oss
    mxfp4, Kimi int4), else the GEMM dtype with fp8's scaling."""
    if expert_weight_dtype:
        # 4-bit integers at any group size are one kind: the publications name them int4_wo without the group
        return "int4" if expert_weight_dtype.startswith("int4") else expert_weight_dtype
    if weight_dtype == "fp8_e4m3" and fp8_scaling == "block":
        return "fp8_e4m3_block"
    return weight_dtype


@dataclass(frozen=True)
class MoeOpEntry:
    """One expert shape and layout: the op's time at each collected token count."""

    weights: str
    """Routed-expert weight format (WEIGHT_KINDS)."""
    kernel: str
    """The engine's op as the publication names it (e.g. ``vllm_fused_moe``, ``moe_torch_flow_cutlass``)."""
    hidden_size: int
    """Model hidden size (the experts' input and output width)."""
    expert_ffn_size: int
    """One expert's intermediate size, before any TP split."""
    top_k: int
    """Experts each token is routed to."""
    experts: int
    """Routed experts in the layer (all ranks together)."""
    moe_tp: int
    """Ways each expert is split (its intermediate size divided by this on one device)."""
    moe_ep: int
    """Expert-parallel ranks (one device holds experts / moe_ep of them)."""
    distribution: str
    """Token-to-expert routing the collection used (``balanced``, ``power_law_<alpha>``)."""
    tokens: tuple[int, ...]
    """Tokens entering the op on this device, ascending."""
    time_s: tuple[float, ...]
    """The op's time at each of ``tokens``, seconds."""

    @property
    def key(self) -> tuple:
        return (self.weights, self.hidden_size, self.expert_ffn_size, self.top_k, self.experts, self.moe_tp,
                self.moe_ep)

    def describe(self) -> str:
        return (f"{self.weights} hidden {self.hidden_size}, expert ffn {self.expert_ffn_size}, top-{self.top_k} of "
                f"{self.experts}, moe_tp {self.moe_tp}, moe_ep {self.moe_ep}")

    def at(self, tokens: float) -> tuple[float, bool, str]:
        """(seconds, beyond the collected range, how) at ``tokens``: log-log between collected counts, held below
        the smallest, proportional to tokens past the largest (compute-bound work grows with the tokens)."""
        xs, ys = self.tokens, self.time_s
        if tokens <= xs[0]:
            return ys[0], tokens < xs[0], f"{xs[0]} tokens' time (the smallest collected)"
        if tokens >= xs[-1]:
            scale = tokens / xs[-1]
            return (ys[-1] * scale, tokens > xs[-1],
                    f"{xs[-1]} tokens' time x {scale:.3g} (past the largest collected, scaled by tokens)"
                    if scale > 1 else f"collected at {xs[-1]} tokens")
        i = bisect.bisect_left(xs, tokens)
        if xs[i] == tokens:
            return ys[i], False, f"collected at {tokens} tokens"
        # log(time) linear in log(tokens): the profile's own log-axis interpolation over the log times
        t = math.exp(interp_log([(x, math.log(y)) for x, y in zip(xs, ys)], tokens))
        return t, False, f"log-log between {xs[i - 1]} and {xs[i]} tokens"


@dataclass
class MoeOpTable:
    """One engine's MoE op on one device (a ``kind: moe_op_table`` YAML file)."""

    device: str
    """The device the table was collected on, as the publication names it (``NVIDIA H100 80GB HBM3``)."""
    engine: str
    """Serving engine whose op this is (an engine preset name: vllm, sglang, trtllm)."""
    engine_version: str
    """The engine release the publication collected."""
    citations: list[str]
    """Where the numbers were published (file and commit)."""
    entries: list[MoeOpEntry]
    """One per expert shape, layout and routing distribution."""
    source: str = "published"
    """Always ``published``: accelcal did not measure these."""
    command: str = ""
    """The accelcal command that wrote the file."""
    date: str = ""
    """When the file was written (UTC date)."""
    raw_sha256: dict[str, str] = field(default_factory=dict)
    """sha256 of each file the table was made from."""
    origin: str = "<table>"
    """Path the table was loaded from (errors and notes name it)."""

    def __post_init__(self) -> None:
        self._by_key: dict[tuple, list[MoeOpEntry]] = {}
        for e in self.entries:
            self._by_key.setdefault(e.key, []).append(e)
        for k, es in self._by_key.items():
            es.sort(key=lambda e: (_distribution_rank(e.distribution), e.distribution))
            dists = [e.distribution for e in es]
            if len(set(dists)) != len(dists):
                raise ProfileError(f"{self.origin}: two entries for {es[0].describe()} with distribution "
                                   f"{next(d for d in dists if dists.count(d) > 1)}; keep one")

    def entry(self, weights: str, hidden_size: int, expert_ffn_size: int, top_k: int, experts: int, moe_tp: int,
              moe_ep: int) -> MoeOpEntry | None:
        """The entry for this shape and layout (the preferred routing distribution, DISTRIBUTION_ORDER), or None."""
        es = self._by_key.get((weights, hidden_size, expert_ffn_size, top_k, experts, moe_tp, moe_ep))
        return es[0] if es else None

    def time_s(self, weights: str, hidden_size: int, expert_ffn_size: int, top_k: int, experts: int, moe_tp: int,
               moe_ep: int, tokens: float) -> Estimate | None:
        """One MoE layer's routed-expert op over ``tokens`` tokens on one device, or None where the table has no
        entry for the shape and layout."""
        e = self.entry(weights, hidden_size, expert_ffn_size, top_k, experts, moe_tp, moe_ep)
        if e is None:
            return None
        t, outside, how = e.at(tokens)
        return Estimate(t, outside, f"{self.engine} {self.engine_version} {e.kernel} on {self.device}, "
                                    f"{e.distribution} routing: {how} (published, {self.origin})",
                        f"moe_op_table[{e.describe()}]", ("published",) + (("extrapolated",) if outside else ()))

    def shapes_near(self, weights: str, hidden_size: int, expert_ffn_size: int, top_k: int, experts: int) -> str:
        """What the table has for this expert shape, for a miss's note: the layouts of ``weights``, else the weight
        formats it has."""
        same = [e for e in self.entries
                if (e.hidden_size, e.expert_ffn_size, e.top_k, e.experts) == (hidden_size, expert_ffn_size, top_k, experts)]
        if not same:
            return "nothing of this shape"
        mine = sorted({(e.moe_tp, e.moe_ep) for e in same if e.weights == weights})
        if mine:
            return f"{weights} at (moe_tp, moe_ep) {', '.join(f'({t}, {p})' for t, p in mine)}"
        return f"this shape in {', '.join(sorted({e.weights for e in same}))} only"

    # ---- files ----
    def to_dict(self) -> dict:
        return {"kind": KIND, "schema_version": 1, "device": self.device, "engine": self.engine,
                "engine_version": self.engine_version, "source": self.source, "citations": list(self.citations),
                "command": self.command, "date": self.date, "raw_sha256": dict(self.raw_sha256),
                "entries": [{"weights": e.weights, "kernel": e.kernel, "hidden_size": e.hidden_size,
                             "expert_ffn_size": e.expert_ffn_size, "top_k": e.top_k, "experts": e.experts,
                             "moe_tp": e.moe_tp, "moe_ep": e.moe_ep, "distribution": e.distribution,
                             "tokens": list(e.tokens), "time_s": [float(f"{t:.6g}") for t in e.time_s]}
                            for e in self.entries]}

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (a crash leaves the old file whole)."""
        import json

        import yaml

        from accelcal.atomic import atomic_write_text

        data = json.loads(dumps_finite(self.to_dict(), what=f"MoE op table {path}"))
        entries = data.pop("entries")
        # one line per entry: a table of a thousand entries stays readable and diffable
        text = (yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120) + "entries:\n"
                + "".join("- " + yaml.safe_dump(e, sort_keys=False, default_flow_style=True, width=1 << 20)
                          for e in entries))
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike, what: str = "MoE op table") -> "MoeOpTable":
        data = load_yaml(path, what=what)
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, d: Any, origin: str = "<dict>") -> "MoeOpTable":
        if not isinstance(d, dict):
            raise ProfileError(f"{origin}: expected a mapping with kind: {KIND}, got {type(d).__name__}")
        if d.get("kind") != KIND:
            what = ("has no kind key (a profile?)" if "kind" not in d else f"has kind {d.get('kind')!r}")
            raise ProfileError(f"{origin}: not a MoE op table: it {what}; expected kind: {KIND!r}, a file written by "
                               f"accelcal import moe-table (shipped: profiles/engine-kernels/*.yaml)")
        if d.get("schema_version") != 1:
            raise ProfileError(f"{origin}: schema_version {d.get('schema_version')!r}, expected 1")
        if d.get("source") != "published":
            raise ProfileError(f"{origin}: source {d.get('source')!r}, expected 'published'")
        for k in ("device", "engine", "engine_version"):
            if not isinstance(d.get(k), str) or not d[k].strip():
                raise ProfileError(f"{origin}: {k}: expected a non-empty string, got {d.get(k)!r}")
        cites = d.get("citations")
        if not isinstance(cites, list) or not cites or not all(isinstance(c, str) and c.strip() for c in cites):
            raise ProfileError(f"{origin}: citations: expected a non-empty list of where the numbers were published")
        raw = d.get("entries")
        if not isinstance(raw, list) or not raw:
            raise ProfileError(f"{origin}: entries: expected a non-empty list")
        entries = [_entry(e, f"{origin}: entries[{i}]") for i, e in enumerate(raw)]
        sha = d.get("raw_sha256") or {}
        if not isinstance(sha, dict):
            raise ProfileError(f"{origin}: raw_sha256: expected a mapping of file -> sha256")
        return cls(d["device"], d["engine"], d["engine_version"], list(cites), entries, "published",
                   str(d.get("command") or ""), str(d.get("date") or ""), {str(k): str(v) for k, v in sha.items()},
                   origin)


def _distribution_rank(d: str) -> int:
    return DISTRIBUTION_ORDER.index(d) if d in DISTRIBUTION_ORDER else len(DISTRIBUTION_ORDER)


MIN_LAYER_S = 1e-6
"""Shortest plausible MoE layer op, seconds: a router, a grouped GEMM and a combine are several kernel launches of a
few microseconds each (the shipped tables' fastest entry is about 20 us); below it a table is in the wrong unit."""
MAX_LAYER_S = 10.0
"""Longest plausible MoE layer op, seconds."""

_INT_KEYS = ("hidden_size", "expert_ffn_size", "top_k", "experts", "moe_tp", "moe_ep")


def _entry(e: Any, where: str) -> MoeOpEntry:
    if not isinstance(e, dict):
        raise ProfileError(f"{where}: expected a mapping, got {type(e).__name__}")
    if e.get("weights") not in WEIGHT_KINDS:
        raise ProfileError(f"{where}.weights: expected one of {list(WEIGHT_KINDS)}, got {e.get('weights')!r}")
    for k in _INT_KEYS:
        v = e.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ProfileError(f"{where}.{k}: expected an integer >= 1, got {v!r}")
    if e["top_k"] > e["experts"]:
        raise ProfileError(f"{where}: top_k {e['top_k']} > experts {e['experts']}")
    for k in ("kernel", "distribution"):
        if not isinstance(e.get(k), str) or not e[k]:
            raise ProfileError(f"{where}.{k}: expected a non-empty string, got {e.get(k)!r}")
    toks, times = e.get("tokens"), e.get("time_s")
    if not isinstance(toks, list) or not isinstance(times, list) or not toks or len(toks) != len(times):
        raise ProfileError(f"{where}: tokens and time_s must be non-empty lists of one length, got "
                           f"{_len(toks)} and {_len(times)}")
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in toks):
        raise ProfileError(f"{where}.tokens: expected integers >= 1, got {toks[:8]}")
    if any(b <= a for a, b in zip(toks, toks[1:])):
        raise ProfileError(f"{where}.tokens: expected strictly ascending counts, got {toks[:8]}...")
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and MIN_LAYER_S <= t < MAX_LAYER_S
               and math.isfinite(t) for t in times):
        bad = next(t for t in times if not (isinstance(t, (int, float)) and not isinstance(t, bool)
                                            and MIN_LAYER_S <= t < MAX_LAYER_S and math.isfinite(t)))
        raise ProfileError(f"{where}.time_s: expected seconds in [{MIN_LAYER_S:g}, {MAX_LAYER_S:g}) (one MoE layer: "
                           f"its kernels take microseconds at least), got {bad!r}: a unit slip (the published "
                           f"latency column is in ms)?")
    return MoeOpEntry(e["weights"], e["kernel"], *(e[k] for k in _INT_KEYS), e["distribution"], tuple(toks),
                      tuple(float(t) for t in times))


def _len(x: Any) -> str:
    return str(len(x)) if isinstance(x, list) else type(x).__name__


def table_from_rows(rows: Sequence[dict], device: str, engine: str, engine_version: str, citations: list[str],
                    origin: str = "<rows>") -> tuple[MoeOpTable, list[str]]:
    """(table, skip notes) from published rows (aiconfigurator ``moe_perf`` columns: moe_dtype, num_tokens,
    hidden_size, inter_size, topk, num_experts, moe_tp_size, moe_ep_size, distribution, latency in ms,
    kernel_source).  Rows of a weight format outside PUBLISHED_WEIGHTS are skipped and counted in the notes."""
    groups: dict[tuple, dict[int, list[float]]] = {}
    skipped: dict[str, int] = {}

    def whole(r: dict, i: int, col: str) -> int:
        v = r[col]
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        if not (math.isfinite(f) and f == int(f) and f >= 1):
            raise ProfileError(f"{origin}: row {i + 1}: {col} {v!r}, expected an integer >= 1")
        return int(f)

    for i, r in enumerate(rows):
        w = PUBLISHED_WEIGHTS.get(str(r["moe_dtype"]))
        if w is None:
            skipped[str(r["moe_dtype"])] = skipped.get(str(r["moe_dtype"]), 0) + 1
            continue
        try:
            lat_ms = float(r["latency"])
        except (TypeError, ValueError):
            lat_ms = float("nan")
        if not (lat_ms > 0 and math.isfinite(lat_ms)):
            raise ProfileError(f"{origin}: row {i + 1}: latency {r['latency']!r}, expected a positive time in ms")
        key = (w, str(r["kernel_source"]), *(whole(r, i, c) for c in ("hidden_size", "inter_size", "topk",
                                                                        "num_experts", "moe_tp_size", "moe_ep_size")),
               str(r["distribution"]))
        n = whole(r, i, "num_tokens")
        groups.setdefault(key, {}).setdefault(n, []).append(lat_ms * 1e-3)
    entries = []
    repeated, spread = 0, 1.0
    for (w, kern, h, f, k, e, tp, ep, dist), pts in sorted(groups.items()):
        toks = sorted(pts)
        times = []
        for t in toks:
            # a case collected more than once (the publication's reruns) counts once, at its median
            vals = sorted(pts[t])
            if len(vals) > 1:
                repeated += 1
                spread = max(spread, vals[-1] / vals[0])
            mid = len(vals) // 2
            times.append(vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2)
        entries.append(MoeOpEntry(w, kern, h, f, k, e, tp, ep, dist, tuple(toks), tuple(times)))
    if not entries:
        raise ProfileError(f"{origin}: no row has a weight format accelcal reads ({sorted(PUBLISHED_WEIGHTS)}); "
                           f"found {sorted(skipped)}")
    notes = [f"skipped {n} row(s) of moe_dtype {d} (not one of {sorted(PUBLISHED_WEIGHTS)})"
             for d, n in sorted(skipped.items())]
    if repeated:
        notes.append(f"{repeated} case(s) collected more than once: each taken at its median (the repeats differ by "
                     f"up to x{spread:.3g})")
    table = MoeOpTable(device, engine, engine_version, citations, entries, date=_dt.date.today().isoformat(),
                       origin=origin)
    return table, notes
