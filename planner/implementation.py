"""How a decoder layer is implemented: kernels launched and bytes moved per elementwise group, as data.

    from accelcal.planner.implementation import Implementation
    impl = Implementation.from_name("torch-eager")    # presets: planner/presets/implementations/*.yaml
    print(impl.norm.kernels, impl.norm.passes, impl.rope.per_tensor)
    Implementation.from_name("fused").describe()

The same layer costs very different launch time depending on who wrote it: a
plain PyTorch eager layer dispatches ~40 ops for a dense layer (RMSNorm alone
is nine), a serving engine with fused kernels ~12.  The planner's DAG takes
each group's kernel count and its activation traffic (``passes``: full-tensor
reads plus writes) from one of these presets; GEMMs, attention and
collectives are one kernel each in every preset.

``fused`` is the planner's default (what serving stacks run); ``torch-eager``
is what ``accelcal validate`` runs and therefore what it predicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["DEFAULT_IMPLEMENTATION", "ElementwiseGroup", "Implementation", "implementation_names"]

IMPL_DIR = Path(__file__).with_name("presets") / "implementations"

DEFAULT_IMPLEMENTATION = "fused"
"""Implementation the planner costs unless told otherwise (serving engines fuse these kernels)."""


@dataclass(frozen=True)
class ElementwiseGroup:
    """One group of memory-bound ops (a norm, the rotary embedding, ...)."""

    kernels: int
    """Kernel launches (dispatched ops) the group issues."""
    passes: float = 0.0
    """Activation traffic in full-tensor reads + writes of the tensor the group works on."""
    per_tensor: bool = True
    """rope only: the kernels are issued once per rotated tensor (Q and K) rather than once for both."""
    per_expert: bool = True
    """expert_gather only: the kernels are issued once per expert hit rather than once per layer."""


_GROUPS = ("norm", "residual_add", "rope", "kv_cache_write", "act_mul", "router_topk", "expert_scan", "expert_gather")


@dataclass(frozen=True)
class Implementation:
    """Kernel counts and traffic of one way of writing the decoder layer."""

    name: str
    """Preset name (``torch-eager``, ``fused``)."""
    description: str
    """One line saying what implementation this is."""
    norm: ElementwiseGroup
    """RMSNorm (the fused preset includes the residual add); passes in tokens x hidden."""
    residual_add: ElementwiseGroup
    """Each residual add when not fused into the norm (two per layer); passes in tokens x hidden."""
    rope: ElementwiseGroup
    """Rotary embedding of Q and K; passes in tokens x (q + k width)."""
    kv_cache_write: ElementwiseGroup
    """Writing the new K and V into the cache; passes in tokens x (k + v width)."""
    act_mul: ElementwiseGroup
    """SwiGLU's silu(gate) * up; passes in tokens x ffn width."""
    router_topk: ElementwiseGroup
    """MoE routing after the router GEMM (softmax, top-k, weights, output buffer)."""
    expert_scan: ElementwiseGroup
    """MoE: kernels per routed expert, hit or not (finding its tokens)."""
    expert_gather: ElementwiseGroup
    """MoE: gathering tokens to experts and scattering results back; passes in routed tokens x hidden."""
    experts_grouped: bool
    """True: one grouped GEMM kernel covers all experts hit; False: one GEMM launch per expert."""

    @classmethod
    def from_name(cls, name: str) -> "Implementation":
        path = IMPL_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown implementation {name!r}; presets: {', '.join(implementation_names())}")
        return cls.from_dict(yaml.safe_load(path.read_text()), origin=str(path))

    @classmethod
    def resolve(cls, spec: "str | Implementation | None") -> "Implementation":
        if isinstance(spec, Implementation):
            return spec
        return cls.from_name(spec or DEFAULT_IMPLEMENTATION)

    @classmethod
    def from_dict(cls, d: dict, origin: str = "<dict>") -> "Implementation":
        if not isinstance(d, dict):
            raise ValueError(f"{origin}: expected a mapping, got {type(d).__name__}")
        known = {"name", "description", "experts_grouped", *_GROUPS}
        unknown, missing = sorted(set(d) - known), sorted(known - set(d))
        if unknown or missing:
            raise ValueError(f"{origin}: unknown key(s) {unknown}, missing key(s) {missing}")
        groups = {}
        for g in _GROUPS:
            v = d[g]
            if not isinstance(v, dict) or not set(v) <= {"kernels", "passes", "per_tensor", "per_expert"}:
                raise ValueError(f"{origin}: {g} must map kernels/passes/per_tensor/per_expert, got {v!r}")
            k, p = v.get("kernels"), v.get("passes", 0.0)
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise ValueError(f"{origin}: {g}.kernels must be an integer >= 0, got {k!r}")
            if not isinstance(p, (int, float)) or isinstance(p, bool) or p < 0:
                raise ValueError(f"{origin}: {g}.passes must be a number >= 0, got {p!r}")
            groups[g] = ElementwiseGroup(k, float(p), bool(v.get("per_tensor", True)), bool(v.get("per_expert", True)))
        if not isinstance(d["experts_grouped"], bool):
            raise ValueError(f"{origin}: experts_grouped must be true or false, got {d['experts_grouped']!r}")
        return cls(name=str(d["name"]), description=str(d["description"]), experts_grouped=d["experts_grouped"], **groups)

    def describe(self) -> str:
        parts = [f"{g} {getattr(self, g).kernels}" for g in _GROUPS]
        return f"{self.name}: {self.description} (kernels: {', '.join(parts)})"


def implementation_names() -> list[str]:
    """Names of the bundled implementation presets, sorted."""
    return sorted(p.stem for p in IMPL_DIR.glob("*.yaml"))
