"""Layer shapes derived from a :class:`ModelConfig`: what a kernel sweep and a real test layer need.

    from accelcal.models import LayerDims, ModelConfig, ModelDims
    cfg = ModelConfig.from_name("mixtral-8x7b")
    LayerDims.from_model(cfg).expert_ffn_size        # 14336
    [p[0] for p in ModelDims.from_config(cfg).projections()]   # ['expert_gate_up', 'expert_down']

No torch here: the kernel presets, the validation layers and the planner share
these shapes, so a model's numbers live once (models/presets/*.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accelcal.vocab import QK_NORMS

from .config import ModelConfig

__all__ = ["LayerDims", "ModelDims", "check_tp"]


@dataclass(frozen=True)
class ModelDims:
    """The config.json values a kernel sweep derives its GEMM and elementwise shapes from."""

    name: str
    """Short model id used as the shape prefix, e.g. ``llama3-8b``."""
    hidden: int
    """``hidden_size``."""
    intermediate: int
    """``intermediate_size`` (per expert for MoE models)."""
    heads: int
    """``num_attention_heads``."""
    kv_heads: int
    """``num_key_value_heads`` (GQA)."""
    source: str
    """Where the numbers come from."""
    head_dim_override: int | None = None
    """Width of one head when it is not ``hidden / heads`` (the config's ``head_dim``); None: hidden / heads."""
    moe: bool = False
    """A mixture-of-experts model: the sweep measures its expert FFN (attention is shared with dense models)."""

    @property
    def head_dim(self) -> int:
        return self.head_dim_override if self.head_dim_override is not None else self.hidden // self.heads

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "ModelDims":
        """The sweep view of a model config (MoE: the expert FFN width)."""
        return cls(cfg.name, hidden=cfg.hidden_size, intermediate=cfg.expert_ffn_size if cfg.is_moe else cfg.ffn_size,
                   heads=cfg.heads, kv_heads=cfg.kv_heads, source=cfg.source,
                   head_dim_override=None if cfg.head_dim * cfg.heads == cfg.hidden_size else cfg.head_dim,
                   moe=cfg.is_moe)

    def projections(self) -> list[tuple[str, int, int, str]]:
        """(suffix, N, K, how N and K were derived) of each projection ``y = x @ W.T`` (W is N x K)."""
        d, h, f = self.head_dim, self.hidden, self.intermediate
        if self.moe:
            # Expert FFN weights (the attention projections are those of a dense model of the same width).
            return [("expert_gate_up", 2 * f, h, f"N = 2 x intermediate {f}, K = hidden {h}"),
                    ("expert_down", h, f, f"N = hidden {h}, K = intermediate {f}")]
        return [
            ("qkv", (self.heads + 2 * self.kv_heads) * d, h,
             f"N = (heads {self.heads} + 2 x kv_heads {self.kv_heads}) x head_dim {d}, K = hidden {h}"),
            ("o", h, self.heads * d, f"N = hidden {h}, K = heads {self.heads} x head_dim {d}"),
            ("gate_up", 2 * f, h, f"N = 2 x intermediate {f} (fused gate+up), K = hidden {h}"),
            ("down", h, f, f"N = hidden {h}, K = intermediate {f}"),
        ]


@dataclass(frozen=True)
class LayerDims:
    """Shapes of one decoder layer (a ModelConfig without the whole-model fields)."""

    hidden_size: int
    """Model width (residual stream)."""
    heads: int
    """Query heads."""
    kv_heads: int
    """Key/value heads (grouped-query attention when < heads)."""
    head_dim: int
    """Width of one head."""
    ffn_size: int
    """Dense MLP intermediate width (SwiGLU: gate and up are each this wide)."""
    num_experts: int = 0
    """Routed experts; 0 for a dense layer."""
    top_k: int = 0
    """Experts each token is routed to."""
    expert_ffn_size: int = 0
    """Intermediate width of one expert."""
    shared_experts: int = 0
    """Always-on experts (merged into one SwiGLU of ``shared_experts * expert_ffn_size``)."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    qk_norm: str = ""
    """RMSNorm on the queries and keys before RoPE (ModelConfig.qk_norm): "", per_head or per_layer."""
    rope_theta: float = 500000.0
    """Rotary embedding base (Llama-3's value; only the numbers change with it, not the cost)."""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @classmethod
    def from_model(cls, model: Any) -> "LayerDims":
        """Dims from an ``accelcal.models.ModelConfig`` (or anything with its field names)."""
        kw = {}
        for name in ("hidden_size", "heads", "kv_heads", "head_dim", "ffn_size"):
            if not hasattr(model, name):
                raise ValueError(f"model {getattr(model, 'name', model)!r} has no {name!r}; a ModelConfig-like object is expected")
            kw[name] = int(getattr(model, name))
        for name in ("num_experts", "top_k", "expert_ffn_size", "shared_experts"):
            kw[name] = int(getattr(model, name, 0) or 0)
        kw["qk_norm"] = str(getattr(model, "qk_norm", "") or "")
        dims = cls(**kw)
        dims.check()
        return dims

    def check(self) -> None:
        for name in ("hidden_size", "heads", "kv_heads", "head_dim", "ffn_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"layer dims: {name} must be > 0, got {getattr(self, name)}")
        if self.qk_norm not in QK_NORMS:
            allowed = ", ".join(map(repr, QK_NORMS[:-1])) + f" or {QK_NORMS[-1]!r}"
            raise ValueError(f"layer dims: qk_norm must be {allowed}, got {self.qk_norm!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"layer dims: heads({self.heads}) % kv_heads({self.kv_heads}) = {self.heads % self.kv_heads}, must be 0")
        if self.is_moe and not (0 < self.top_k <= self.num_experts and self.expert_ffn_size > 0):
            raise ValueError(
                f"layer dims: MoE needs 0 < top_k({self.top_k}) <= num_experts({self.num_experts}) "
                f"and expert_ffn_size({self.expert_ffn_size}) > 0")


def check_tp(dims: LayerDims, tp: int) -> None:
    """Raise ValueError (with the arithmetic) unless ``dims`` shard evenly over ``tp`` ranks."""
    if tp < 1:
        raise ValueError(f"tp must be >= 1, got {tp}")
    sizes = {"heads": dims.heads, "kv_heads": dims.kv_heads}
    if dims.is_moe:
        sizes["expert_ffn_size"] = dims.expert_ffn_size
    else:
        sizes["ffn_size"] = dims.ffn_size
    for name, size in sizes.items():
        if size % tp:
            raise ValueError(f"tp={tp} does not divide {name}: {size} % {tp} = {size % tp}")
