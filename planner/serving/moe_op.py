"""A serving step's routed experts costed as the engine's own MoE op, from a published table (``--moe-table``).

    from accelcal.calibrate.moe_table import MoeOpTable
    from accelcal.planner.serving.moe_op import EngineMoeOp
    op = EngineMoeOp.resolve(MoeOpTable.load("profiles/engine-kernels/h100-vllm-0.14.0-moe.yaml"), profile, model,
                             parallelism, engine, "fp8_e4m3", "block")
    print(op.note)                           # which entry answers, or why none does
    costed = op.apply(costed_layer, tokens, coster.launch_of)  # MoE-op nodes replaced by the table's time

The planner's layer DAG splits a MoE layer's routed experts into routing (top-k), grouped gate/up and down GEMMs,
the activation and the gather/scatter, each costed from the device profile.  The engines run those as one op of
their own, slower than that sum at prefill sizes (``benchmarks/engine_moe_tables.py``).  Where a table for the
engine and device has the model's expert shape and layout, ``apply`` gives the whole op the table's time at the
tokens entering it on one device, on the first of its nodes, and zero device time to the rest; the op's nodes
count as self-timed (the publication timed the op with its kernels' launches in a CUDA graph), so graph replay adds
no per-kernel cost for them, while an eager step still dispatches their kernels.  The router GEMM, shared experts
and every collective stay the profile's.  Only layouts with every expert TP-split (EP 1, moe_ep 1 in the table)
read it: a published EP case does not record which rank's load it timed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from accelcal.calibrate.moe_table import MoeOpTable, moe_weight_kind
from accelcal.calibrate.priors import same_device_model
from accelcal.models import ModelConfig

from ..parallelism import Parallelism

__all__ = ["EngineMoeOp", "MOE_OP_NODES", "add_moe_table_argument", "check_tables", "load_moe_tables", "pick_table"]

MOE_OP_NODES = ("topk", "expert_scan", "experts_gate_up_input_quant", "experts_gate_up", "experts_act_mul",
                "experts_down_input_quant", "experts_down", "expert_gather_scatter")
"""The layer DAG's nodes (planner/dag.py ``_moe``) inside an engine's MoE op: what a published ``moe_perf`` case
times given the router's logits (aiconfigurator's collectors call the engine's MoE module forward with them)."""

ANSWERING = "experts_gate_up"
"""The node that carries the op's time."""


@dataclasses.dataclass
class EngineMoeOp:
    """Whether and how one replica's MoE layers take a table's op time."""

    table: MoeOpTable | None
    """The table answering, None where it cannot (``note`` says why)."""
    key: tuple = ()
    """(weights, hidden, expert ffn, top-k, experts, moe_tp, moe_ep) looked up."""
    token_scale: int = 1
    """Tokens entering the op per token of the replica's step (attention-DP replicas gathered into it)."""
    note: str = ""
    """What predict prints: the entry used, or why the profile's estimate stays."""

    @classmethod
    def resolve(cls, table: MoeOpTable | None, profile: Any, model: ModelConfig, par: Parallelism, engine: Any,
                weight_dtype: str, fp8_scaling: str) -> "EngineMoeOp":
        """Check ``table`` against the engine, device and layout; raise ValueError where it was given for another
        engine or device (a wrong file), return an inactive op with a note where it lacks this shape or layout."""
        if table is None:
            return cls(None)
        if table.engine != engine.name:
            raise ValueError(f"--moe-table {table.origin}: is {table.engine}'s MoE op; this prediction runs "
                             f"{engine.name}")
        check_tables([table], profile)
        if not model.is_moe:
            return cls(None, note=f"--moe-table {table.origin}: not used: {model.name} is dense (no routed experts)")
        kind = moe_weight_kind(weight_dtype, fp8_scaling, model.expert_weight_dtype)
        shape = (model.hidden_size, model.expert_ffn_size, model.top_k, model.num_experts)
        if par.ep > 1:
            # which EP rank's load a published EP case times (the busiest under its skewed routing, or a mean one)
            # is not recorded with it, and accelcal's EP costing takes the busiest rank's expected load
            return cls(None, note=f"routed experts: {table.origin} not used at EP {par.ep}: only its entries with "
                                  f"every expert TP-split (moe_ep 1) are read, since the table does not record which "
                                  f"rank's load an EP case timed; the profile's estimate stays")
        key = (kind, *shape, par.expert_tp, par.ep)
        entry = table.entry(*key)
        if entry is None:
            return cls(None, note=f"routed experts: {table.origin} has no {kind} entry for hidden {shape[0]}, expert "
                                  f"ffn {shape[1]}, top-{shape[2]} of {shape[3]} at moe_tp {par.expert_tp} moe_ep "
                                  f"{par.ep} (it has {table.shapes_near(kind, *shape)}); the profile's estimate stays")
        cite = table.citations[0]
        return cls(table, key, par.moe_replicas,
                   f"routed experts: each MoE layer's op (routing, grouped GEMMs, activation, gather/scatter) is "
                   f"{table.engine} {table.engine_version}'s own {entry.kernel} as published for {table.device}, "
                   f"its {kind} entry at moe_tp {par.expert_tp} ({table.origin}, {cite}; {entry.distribution} "
                   f"routing, {entry.tokens[0]}..{entry.tokens[-1]} tokens collected, timed with the op's kernel "
                   f"launches in it), not the profile's GEMM estimate: published, not measured here")

    beyond_tokens: int = 0
    """The most tokens a step queried the op at past the table's largest count (0: none), for predict's note."""

    @property
    def active(self) -> bool:
        return self.table is not None

    def beyond_note(self) -> str:
        """A note when some step ran the op past the table's token range (its time scaled by tokens), else ''."""
        if not self.beyond_tokens or self.table is None:
            return ""
        last = self.table.entry(*self.key).tokens[-1]
        return (f"routed experts: steps of up to {self.beyond_tokens} tokens ran the op past the {last} tokens "
                f"{self.table.origin} collected; its time there is the largest case's scaled by tokens (extrapolated)")

    def apply(self, costed: Any, tokens: int, launch_of: Any) -> Any:
        """``costed`` (a CostedDAG of one layer over ``tokens``) with its MoE-op nodes replaced by the table's op;
        ``launch_of(nodes, device_s)``: the Coster's launch rule, rerun since the op's figure holds its own kernels'
        launches (timed in a CUDA graph), so its nodes count as self-timed."""
        if self.table is None:
            return costed
        est = self.table.time_s(*self.key, tokens * self.token_scale)
        if est.extrapolated and tokens * self.token_scale > self.beyond_tokens:
            self.beyond_tokens = tokens * self.token_scale
        nodes = []
        for n in costed.nodes:
            if n.name == ANSWERING:
                share = float(n.params.get("layer_share", 1.0))
                detail = est.detail + (f" x {share:.4g} (share of the layers)" if share != 1.0 else "")
                # the category stays the profile's reading of the op (weight-streaming at decode sizes)
                nodes.append(dataclasses.replace(n, device_s=est.time_s * share, source=est.source, detail=detail,
                                                 extrapolated=est.extrapolated, self_timed=True, launch_s=0.0))
            elif n.name in MOE_OP_NODES:
                nodes.append(dataclasses.replace(n, device_s=0.0, detail=f"inside the engine's MoE op ({ANSWERING})",
                                                 self_timed=True, launch_s=0.0))
            else:
                nodes.append(n)
        device = sum(n.device_s for n in nodes)
        return dataclasses.replace(costed, nodes=nodes, device_s=device, launch_s=launch_of(nodes, device))


def pick_table(tables: Any, engine_name: str, strict: bool = True) -> MoeOpTable | None:
    """The table among ``tables`` (already through check_tables: one per engine) for ``engine_name``; None when
    none is given.  ``strict``: tables given but none for this engine is an error (predict runs one engine; the
    search, several, takes each engine's where it has one)."""
    tables = list(tables or ())
    mine = [t for t in tables if t.engine == engine_name]
    if not mine and tables and strict:
        raise ValueError(f"--moe-table: {', '.join(f'{t.origin} is {t.engine}' for t in tables)}; none is "
                         f"{engine_name}'s MoE op")
    return mine[0] if mine else None


def add_moe_table_argument(parser: Any) -> None:
    """``--moe-table FILE`` (repeatable), as predict and plan take it."""
    parser.add_argument("--moe-table", action="append", default=[], metavar="FILE",
                        help="a published table of an engine's MoE op on this device (accelcal import moe-table; "
                             "shipped: profiles/engine-kernels/): the routed experts of a MoE model take the op's "
                             "time from it, for its engine, where it has the model's expert shape and layout "
                             "(repeatable, one per engine)")


def load_moe_tables(paths: Any) -> list[MoeOpTable]:
    """The tables at ``paths`` (--moe-table), each file read once however it is spelled."""
    import os

    real: dict[str, str] = {}
    for p in paths or []:
        real.setdefault(os.path.realpath(p), p)
    return [MoeOpTable.load(p, what="--moe-table") for p in real.values()]


def check_tables(tables: Any, profile: Any) -> None:
    """Every table in ``tables`` was collected on ``profile``'s device model, and no engine has two: else a
    ValueError naming the file (checked before any costing, so a wrong file is bad input, not a layout's
    rejection)."""
    dev = str(getattr(profile.identity, "device_name", ""))
    seen: dict[str, str] = {}
    for t in tables or ():
        if not same_device_model(t.device, dev):
            raise ValueError(f"--moe-table {t.origin}: was collected on {t.device}; the profile "
                             f"{profile.identity.name} is {dev or 'a device with no name'}")
        if t.engine in seen:
            raise ValueError(f"--moe-table: {seen[t.engine]} and {t.origin} are both {t.engine}'s; give one per engine")
        seen[t.engine] = t.origin
