"""How a decoder layer is implemented: kernels launched and bytes moved per elementwise group, as data.

    from accelcal.models.implementation import Implementation
    impl = Implementation.from_name("torch-eager")    # presets: models/presets/implementations/*.yaml
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
    """Activation traffic in full-tensor reads + writes of the tensor the group works on, in the activation dtype."""
    fp32_passes: float = 0.0
    """Reads + writes of fp32 intermediates of that tensor's size (an eager RMSNorm upcasts), whatever the dtype."""
    cast_passes: float = 0.0
    """Casts between the activation dtype and fp32 (each reads one, writes the other); none when activations are fp32."""
    per_tensor: bool = True
    """rope only: the kernels are issued once per rotated tensor (Q and K) rather than once for both."""
    per_expert: bool = True
    """expert_gather only: the kernels are issued once per expert hit rather than once per layer."""

    def bytes_per_element(self, elem_bytes: int) -> float:
        """Bytes moved per element of the tensor the group works on, for activations of ``elem_bytes`` bytes.

        passes x elem_bytes + fp32_passes x 4 + cast_passes x (elem_bytes + 4), the casts only when
        elem_bytes != 4 (an fp32 tensor's ``.float()`` is a no-op).
        """
        casts = self.cast_passes * (elem_bytes + 4) if elem_bytes != 4 else 0.0
        return self.passes * elem_bytes + self.fp32_passes * 4 + casts


_GROUPS = ("norm", "residual_add", "rope", "kv_cache_write", "act_mul", "act_quant", "router_topk", "expert_scan",
           "expert_gather")


_LOADED: dict = {}
"""(preset path, mtime_ns, size) -> Implementation parsed from it (Implementation.from_name)."""


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
    act_quant: ElementwiseGroup
    """fp8 GEMMs on wider activations: quantizing one GEMM's input to 1 byte (per-tensor scale), per GEMM
    input; passes in that input's tokens x width (read once in the activation dtype, written at 1 byte)."""
    router_topk: ElementwiseGroup
    """MoE routing after the router GEMM (softmax, top-k, weights, output buffer)."""
    expert_scan: ElementwiseGroup
    """MoE: kernels per routed expert, hit or not (finding its tokens)."""
    expert_gather: ElementwiseGroup
    """MoE: gathering tokens to experts and scattering results back; passes in routed tokens x hidden."""
    experts_grouped: bool
    """True: one grouped GEMM kernel covers all experts hit; False: one GEMM launch per expert."""
    measured_elementwise: bool = False
    """True: these are the ops the kernel suite times (kernels/elementwise.py), so the planner costs the norm,
    residual_add, rope and act_mul groups from the profile's ``elementwise`` section where it has one."""

    @classmethod
    def from_name(cls, name: str) -> "Implementation":
        path = IMPL_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown implementation {name!r}; presets: {', '.join(implementation_names())}")
        from accelcal.safe_io import load_yaml

        # every step coster resolves its implementation: a search builds dozens, so the parsed preset is kept
        # (frozen) for as long as its file is unchanged
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in _LOADED:
            _LOADED[key] = cls.from_dict(load_yaml(path, what="implementation preset", max_bytes=2**20),
                                         origin=str(path))
        return _LOADED[key]

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
        unknown, missing = sorted(set(d) - known - {"measured_elementwise"}), sorted(known - set(d))
        if unknown or missing:
            raise ValueError(f"{origin}: unknown key(s) {unknown}, missing key(s) {missing}")
        groups = {}
        for g in _GROUPS:
            v = d[g]
            allowed = {"kernels", "passes", "fp32_passes", "cast_passes", "per_tensor", "per_expert"}
            if not isinstance(v, dict) or not set(v) <= allowed:
                raise ValueError(f"{origin}: {g} must map some of {sorted(allowed)}, got {v!r}")
            k = v.get("kernels")
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise ValueError(f"{origin}: {g}.kernels must be an integer >= 0, got {k!r}")
            traffic = {}
            for f in ("passes", "fp32_passes", "cast_passes"):
                p = v.get(f, 0.0)
                if not isinstance(p, (int, float)) or isinstance(p, bool) or p < 0:
                    raise ValueError(f"{origin}: {g}.{f} must be a number >= 0, got {p!r}")
                traffic[f] = float(p)
            groups[g] = ElementwiseGroup(k, per_tensor=bool(v.get("per_tensor", True)),
                                         per_expert=bool(v.get("per_expert", True)), **traffic)
        if not isinstance(d["experts_grouped"], bool):
            raise ValueError(f"{origin}: experts_grouped must be true or false, got {d['experts_grouped']!r}")
        measured = d.get("measured_elementwise", False)
        if not isinstance(measured, bool):
            raise ValueError(f"{origin}: measured_elementwise must be true or false, got {measured!r}")
        return cls(name=str(d["name"]), description=str(d["description"]), experts_grouped=d["experts_grouped"],
                   measured_elementwise=measured, **groups)

    def describe(self) -> str:
        parts = [f"{g} {getattr(self, g).kernels}" for g in _GROUPS]
        return f"{self.name}: {self.description} (kernels: {', '.join(parts)})"


def implementation_names() -> list[str]:
    """Names of the bundled implementation presets, sorted."""
    return sorted(p.stem for p in IMPL_DIR.glob("*.yaml"))
