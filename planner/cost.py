"""Cost each DAG node from the profile, launch overhead included.

    from accelcal.planner.cost import Coster
    from accelcal.planner.dag import build_layer_dag
    coster = Coster(profile, dtype="bf16", cuda_graphs=False)
    layer = coster.cost_dag(build_layer_dag(model, "decode", 8, 1, 2048))
    print(layer.total_s, layer.breakdown, layer.nodes[0].source)

Every node's device time is one profile query and carries that query's
``Estimate.source`` (the profile field) and ``detail``; nothing here is a
hardware constant.  Categories: a GEMM or attention node counts as ``memory``
when streaming its bytes at the profile's measured read bandwidth
(``memory_time_s(bytes, "read")``) takes at least half its time, else
``compute``; norms and elementwise kernels are ``memory``; collectives are
``communication``.  An elementwise node that names a measured ``group`` (the
torch-eager implementation's norm, residual add, rope and SiLU-mul, which the
kernel suite times as they are written) is costed from the profile's
``elementwise`` section in the model's dtype; otherwise, and for profiles
without that section, as a copy of the same bytes (``memory.copy``).

Launch overhead (kernel counts come from the DAG's implementation preset):

* CUDA graphs: every kernel adds the profile's per-kernel graph cost
  (``overheads.graph_kernel_s``), except those of a self-timed node (a
  measured elementwise group, whose graph-replayed figure holds them).
* Eager on an accelerator: the host issues one kernel per
  ``overheads.eager_dispatch_s`` (a real layer's op mix; ``eager_launch_s``
  where not measured) while the device runs the queue, so over a run
  of identical layers the layer takes ``max(device time + graph cost,
  kernels x eager_dispatch_s)``; the excess over device time is the
  ``launch`` share.  The graph cost (the CUDA-graph rule above, where the
  profile measured ``graph_kernel_s``) is a floor because replaying the
  same kernels from a graph only removes host work: eager is never costed
  below graph mode.
* Eager where the host *is* the device (``identity.device_type == "cpu"``,
  see :func:`host_runs_kernels`): nothing overlaps; each op's dispatch runs
  on the cores that then run the op.  Every node's profile query was
  measured the same way (host time per call, so it already holds one
  dispatch), and each further kernel of the node adds ``eager_launch_s``:
  launch = sum over nodes of ``(kernels - 1) x eager_launch_s`` (0 for a
  self-timed node, whose measured figure holds all its dispatches).

Collectives that cross nodes are looked up in the inter-node profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from accelcal.calibrate.profile import MissingCollective, MissingMeasurement, ProfileQueries
from accelcal.vocab import DTYPE_BYTES, SAMPLER_BYTES_PER_LOGIT, attention_flop_bytes, gemm_bytes

from .dag import DagNode, LayerDAG

__all__ = ["CATEGORIES", "Coster", "CostedDAG", "NodeCost", "activation_dtype", "host_runs_kernels", "model_coster"]

CATEGORIES = ("compute", "memory", "communication", "launch")


@dataclass(frozen=True)
class NodeCost:
    """The cost of one DAG node on one device."""

    name: str
    """Node name (matches DagNode.name)."""
    op: str
    """Node kind (gemm, grouped_gemm, attention, memory, collective)."""
    category: str
    """compute | memory | communication (launch is accounted per layer)."""
    device_s: float
    """Device time of the node, seconds."""
    kernels: float
    """Kernels it launches (weighted by its ``layer_share`` in a mean layer of two kinds, so possibly fractional)."""
    source: str
    """Profile field the time came from (Estimate.source)."""
    detail: str
    """How the profile answered (Estimate.detail)."""
    extrapolated: bool
    """True when the profile answered outside its measured range."""
    deps: tuple[str, ...] = ()
    """Edges, copied from the DAG."""
    params: dict = field(default_factory=dict)
    """Shapes and sizes, copied from the DAG."""
    launch_s: float = 0.0
    """This node's share of the layer's launch time where it can be attributed (host = device:
    its kernels beyond the one its measured figure holds); 0 where launches overlap device work."""
    self_timed: bool = False
    """The profile timed this node's very ops (a measured eager elementwise group): its figure already holds
    every kernel's dispatch (CPU) or in-graph cost (graph replay), so no per-kernel launch is added for it."""


@dataclass
class CostedDAG:
    """A layer DAG with every node costed."""

    dag: LayerDAG
    nodes: list[NodeCost]
    device_s: float
    """Sum of node device times (one stream: nodes run one after another)."""
    launch_s: float
    """Launch overhead not hidden behind device work."""
    launch_source: str
    """Profile field of the per-kernel launch cost."""
    launch_note: str = ""
    """Set when the launch cost is not measured (Estimate.detail), else empty."""

    @property
    def total_s(self) -> float:
        return self.device_s + self.launch_s

    @property
    def kernels(self) -> int:
        return sum(n.kernels for n in self.nodes)

    @property
    def breakdown(self) -> dict[str, float]:
        out = {c: 0.0 for c in CATEGORIES}
        for n in self.nodes:
            out[n.category] += n.device_s
        out["launch"] += self.launch_s
        return out

    @property
    def extrapolated(self) -> list[str]:
        return [text for text, _ in self.extrapolated_s]

    @property
    def extrapolated_s(self) -> list[tuple[str, float]]:
        """(what was extrapolated, seconds of this DAG it accounts for) for each answer outside the measured data."""
        out = [(f"{n.name}: {n.detail} ({n.source})", n.device_s) for n in self.nodes if n.extrapolated]
        if self.launch_note:
            out.append((f"launch: {self.launch_note} ({self.launch_source})", self.launch_s))
        return out


def host_runs_kernels(profile: ProfileQueries) -> bool:
    """True when the profile's device is the host CPU: kernel dispatch and kernel work share the cores.

    Then launches cannot overlap device work, and every measured figure in the
    profile (GEMM, memory, attention) is a host time per call that includes
    that call's dispatch.  On accelerators the host queues kernels ahead of
    the device, and the profile's device figures exclude the launch.
    """
    return profile.identity.device_type == "cpu"


def activation_dtype(weight_dtype: str, measured: Sequence[str]) -> str:
    """The dtype a layer's activations, attention and collectives run in for weights of ``weight_dtype`` on a
    profile that measured ``measured``: bf16 under 1-byte (fp8) weights, whose GEMMs quantize their bf16 inputs (as
    the serving engines run fp8 checkpoints), where the profile has bf16; otherwise the weights' own dtype."""
    if DTYPE_BYTES[weight_dtype] < DTYPE_BYTES["bf16"] and "bf16" in measured:
        return "bf16"
    return weight_dtype


def model_coster(profile: ProfileQueries, model: Any, **options: Any) -> tuple["Coster", Any]:
    """(Coster for ``model``'s layers, the model its DAGs are built from): fp8 weights run as the serving engines run
    them, GEMMs in fp8 on quantized inputs (DagOptions.gemm_input_quant: the DAG model's weight dtype differs from
    ``model``'s) and activations, attention and collectives in bf16 (activation_dtype); ``options``: Coster's."""
    act = activation_dtype(model.weight_dtype, profile.dtypes())
    coster = Coster(profile, dtype=act, kv_dtype=model.kv_dtype if model.kv_dtype != act else None,
                    gemm_dtype=model.weight_dtype, **options)
    return coster, (dataclasses.replace(model, weight_dtype=act) if act != model.weight_dtype else model)


class Coster:
    """Answers node costs from one device group's profiles; memoises every query."""

    def __init__(self, profile: ProfileQueries, dtype: str = "bf16", cuda_graphs: bool = False,
                 inter_node_profile: ProfileQueries | None = None, assume_zero_latency: bool = True,
                 kv_dtype: str | None = None, gemm_dtype: str | None = None) -> None:
        self.profile = profile
        self.kv_dtype = kv_dtype
        """KV cache element type when it is not ``dtype`` (an fp8 cache): attention reads K/V at its size."""
        self.assume_zero_latency = assume_zero_latency
        """False: a collective whose latency the profile does not give (datasheet priors) is refused, not costed at 0 s."""
        self.inter = inter_node_profile if inter_node_profile is not None else profile
        self.dtype = dtype
        self.gemm_dtype = gemm_dtype or dtype
        """Element type the GEMMs run in: the weights' (fp8 weights on ``dtype`` activations), default ``dtype``."""
        self.cuda_graphs = cuda_graphs
        for d in {dtype, self.gemm_dtype}:
            if d not in profile.dtypes():
                raise ValueError(f"profile {profile.identity.name} has no compute data for dtype "
                                 f"{d!r}; it has {profile.dtypes()}")
        self._cache: dict[tuple, Any] = {}
        self.serialised = host_runs_kernels(profile) and not cuda_graphs
        # Eager on an accelerator: the host issues the layer's own op mix (views, casts included), measured as
        # overheads.eager_dispatch_s where the profile has it (launch_overhead_s falls back to eager_launch_s).
        self._launch = profile.launch_overhead_s("graph" if cuda_graphs else ("eager" if self.serialised else "dispatch"))
        graph = profile.launch_overhead_s("graph")
        self._graph_floor_s = 0.0 if cuda_graphs or self.serialised or graph.extrapolated else graph.time_s
        """Overlapped eager launches: the per-kernel cost graph replay measured, the least an eager layer adds."""

    def _q(self, key: tuple, fn: Callable[[], Any]) -> Any:
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = fn()
        return hit

    @property
    def launch_source(self) -> str:
        return self._launch.source

    @property
    def launch(self):
        """The per-kernel launch estimate this Coster charges (profile.launch_overhead_s: graph, eager or dispatch),
        its flags included (``fallback``: a tiny kernel's launch stands in for an unmeasured dispatch cost)."""
        return self._launch

    def overlapped_launch_s(self, device_s: float, kernels: int, graph_kernels: int) -> float:
        """Launch share of an eager layer whose host launches overlap device work: what ``kernels`` dispatches
        take beyond ``device_s``, and never less than the same kernels cost in a CUDA graph (``graph_kernels``,
        the ones graph mode charges, at the measured ``graph_kernel_s``): a graph removes host work only."""
        return max(graph_kernels * self._graph_floor_s, kernels * self._launch.time_s - device_s)

    @property
    def launch_per_kernel_s(self) -> float:
        """Host seconds per kernel this Coster's launch rule charges (graph replay, eager launch or dispatch)."""
        return self._launch.time_s

    def gemm_dtype_for(self, dtype: str | None) -> str:
        """The dtype a GEMM asking for ``dtype`` runs in: that one where the profile measured it, else the Coster's."""
        return dtype if dtype and dtype in self.profile.dtypes() else self.gemm_dtype

    def gemm(self, m: int, n: int, k: int, weight_bytes: float | None = None, dtype: str | None = None):
        """``weight_bytes``: the weights stored in a weight-only format of that size (Profile.gemm_time_s);
        ``dtype``: a GEMM of its own element type (a sparse-attention indexer's fp8 scoring), where measured."""
        dt = self.gemm_dtype_for(dtype)
        if weight_bytes is None:
            return self._q(("gemm", dt, m, n, k), lambda: self.profile.gemm_time_s(m, n, k, dt))
        return self._q(("gemm", dt, m, n, k, weight_bytes),
                       lambda: self.profile.gemm_time_s(m, n, k, dt, weight_bytes_per_elem=weight_bytes))

    def grouped_gemm(self, experts: int, m: int, n: int, k: int, weight_bytes: float | None = None):
        """One grouped kernel over ``experts`` GEMMs of ``m`` tokens (Profile.grouped_gemm_time_s)."""
        dt = self.gemm_dtype_for(None)
        return self._q(("grouped", dt, experts, m, n, k, weight_bytes),
                       lambda: self.profile.grouped_gemm_time_s(experts, m, n, k, dt, weight_bytes))

    def roofline(self, flop: float, nbytes: float, dtype: str | None = None):
        """A kernel no profile field times (Profile.roofline_time_s) at ``dtype``'s fitted rates where measured."""
        dt = self.gemm_dtype_for(dtype)
        return self._q(("roofline", dt, flop, nbytes), lambda: self.profile.roofline_time_s(flop, nbytes, dt))

    def read(self, nbytes: float):
        return self._q(("read", nbytes), lambda: self.profile.memory_time_s(nbytes, "read"))

    def copy(self, nbytes: float):
        return self._q(("copy", nbytes), lambda: self.profile.memory_time_s(nbytes, "copy"))

    def elementwise(self, group: str, nbytes: float):
        """The profile's measurement of this eager group's own ops, else a copy of the same bytes."""
        def ask():
            try:
                return self.profile.elementwise_time_s(group, nbytes, self.dtype)
            except MissingMeasurement:  # datasheet priors and older profiles have no such section
                return self.profile.memory_time_s(nbytes, "copy")
        return self._q(("elementwise", group, nbytes), ask)

    def sampler(self, kind: str, logits: float):
        """The profile's measurement of the sampler ``kind`` over ``logits`` logits, else its traffic model's bytes
        (accelcal.vocab.SAMPLER_BYTES_PER_LOGIT) at the copy bandwidth."""
        def ask():
            try:
                return self.profile.sampler_time_s(kind, logits)
            except MissingMeasurement:  # profiles measured before the kernel suite timed samplers
                return self.profile.memory_time_s(logits * SAMPLER_BYTES_PER_LOGIT[kind], "copy")
        return self._q(("sampler", kind, logits), ask)

    def measures_sampler(self, kind: str) -> bool:
        """Whether the profile has a measurement of the sampler ``kind`` (else :meth:`sampler` estimates it)."""
        try:
            self.profile.sampler_time_s(kind, 1.0)
        except MissingMeasurement:
            return False
        return True

    def answering(self, scope: str):
        """The profile whose collectives cost ``scope``: the inter-node profile across nodes, else the device's."""
        return self.inter if scope == "inter_node" else self.profile

    def collective(self, op: str, nbytes: float, group_size: int, scope: str, kernel: str | None = None):
        """``kernel``: an implementation other than the collective library (Profile.collective_time_s)."""
        prof = self.answering(scope)

        def ask():
            from accelcal.calibrate.compose import missing_hint

            try:
                est = prof.collective_time_s(op, nbytes, group_size, scope, kernel)
            except MissingMeasurement as exc:  # say which measurement the plan needs
                msg = exc.args[0] if exc.args else str(exc)
                raise type(exc)(f"{op} over {group_size} devices ({scope}) is needed but the profile cannot "
                                f"answer it: {msg}; {missing_hint(op, scope)}") from None
            if not self.assume_zero_latency and "not-measured" in est.flags:
                # A datasheet gives no latency: 0 s would make every small TP message free (wide TP wins falsely).
                raise MissingCollective(
                    f"{op} over {group_size} devices ({scope}): profile {getattr(prof.identity, 'name', '?')} gives "
                    f"no latency for it ({est.detail}); refusing to cost it at 0 s. Measure it, pass measured or "
                    f"published collectives ({missing_hint(op, scope)}), or accept 0 s with --assume-zero-latency")
            return est
        return self._q(("coll", op, nbytes, group_size, scope, kernel), ask)

    def attention(self, phase, batch, q_len, kv_len, heads, kv_heads, head_dim, v_head_dim=None, shared_kv=False,
                  window=0):
        """One attention call (Profile.attention_time_s); ``v_head_dim``/``shared_kv``: multi-head latent
        attention's shape (ModelConfig.attention_shape); ``window``: keys per query at most (ModelConfig.
        attention_layers)."""
        return self._q(("attn", phase, batch, q_len, kv_len, heads, kv_heads, head_dim, v_head_dim, shared_kv, window),
                       lambda: self.profile.attention_time_s(phase, batch, q_len, kv_len, heads, kv_heads,
                                                             head_dim, self.dtype, causal=True, kv_dtype=self.kv_dtype,
                                                             v_head_dim=v_head_dim, shared_kv=shared_kv, window=window))

    def _category(self, time_s: float, nbytes: float) -> str:
        return "memory" if self.read(nbytes).time_s >= 0.5 * time_s else "compute"

    def cost_node(self, node: DagNode, el: int) -> NodeCost:
        p = node.p
        cost = self._cost_node(node, el, p)
        share = p.get("layer_share")
        if share is None:
            return cost
        # a block of the mean layer that runs in this share of the layers (a MoE model's dense layers and the rest)
        return dataclasses.replace(cost, device_s=cost.device_s * share, kernels=cost.kernels * share,
                                   detail=f"{cost.detail}; x{share:.4g} (share of the layers)")

    def _cost_node(self, node: DagNode, el: int, p: dict) -> NodeCost:
        if node.op == "gemm" or node.op == "grouped_gemm":
            count = p.get("count", 1)
            wb = p.get("weight_bytes")  # weight-only expert weights (DAG: ModelConfig.expert_weight_dtype)
            if count > 1 and node.kernels == 1:
                # One grouped kernel over every expert hit (vLLM/SGLang fused_moe, TensorRT-LLM's MoE GEMM): it
                # streams all their weights in one launch, so it costs as one GEMM with the experts stacked along
                # N (same FLOPs and weight bytes), not as `count` launches that each pay a small GEMM's floor;
                # corrected by the profile's measured grouped kernels where it has them.
                est = self.grouped_gemm(count, p["m"], p["n"], p["k"], wb)
                t = est.time_s
                detail = est.detail
            else:
                est = self.gemm(p["m"], p["n"], p["k"], wb, p.get("dtype"))
                t = count * est.time_s
                detail = est.detail if count == 1 else f"{count} x ({est.detail})"
            nbytes = count * gemm_bytes(p["m"], p["n"], p["k"], self.gemm_dtype_for(p.get("dtype")), wb)
            cat = self._category(t, nbytes)
            kernels = node.kernels
        elif node.op == "attention":
            # the mean layer: a model's sliding-window layers span only the keys their window reaches (``spans``)
            spans = p.get("spans", ((p["kv_len"], 1.0, 0),))
            form = (p.get("v_head_dim"), p.get("shared_kv", False))  # multi-head latent attention's call shape
            ests = [(self.attention(p["phase"], p["batch"], p["q_len"], span, p["heads"], p["kv_heads"],
                                    p["head_dim"], *form, window), share)
                    for span, share, window in spans]
            t = sum(e.time_s * share for e, share in ests) * p["work_fraction"]
            kv_mean = sum(span * share for span, share, _ in spans)
            est = ests[0][0]  # the full-attention call names the source
            detail = est.detail
            if len(spans) > 1:
                detail += "; " + ", ".join(f"{share:.3g} of the layers over {span} keys" for span, share, _ in spans[1:]) \
                    + " (sliding window)"
            nbytes = attention_flop_bytes(p["batch"], p["q_len"], kv_mean, p["heads"], p["kv_heads"], p["head_dim"], el,
                                          v_head_dim=form[0], shared_kv=form[1])[1]
            cat = self._category(t, nbytes)
            if p["work_fraction"] != 1.0:
                detail = f"{detail}; x{p['work_fraction']:.4g} (SP share)"
            kernels = node.kernels
        elif node.op == "roofline":
            est = self.roofline(p["flop"], p["nbytes"], p.get("dtype"))
            t, kernels, detail = est.time_s, node.kernels, est.detail
            cat = self._category(t, p["nbytes"])
        elif node.op == "memory":
            est = self.elementwise(p["group"], p["nbytes"]) if "group" in p else self.copy(p["nbytes"])
            t, cat, detail, kernels = est.time_s, "memory", est.detail, node.kernels
            if est.source.startswith("elementwise."):
                return NodeCost(node.name, node.op, cat, t, kernels, est.source, detail, bool(est.extrapolated),
                                node.deps, p, self_timed=True)
        elif node.op == "collective":
            est = self.collective(p["op"], p["nbytes"], p["group_size"], p["scope"])
            t, cat, detail, kernels = est.time_s, "communication", est.detail, node.kernels
        else:
            raise ValueError(f"DAG node {node.name!r} has unknown op {node.op!r}")
        return NodeCost(node.name, node.op, cat, t, kernels, est.source, detail, bool(est.extrapolated),
                        node.deps, p)

    def cost_dag(self, dag: LayerDAG, el: int = 2) -> CostedDAG:
        nodes = [self.cost_node(n, el) for n in dag.nodes]
        if self.serialised:
            # each kernel beyond the one its figure holds, weighed like the node (its layer_share in a mean layer)
            nodes = [dataclasses.replace(c, launch_s=0.0 if c.self_timed else
                                         n.p.get("layer_share", 1.0) * max(0, n.kernels - 1) * self._launch.time_s)
                     for n, c in zip(dag.nodes, nodes)]
        device = sum(n.device_s for n in nodes)
        note = self._launch.detail if self._launch.extrapolated else ""
        return CostedDAG(dag, nodes, device, self.launch_of(nodes, device), self._launch.source, note)

    def launch_of(self, nodes: Sequence[NodeCost], device_s: float) -> float:
        """The launch time a layer of costed ``nodes`` adds to its ``device_s`` under this Coster's rule (graph
        replay per kernel, serialised host dispatch, or overlapped eager launches); self-timed nodes' kernels are
        in their own figures."""
        if self.cuda_graphs:
            return sum(n.kernels for n in nodes if not n.self_timed) * self._launch.time_s
        if self.serialised:
            # each node's measured figure holds one dispatch; its other kernels each add one
            return sum(n.launch_s for n in nodes)
        return self.overlapped_launch_s(device_s, sum(n.kernels for n in nodes),
                                        sum(n.kernels for n in nodes if not n.self_timed))
