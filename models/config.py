"""Decoder-only Transformer configs, with presets as data.

    from accelcal.models import ModelConfig
    m = ModelConfig.from_name("llama3-70b")       # presets: models/presets/*.yaml
    m = ModelConfig.from_yaml("my-model.yaml")     # same keys as a preset
    m = ModelConfig.resolve("Qwen3-32B/config.json")  # a Hugging Face config (models/hf_config.py)
    print(m.weight_bytes() / 1e9, "GB of weights")

Each preset cites the published ``config.json`` its numbers come from.  The
layer is Llama-shaped: RMSNorm, fused QKV with grouped-query attention, an
output projection, and a SwiGLU MLP (gate/up fused, down); a MoE layer swaps
the MLP for a router, ``num_experts`` SwiGLU experts of ``expert_ffn_size``
(``top_k`` active per token) and ``shared_experts`` always-active experts.
"""

from __future__ import annotations

import re

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path


from accelcal.filekinds import wrong_file_hint
from accelcal.vocab import DTYPE_BYTES, QK_NORMS, WEIGHT_ONLY_BYTES, attended_pairs

from .hf_config import hf_config_path, load_hf_fields

__all__ = ["AttentionShape", "ModelConfig", "PRESET_DIR", "preset_names"]

PRESET_DIR = Path(__file__).with_name("presets")



@dataclass(frozen=True)
class ModelConfig:
    """One decoder-only Transformer."""

    name: str
    """Preset or user name, used in reports."""
    layers: int
    """Decoder layers (``num_hidden_layers``)."""
    hidden_size: int
    """Residual stream width (``hidden_size``)."""
    heads: int
    """Query heads (``num_attention_heads``)."""
    kv_heads: int
    """Key/value heads (``num_key_value_heads``; = heads for MHA)."""
    head_dim: int
    """Width of one head."""
    ffn_size: int
    """Dense SwiGLU MLP width (``intermediate_size``)."""
    vocab_size: int
    """Vocabulary (embedding rows and LM-head columns)."""
    weight_dtype: str = "bf16"
    """dtype of the weights and activations (a profile compute dtype)."""
    kv_dtype: str = "bf16"
    """dtype of the KV cache."""
    num_experts: int = 0
    """Routed experts per MoE layer; 0 = dense model."""
    top_k: int = 0
    """Routed experts active per token."""
    expert_ffn_size: int = 0
    """SwiGLU width of one routed (and one shared) expert."""
    shared_experts: int = 0
    """Always-active experts per MoE layer."""
    tie_word_embeddings: bool = False
    """LM head shares the input embedding's matrix (``tie_word_embeddings``): one vocab x hidden matrix
    is stored instead of two (with PP > 1 the last stage still holds its own copy for the LM head)."""
    max_context_len: int = 0
    """Longest context an engine serves the model at by default: ``max_position_embeddings``, times a RoPE scaling
    factor that extends it (models/hf_config._context_len, as vLLM derives max_model_len); 0 = not stated."""
    qk_norm: str = ""
    """RMSNorm on the queries and keys after the QKV projection, before RoPE: ``""`` none (Llama, Mistral),
    ``per_head`` over each head's ``head_dim`` (Qwen3: transformers Qwen3Attention q_norm / k_norm), ``per_layer``
    over all heads at once (MiniMax-M2 ``qk_norm_type``), whose sum of squares a TP group all-reduces."""
    post_norms: bool = False
    """An RMSNorm on the attention's and on the MLP's output before each residual add, besides the two pre-norms
    (Gemma 2 and 3: transformers Gemma2DecoderLayer / Gemma3DecoderLayer ``post_attention_layernorm`` and
    ``post_feedforward_layernorm``): two more norm passes over the hidden state per layer."""
    sliding_window: int = 0
    """Keys a sliding-window layer's query attends, itself included (``sliding_window``); 0 = no such layers."""
    sliding_layers: int = 0
    """Layers that attend through the window (``layer_types`` entries ``sliding_attention``; gpt-oss: every other
    one); the others attend the whole context.  Their attention is costed over the window; the KV pool's per-token
    bytes count the full-attention layers only (a windowed layer's ``sliding_window`` tokens per sequence are left out)."""
    dense_layers: int = 0
    """Leading layers of a MoE model that run the dense SwiGLU MLP of ``ffn_size`` instead of the experts
    (DeepSeek-V2/V3 ``first_k_dense_replace``); the rest are MoE layers.  0 = every layer MoE (or a dense model)."""
    kv_lora_rank: int = 0
    """Multi-head latent attention (MLA, DeepSeek-V2/V3 ``kv_lora_rank``): width of the compressed latent every
    head's keys and values are expanded from, cached per token with the rotary key part (``qk_rope_head_dim``)
    instead of per-head K and V.  0 = standard (grouped-query) attention."""
    q_lora_rank: int = 0
    """MLA: width of the queries' low-rank bottleneck (``q_lora_rank``); 0 = queries projected from the
    hidden state directly (DeepSeek-V2-Lite)."""
    qk_rope_head_dim: int = 0
    """MLA: rotary part of each query/key head (``qk_rope_head_dim``); ``head_dim`` is the whole query/key head
    (``qk_nope_head_dim + qk_rope_head_dim``), one rotary key shared by all heads."""
    v_head_dim: int = 0
    """MLA: width of one value head (``v_head_dim``); 0 = ``head_dim`` (standard attention)."""
    index_topk: int = 0
    """DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5 ``index_topk``): keys each query attends, the top ones a
    lightning indexer scores over the whole context; 0 = every query attends its whole causal context."""
    index_heads: int = 0
    """DSA: the indexer's query heads (``index_n_heads``); its one key head is shared."""
    index_head_dim: int = 0
    """DSA: width of the indexer's heads and of the key it caches per token and layer (``index_head_dim``)."""
    linear_layers: int = 0
    """Layers whose token mixer is Gated DeltaNet linear attention instead of softmax attention (Qwen3-Next, Qwen3.5:
    ``layer_types`` entries ``linear_attention``, three of every ``full_attention_interval`` = 4).  Such a layer keeps
    no KV cache: each sequence carries a fixed-size state instead (``linear_state_elems``).  0 = no such layers."""
    linear_key_heads: int = 0
    """Gated DeltaNet: query/key heads (``linear_num_key_heads``), each shared by value heads / key heads value heads."""
    linear_value_heads: int = 0
    """Gated DeltaNet: value heads (``linear_num_value_heads``); each keeps a key_head_dim x value_head_dim state."""
    linear_key_head_dim: int = 0
    """Gated DeltaNet: width of one query/key head (``linear_key_head_dim``)."""
    linear_value_head_dim: int = 0
    """Gated DeltaNet: width of one value head (``linear_value_head_dim``)."""
    linear_conv_kernel: int = 0
    """Gated DeltaNet: taps of the causal depthwise convolution over q, k and v (``linear_conv_kernel_dim``); each
    sequence keeps the last taps - 1 inputs."""
    linear_state_dtype: str = "fp32"
    """dtype of each Gated DeltaNet layer's recurrent state per sequence (``mamba_ssm_dtype``; absent: fp32, SGLang's
    default in configs/mamba_utils.py mamba2_state_dtype, 0.5.9 wheel); the convolution state is kept in bf16
    (the same function's conv dtype default)."""
    attn_output_gate: bool = False
    """Gated attention (Qwen3-Next, Qwen3.5 ``attn_output_gate``): the query projection also emits a gate per query
    element, and the attention output is multiplied by its sigmoid before the output projection."""
    expert_weight_dtype: str = ""
    """Storage format of the routed experts' weights when it is weight-only (``mxfp4``: gpt-oss's
    ``quantization_config``; ``int4_g32``: Kimi-K2.5's compressed-tensors 4-bit integers; accelcal.vocab.WEIGHT_ONLY_BYTES):
    their GEMMs compute in ``weight_dtype`` and read the weights at the format's bytes; ``""`` = the experts are
    stored as ``weight_dtype``."""
    weight_block_size: tuple[int, int] | None = None
    """Block shape of block-scaled fp8 weights (``quantization_config.weight_block_size``); None = per-tensor
    or per-channel scales, or unquantised weights."""
    source: str = ""
    """Where the numbers come from (the published config.json fields)."""

    def __post_init__(self) -> None:
        for f in ("layers", "hidden_size", "heads", "kv_heads", "head_dim", "ffn_size", "vocab_size"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"model {self.name!r}: {f} must be a positive integer, got {v!r}")
        for f in ("num_experts", "top_k", "expert_ffn_size", "shared_experts"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"model {self.name!r}: {f} must be an integer >= 0, got {v!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(f"model {self.name!r}: tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}")
        if not isinstance(self.max_context_len, int) or isinstance(self.max_context_len, bool) or self.max_context_len < 0:
            raise ValueError(f"model {self.name!r}: max_context_len must be an integer >= 0, got {self.max_context_len!r}")
        if not isinstance(self.post_norms, bool):
            raise ValueError(f"model {self.name!r}: post_norms must be true or false, got {self.post_norms!r}")
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"model {self.name!r}: qk_norm={self.qk_norm!r}; expected one of {list(QK_NORMS)}")
        if self.weight_block_size is not None:
            block = self.weight_block_size
            if (not isinstance(block, (list, tuple)) or len(block) != 2
                    or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)):
                raise ValueError(f"model {self.name!r}: weight_block_size must be [rows, cols] of positive integers, got {block!r}")
            object.__setattr__(self, "weight_block_size", tuple(block))  # YAML gives a list; keep the config hashable
        for f in ("sliding_window", "sliding_layers", "dense_layers", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim",
                  "v_head_dim", "index_topk", "index_heads", "index_head_dim"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"model {self.name!r}: {f} must be an integer >= 0, got {v!r}")
        if self.sliding_layers > self.layers:
            raise ValueError(f"model {self.name!r}: sliding_layers({self.sliding_layers}) > layers({self.layers})")
        if self.sliding_layers and self.sliding_layers == self.layers:
            # the KV pool is counted in full-attention layers' tokens (planner/memory.py kv_bytes_per_token)
            raise ValueError(f"model {self.name!r}: every layer ({self.layers}) attends through the sliding window; "
                             f"a model without a full-attention layer is not modelled")
        if bool(self.sliding_layers) != bool(self.sliding_window):
            raise ValueError(f"model {self.name!r}: sliding_layers({self.sliding_layers}) and sliding_window"
                             f"({self.sliding_window}) must both be 0 or both > 0")
        if self.dense_layers and not (self.num_experts and self.dense_layers < self.layers):
            raise ValueError(f"model {self.name!r}: dense_layers({self.dense_layers}) needs a MoE model with fewer "
                             f"dense layers than layers({self.layers}) (num_experts={self.num_experts})")
        if self.kv_lora_rank:
            if not (0 < self.qk_rope_head_dim < self.head_dim and self.v_head_dim > 0):
                raise ValueError(f"model {self.name!r}: multi-head latent attention (kv_lora_rank={self.kv_lora_rank}) "
                                 f"needs 0 < qk_rope_head_dim({self.qk_rope_head_dim}) < head_dim({self.head_dim}) "
                                 f"(= qk_nope_head_dim + qk_rope_head_dim) and v_head_dim({self.v_head_dim}) > 0")
            if self.kv_heads != self.heads:
                raise ValueError(f"model {self.name!r}: multi-head latent attention expands the latent into every "
                                 f"head's keys and values, so kv_heads({self.kv_heads}) must equal heads({self.heads})")
            if self.sliding_layers or self.qk_norm:
                raise ValueError(f"model {self.name!r}: multi-head latent attention with sliding-window layers or a "
                                 f"q/k norm is not modelled")
        if len({bool(self.index_topk), bool(self.index_heads), bool(self.index_head_dim)}) > 1:
            raise ValueError(f"model {self.name!r}: index_topk({self.index_topk}), index_heads({self.index_heads}) and "
                             f"index_head_dim({self.index_head_dim}) describe sparse attention's indexer together: all "
                             f"0 or all > 0")
        if self.index_topk and self.sliding_layers:
            raise ValueError(f"model {self.name!r}: sparse attention (index_topk) with sliding-window layers is not modelled")
        if not self.kv_lora_rank and (self.q_lora_rank or self.qk_rope_head_dim or self.v_head_dim):
            raise ValueError(f"model {self.name!r}: q_lora_rank, qk_rope_head_dim and v_head_dim describe multi-head "
                             f"latent attention and need kv_lora_rank > 0 (got {self.q_lora_rank}, "
                             f"{self.qk_rope_head_dim}, {self.v_head_dim} with kv_lora_rank 0)")
        for f in ("linear_layers", "linear_key_heads", "linear_value_heads", "linear_key_head_dim",
                  "linear_value_head_dim", "linear_conv_kernel"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"model {self.name!r}: {f} must be an integer >= 0, got {v!r}")
        if not isinstance(self.attn_output_gate, bool):
            raise ValueError(f"model {self.name!r}: attn_output_gate must be true or false, got {self.attn_output_gate!r}")
        if self.linear_layers:
            dims = (self.linear_key_heads, self.linear_value_heads, self.linear_key_head_dim, self.linear_value_head_dim,
                    self.linear_conv_kernel)
            if not all(dims):
                raise ValueError(f"model {self.name!r}: linear_layers({self.linear_layers}) needs linear_key_heads, "
                                 f"linear_value_heads, linear_key_head_dim, linear_value_head_dim and linear_conv_kernel "
                                 f"> 0, got {dims}")
            if self.linear_value_heads % self.linear_key_heads:
                raise ValueError(f"model {self.name!r}: linear_value_heads({self.linear_value_heads}) % "
                                 f"linear_key_heads({self.linear_key_heads}) = "
                                 f"{self.linear_value_heads % self.linear_key_heads}; each key head serves whole value heads")
            if self.linear_layers + self.sliding_layers >= self.layers:
                raise ValueError(f"model {self.name!r}: linear_layers({self.linear_layers}) + sliding_layers"
                                 f"({self.sliding_layers}) must leave at least one full-attention layer of "
                                 f"layers({self.layers})")
            if self.is_mla or self.index_topk or self.sliding_layers:
                raise ValueError(f"model {self.name!r}: linear-attention layers beside multi-head latent, sparse or "
                                 f"sliding-window attention are not modelled")
        elif any((self.linear_key_heads, self.linear_value_heads, self.linear_key_head_dim, self.linear_value_head_dim,
                  self.linear_conv_kernel)):
            raise ValueError(f"model {self.name!r}: linear_key_heads, linear_value_heads, linear_key_head_dim, "
                             f"linear_value_head_dim and linear_conv_kernel describe Gated DeltaNet layers and need "
                             f"linear_layers > 0")
        if self.expert_weight_dtype is None:  # an empty YAML value
            object.__setattr__(self, "expert_weight_dtype", "")
        if self.expert_weight_dtype and self.expert_weight_dtype not in WEIGHT_ONLY_BYTES:
            raise ValueError(f"model {self.name!r}: expert_weight_dtype={self.expert_weight_dtype!r}; expected '' or "
                             f"one of {sorted(WEIGHT_ONLY_BYTES)}")
        if self.expert_weight_dtype and not self.num_experts:
            raise ValueError(f"model {self.name!r}: expert_weight_dtype={self.expert_weight_dtype!r} on a dense model")
        for f in ("weight_dtype", "kv_dtype", "linear_state_dtype"):
            if getattr(self, f) not in DTYPE_BYTES:
                raise ValueError(f"model {self.name!r}: {f}={getattr(self, f)!r}; expected one of {sorted(DTYPE_BYTES)}")
        if self.heads % self.kv_heads:
            raise ValueError(
                f"model {self.name!r}: heads({self.heads}) % kv_heads({self.kv_heads}) = "
                f"{self.heads % self.kv_heads}; grouped-query attention needs heads divisible by kv_heads")
        if self.num_experts:
            if not (1 <= self.top_k <= self.num_experts):
                raise ValueError(f"model {self.name!r}: top_k({self.top_k}) must be in 1..num_experts({self.num_experts})")
            if self.expert_ffn_size <= 0:
                raise ValueError(f"model {self.name!r}: a MoE model needs expert_ffn_size > 0")

    # -- construction -------------------------------------------------------
    @classmethod
    def from_name(cls, name: str) -> "ModelConfig":
        """A preset by name; the error lists the presets."""
        path = PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown model {name!r}; presets: {', '.join(preset_names())} "
                             f"(or pass a config .yaml, or a Hugging Face config.json or its folder)")
        return cls.from_yaml(path)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelConfig":
        """Load a config file with the preset keys (unknown keys are an error)."""
        from accelcal.safe_io import load_yaml

        path = Path(path)
        data = load_yaml(path, what="model config", max_bytes=2**20)
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<dict>") -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"{origin}: expected a mapping of model keys, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hint = wrong_file_hint(data, "model")
            if hint:  # a whole other kind of file: what it is says more than the keys it lacks
                raise ValueError(f"{origin}: not a model config{hint}; --model takes a preset name, a model config "
                                 f".yaml or a Hugging Face config.json")
            raise ValueError(f"{origin}: unknown model key(s) {unknown}; expected keys from {sorted(known)}")
        missing = sorted(f.name for f in fields(cls) if f.default is dataclass_missing() and f.name not in data)
        if missing:
            raise ValueError(f"{origin}: missing model key(s) {missing}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise ValueError(f"{origin}: {exc}") from None

    @classmethod
    def from_hf(cls, path: str | Path, name: str | None = None) -> "ModelConfig":
        """A Hugging Face ``config.json`` (or the folder holding it); errors name the file and key."""
        fields_, origin = load_hf_fields(path, name)
        try:
            return cls(**fields_)
        except ValueError as exc:
            raise ValueError(f"{origin}: {exc}") from None

    @classmethod
    def resolve(cls, spec: "str | Path | ModelConfig") -> "ModelConfig":
        """A ModelConfig, a preset name, a path to a .yaml config, or a Hugging Face config.json (or its folder)."""
        if isinstance(spec, ModelConfig):
            return spec
        s = str(spec)
        if not s.strip():
            raise ValueError(f"--model is empty ({s!r}); expected a preset name ({', '.join(preset_names()[:4])}, ...), "
                             f"a model config .yaml, or a Hugging Face config.json or its folder")
        hf = hf_config_path(s)
        if hf is not None:
            return cls.from_hf(hf)
        if s.endswith((".yaml", ".yml")) or Path(s).is_file():
            if not Path(s).is_file():
                raise FileNotFoundError(f"model config {s} does not exist")
            return cls.from_yaml(s)
        if Path(s).exists() and not Path(s).is_dir():
            # a device, FIFO or socket: a path all the same, not a preset name
            raise ValueError(f"model path {s} is not a regular file (a device, FIFO or socket); expected a preset name, "
                             f"a model config .yaml, or a Hugging Face config.json or the folder holding it")
        if Path(s).is_dir():
            raise FileNotFoundError(f"model folder {s} has no config.json (expected a Hugging Face model folder, a "
                                    f"config.json, a model config .yaml, or a preset name)")
        if any(sep in s for sep in ("/", "\\")) and not Path(s).exists():
            # a path, not a preset name: say so rather than list the presets
            raise FileNotFoundError(f"model path {s} does not exist (expected a preset name, a model config .yaml, "
                                    f"or a Hugging Face config.json or the folder holding it)")
        return cls.from_name(s)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["weight_block_size"] is not None:
            d["weight_block_size"] = list(d["weight_block_size"])  # plain YAML/JSON, the form from_dict reads
        return d

    # -- derived sizes ------------------------------------------------------
    def tp_split_issue(self, tp: int) -> str | None:
        """Why ``tp`` ranks cannot split this model's layers evenly, with the arithmetic (None when they can).

        The engines' rule (vLLM and SGLang's tensor-parallel linear layers assert it through ``divide``; TensorRT-LLM
        shards the same way): the query heads split evenly; the KV heads split evenly or, with more ranks than KV
        heads, replicate evenly (vLLM ``QKVParallelLinear``: ``divide(tp_size, total_num_kv_heads)`` replicas,
        else ``divide(total_num_kv_heads, tp_size)`` heads per rank); a dense MLP's ``intermediate_size`` splits
        evenly (``ColumnParallelLinear``, which the fused gate/up layer extends: ``divide(output_size,
        tp_size)``); Gated DeltaNet's key heads split evenly (SGLang ``Mamba2StateShape.create`` divide()).  A MoE
        model's experts are checked where their split is chosen (expert_split_issue)."""
        if self.heads % tp:
            return f"{self.heads} attention heads and {self.heads} % {tp} = {self.heads % tp}"
        if not self.is_mla and not self.kv_heads_split(tp):
            return (f"{self.kv_heads} KV heads, which {tp} ranks neither split ({self.kv_heads} % {tp} = "
                    f"{self.kv_heads % tp}) nor replicate evenly ({tp} % {self.kv_heads} = {tp % self.kv_heads})")
        if self.linear_layers and self.linear_key_heads % tp:
            return (f"Gated DeltaNet layers with {self.linear_key_heads} key heads and {self.linear_key_heads} % {tp} = "
                    f"{self.linear_key_heads % tp}")
        if (not self.is_moe or self.dense_layers) and self.ffn_size % tp:
            return (f"an MLP of {self.ffn_size} (intermediate_size) and {self.ffn_size} % {tp} = "
                    f"{self.ffn_size % tp}")
        return None

    def require_tp_divides_heads(self, tp: int, flag: str = "--tp") -> None:
        """Refuse a TP degree the engines cannot shard this model over (tp_split_issue), listing the degrees that
        they can (up to 64)."""
        issue = self.tp_split_issue(tp)
        if issue is not None:
            fits = [t for t in range(1, 65) if self.tp_split_issue(t) is None]
            parts = "heads, KV heads, " + ("Gated DeltaNet key heads, " if self.linear_layers else "") + "MLP"
            raise ValueError(f"{flag} {tp}: {self.name} has {issue}; TP must split its {parts} evenly (the engines' "
                             f"tensor-parallel layers refuse other splits): one of {fits}")

    def context_warning(self, prompt_tokens: int, output_tokens: int) -> str | None:
        """Why a request of this size is beyond the model (None when it fits or the context length is not stated):
        engines reject it unless the context is extended (rope scaling, a larger max model length)."""
        total = int(prompt_tokens) + int(output_tokens)
        if not self.max_context_len or total <= self.max_context_len:
            return None
        return (f"{prompt_tokens} prompt + {output_tokens} output = {total} tokens exceed {self.name}'s context of "
                f"{self.max_context_len} tokens (max_context_len: max_position_embeddings, times a RoPE scaling factor "
                f"that extends it, as vLLM derives its max model length): an engine rejects "
                f"such a request unless the context is extended (rope scaling, a larger max model length); "
                f"predicted as if it were")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention (``kv_lora_rank`` > 0)."""
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Layers that run the experts: all but ``dense_layers`` (0 for a dense model)."""
        return self.layers - self.dense_layers if self.is_moe else 0

    def layer_kinds(self) -> tuple[tuple[str, float], ...]:
        """((``"moe"`` or ``"dense"``, share of the layers), ...): the parts of the mean layer, one entry unless a
        MoE model has dense layers (``dense_layers``)."""
        if not self.is_moe:
            return (("dense", 1.0),)
        if not self.dense_layers:
            return (("moe", 1.0),)
        return (("moe", self.moe_layers / self.layers), ("dense", self.dense_layers / self.layers))

    @property
    def weight_bytes_per_elem(self) -> int:
        return DTYPE_BYTES[self.weight_dtype]

    @property
    def expert_bytes_per_elem(self) -> float:
        """Bytes per routed-expert weight as stored (a weight-only format's, else ``weight_dtype``'s)."""
        return WEIGHT_ONLY_BYTES[self.expert_weight_dtype] if self.expert_weight_dtype else DTYPE_BYTES[self.weight_dtype]

    @property
    def full_attention_layers(self) -> int:
        """Layers attending the whole context with softmax attention (all but the sliding-window and the
        linear-attention ones): the layers with a KV cache that grows with the context."""
        return self.layers - self.sliding_layers - self.linear_layers

    def attention_layers(self, q_len: int, kv_len: int) -> tuple[tuple[int, float, int], ...]:
        """((keys a layer's attention call reads, share of the layers, window), ...) for ``q_len`` queries at the end
        of ``kv_len`` keys.  A full-attention layer reads them all (window 0); a sliding-window layer reads
        min(kv_len, q_len + sliding_window - 1) and each query attends at most ``sliding_window`` of them (the
        window: the call's FLOP count is that of the pairs attended, vocab.attended_pairs).  Sparse attention
        (``index_topk``) has each query attend at most ``index_topk`` keys, the same count as a window of that size,
        which keys they are changing nothing in the work, so every layer is costed so.  One entry for a model with
        neither."""
        if self.index_topk:
            return ((min(kv_len, q_len + self.index_topk - 1), 1.0, self.index_topk),)
        if self.linear_layers:
            # the linear-attention layers run no softmax attention (their recurrence: linear_recurrence_work)
            return ((kv_len, self.full_attention_layers / self.layers, 0),)
        if not self.sliding_layers:
            return ((kv_len, 1.0, 0),)
        reach = min(kv_len, q_len + self.sliding_window - 1)
        return ((kv_len, self.full_attention_layers / self.layers, 0),
                (reach, self.sliding_layers / self.layers, self.sliding_window))

    def kv_heads_per_device(self, tp: int) -> int:
        """KV heads each TP rank holds; replicated when tp > kv_heads."""
        return max(1, self.kv_heads // tp)

    def kv_heads_split(self, tp: int) -> bool:
        """Whether ``tp`` ranks split the KV heads evenly or replicate them evenly (one divides the other)."""
        return self.kv_heads % tp == 0 or tp % self.kv_heads == 0

    def attention_shape(self, phase: str, tp: int = 1) -> "AttentionShape":
        """The attention call one of ``tp`` ranks runs in ``phase`` (``prefill``, ``chunk`` or ``decode``).

        Multi-head latent attention runs in the two forms the engines use (vLLM, SGLang and TensorRT-LLM MLA
        backends): a prompt expands the latent into per-head keys (``head_dim``) and values (``v_head_dim``) and
        attends them as multi-head attention; a decode step folds each head's query into the latent space and
        attends the cached latent and rotary key (``kv_lora_rank + qk_rope_head_dim`` wide, one for all heads),
        whose first ``kv_lora_rank`` columns serve as the values."""
        heads = self.heads // tp
        if not self.is_mla:
            return AttentionShape(heads, self.kv_heads_per_device(tp), self.head_dim, self.head_dim, False)
        if phase == "decode":
            return AttentionShape(heads, 1, self.kv_lora_rank + self.qk_rope_head_dim, self.kv_lora_rank, True)
        return AttentionShape(heads, heads, self.head_dim, self.v_head_dim, False)

    def mla_projections(self, tp: int = 1) -> dict[str, tuple[int, int]]:
        """Multi-head latent attention's GEMMs on one of ``tp`` ranks, name -> (N, K) of ``y = x @ W.T``: ``qkv_a``
        the query bottleneck with the latent and rotary key (replicated on every rank: vLLM / SGLang
        ``fused_qkv_a_proj``), ``q_b`` the rank's query heads from the bottleneck (from the hidden state without
        one), ``kv_b`` the latent's expansion into the rank's heads' non-rotary keys and values, ``o_proj`` the
        output from the rank's value heads."""
        heads, qr = self.heads // tp, self.q_lora_rank
        return {"qkv_a": (qr + self.kv_lora_rank + self.qk_rope_head_dim, self.hidden_size),
                "q_b": (heads * self.head_dim, qr or self.hidden_size),
                "kv_b": (heads * (self.head_dim - self.qk_rope_head_dim + self.v_head_dim), self.kv_lora_rank),
                "o_proj": (self.hidden_size, heads * self.v_head_dim)}

    @property
    def has_indexer(self) -> bool:
        """DeepSeek Sparse Attention's lightning indexer (``index_topk`` > 0)."""
        return self.index_topk > 0

    def indexer_projections(self) -> dict[str, tuple[int, int]]:
        """The sparse-attention indexer's GEMMs, name -> (N, K), the same on every TP rank (replicated): its query
        heads from the query bottleneck (the hidden state without one), its one key and its per-head weights from
        the hidden state (DeepSeek-V3.2's Indexer: wq_b, wk, weights_proj)."""
        if not self.has_indexer:
            return {}
        h = self.hidden_size
        return {"index_q": (self.index_heads * self.index_head_dim, self.q_lora_rank or h),
                "index_k": (self.index_head_dim, h), "index_w": (self.index_heads, h)}

    def indexer_scoring_work(self, batch: int, q_len: int, kv_len: int) -> tuple[float, float]:
        """(FLOP, bytes) of the sparse-attention indexer scoring ``batch`` sequences' ``q_len`` queries against the
        keys each may attend: 2 FLOP per (query, key, head, dim); the fp8 queries and cached keys (with their scales)
        read once and one fp32 score per (query, key) written.  The engines run it as one fp8 GEMM-shaped kernel
        with the heads' weighted sum folded in (DeepGEMM fp8_mqa_logits / fp8_paged_mqa_logits, which SGLang's and
        vLLM's DSA indexers call): no softmax, no values."""
        pairs = batch * attended_pairs(q_len, kv_len)
        flop = 2.0 * pairs * self.index_heads * self.index_head_dim
        nbytes = batch * (q_len * self.index_heads * self.index_head_dim + kv_len * self.index_cache_bytes_per_layer)
        return flop, nbytes + 4.0 * pairs

    @property
    def index_cache_bytes_per_layer(self) -> int:
        """Bytes one token's indexer key adds per layer: fp8 elements plus one fp32 scale per 128 of them (SGLang
        mem_cache/memory_pool.py NSATokenToKVPool and TensorRT-LLM's DSA cache manager both size it
        index_head_dim + index_head_dim // 128 * 4, whatever the KV cache's own dtype); 0 without an indexer."""
        return self.index_head_dim + self.index_head_dim // 128 * 4 if self.has_indexer else 0

    def kv_cache_elems_per_layer(self, tp: int = 1) -> int:
        """Cache elements one token adds to one full-attention layer on one of ``tp`` ranks: K and V of the rank's
        KV heads, or MLA's latent and rotary key, which every rank keeps whole (each rank's heads expand from it)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads_per_device(tp) * self.head_dim

    @property
    def kv_bytes_per_elem(self) -> int:
        return DTYPE_BYTES[self.kv_dtype]

    @property
    def q_size(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.kv_heads * self.head_dim

    def attention_params(self, tp: int = 1) -> int:
        """Attention projection weights of one layer on one of ``tp`` ranks: the rank's query heads and KV heads
        (QKV) and its share of the output; or MLA's query bottleneck and latent projection (replicated: every rank
        computes them whole, vLLM/SGLang ``fused_qkv_a_proj``) with their two norms, the rank's heads of the query
        expansion, of the latent's expansion into keys and values, and of the output; plus a sparse-attention
        indexer's projections and key LayerNorm (replicated)."""
        h, hd = self.hidden_size, self.head_dim
        indexer = sum(n * k for n, k in self.indexer_projections().values()) + 2 * self.index_head_dim
        if not self.is_mla:
            heads, kvh = self.heads // tp, self.kv_heads_per_device(tp)
            gate = heads * hd * h if self.attn_output_gate else 0  # the output gate's share of the query projection
            return h * (heads + 2 * kvh) * hd + gate + heads * hd * h + indexer
        norms = self.q_lora_rank + self.kv_lora_rank  # the bottleneck's and the latent's RMSNorm weights
        return sum(n * k for n, k in self.mla_projections(tp).values()) + norms + indexer

    # -- Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5) ------------------------------------------------
    @property
    def linear_key_dim(self) -> int:
        """Gated DeltaNet: all query (or key) heads' width, ``linear_key_heads x linear_key_head_dim``."""
        return self.linear_key_heads * self.linear_key_head_dim

    @property
    def linear_value_dim(self) -> int:
        """Gated DeltaNet: all value heads' width, ``linear_value_heads x linear_value_head_dim``."""
        return self.linear_value_heads * self.linear_value_head_dim

    def linear_projections(self, tp: int = 1) -> dict[str, tuple[int, int]]:
        """Gated DeltaNet's GEMMs on one of ``tp`` ranks, name -> (N, K): ``linear_in_qkvz`` the queries, keys, values
        and output gate z, ``linear_in_ba`` each value head's write strength (beta) and decay (a), ``linear_out`` the
        output from the rank's value heads (transformers Qwen3NextGatedDeltaNet in_proj_qkvz / in_proj_ba / out_proj;
        Qwen3.5 splits the first two into four projections of the same total width)."""
        kd, vd, h = self.linear_key_dim // tp, self.linear_value_dim // tp, self.hidden_size
        return {"linear_in_qkvz": (2 * kd + 2 * vd, h), "linear_in_ba": (2 * (self.linear_value_heads // tp), h),
                "linear_out": (h, vd)}

    @property
    def linear_conv_dim(self) -> int:
        """Channels of Gated DeltaNet's causal convolution: the queries, keys and values (2 x key dim + value dim)."""
        return 2 * self.linear_key_dim + self.linear_value_dim

    def linear_attention_params(self, tp: int = 1) -> int:
        """Weights of one Gated DeltaNet layer's token mixer on one of ``tp`` ranks: its projections, the convolution's
        taps, per value head a decay rate and a bias (``A_log``, ``dt_bias``) and the gated RMSNorm's weight (one
        value head wide, shared)."""
        proj = sum(n * k for n, k in self.linear_projections(tp).values())
        return (proj + self.linear_conv_dim // tp * self.linear_conv_kernel + 2 * (self.linear_value_heads // tp)
                + self.linear_value_head_dim)

    def mixer_params(self, tp: int = 1) -> float:
        """Token-mixer weights of the mean layer on one of ``tp`` ranks: softmax attention (``attention_params``), or
        with linear-attention layers the layer-weighted mean of both kinds (exact over all layers; a pipeline stage
        is counted at the mean)."""
        if not self.linear_layers:
            return self.attention_params(tp)
        soft = self.layers - self.linear_layers
        return (soft * self.attention_params(tp) + self.linear_layers * self.linear_attention_params(tp)) / self.layers

    def linear_state_elems(self, tp: int = 1) -> tuple[int, int]:
        """(convolution state, recurrent state) elements one sequence keeps in one Gated DeltaNet layer on one of
        ``tp`` ranks: the last ``linear_conv_kernel - 1`` inputs of the rank's convolution channels, and each of the
        rank's value heads' key_head_dim x value_head_dim state (SGLang configs/mamba_utils.py
        Mamba2StateShape.create, 0.5.9 wheel: conv (conv_dim / tp, kernel - 1), temporal (heads / tp, dk, dv))."""
        if not self.linear_layers:
            return 0, 0
        conv = self.linear_conv_dim // tp * (self.linear_conv_kernel - 1)
        return conv, (self.linear_value_heads // tp) * self.linear_key_head_dim * self.linear_value_head_dim

    def linear_state_bytes(self, tp: int = 1) -> int:
        """Bytes one sequence's state takes in one Gated DeltaNet layer on one of ``tp`` ranks: the convolution state
        in bf16 and the recurrent state in ``linear_state_dtype`` (SGLang configs/mamba_utils.py
        BaseLinearStateParams.mamba_cache_per_req, per layer)."""
        conv, state = self.linear_state_elems(tp)
        return conv * DTYPE_BYTES["bf16"] + state * DTYPE_BYTES[self.linear_state_dtype]

    def linear_recurrence_work(self, batch: int, q_len: int, tp: int = 1, chunk: int = 64) -> tuple[float, float]:
        """(FLOP, bytes) of one Gated DeltaNet layer's recurrence on one of ``tp`` ranks for ``batch`` sequences of
        ``q_len`` new tokens (the convolution and the delta rule, after the projections).

        A decode step (q_len 1) updates each value head's dk x dv state once: read and write it, about 6 FLOP per
        state element (decay, the key's read-out, the rank-1 update, the query's read-out).  A prompt runs the
        chunked form (flash-linear-attention chunk_gated_delta_rule, chunks of ``chunk`` = 64 tokens): per token and
        head 2 x (3 dk dv + chunk (3 dk + 2 dv)) FLOP (the inter-chunk state products and the intra-chunk
        triangular attention and WY transforms), and the state read and written once per call.  Bytes also count q,
        k, v, the gates and the output at 2 bytes per element, and the state (``linear_state_bytes``) read and written
        once per call."""
        _, state = self.linear_state_elems(tp)
        if not state:
            return 0.0, 0.0
        heads = self.linear_value_heads // tp
        dk, dv = self.linear_key_head_dim, self.linear_value_head_dim
        tok = batch * q_len
        if q_len == 1:
            flop = 6.0 * batch * state
        else:
            flop = 2.0 * tok * heads * (3 * dk * dv + chunk * (3 * dk + 2 * dv))
        flop += 2.0 * tok * self.linear_conv_dim // tp * self.linear_conv_kernel  # the depthwise convolution
        io = tok * (2 * self.linear_conv_dim // tp + 2 * heads + 2 * self.linear_value_dim // tp) * 2
        return flop, io + batch * 2 * self.linear_state_bytes(tp)

    def mlp_params(self) -> int:
        """Dense SwiGLU MLP (gate, up, down) of one layer."""
        return 3 * self.hidden_size * self.ffn_size

    def expert_params(self) -> int:
        """One routed (or shared) SwiGLU expert."""
        return 3 * self.hidden_size * self.expert_ffn_size

    def layer_params(self, kind: str | None = None) -> int:
        """All weights of one decoder layer (norms included); ``kind`` ``"moe"`` or ``"dense"`` (default: a MoE
        model's MoE layer, a dense model's layer)."""
        kind = kind or ("moe" if self.is_moe else "dense")
        ffn = self.mlp_params() if kind == "dense" else (
            (self.num_experts + self.shared_experts) * self.expert_params() + self.hidden_size * self.num_experts)
        return self.mixer_params() + ffn + 2 * self.hidden_size

    def embedding_params(self) -> int:
        """Input embedding plus LM head (one shared matrix when tied) plus the final norm."""
        matrices = 1 if self.tie_word_embeddings else 2
        return matrices * self.vocab_size * self.hidden_size + self.hidden_size

    def weight_bytes(self) -> float:
        """Bytes of all weights as stored (routed experts at ``expert_bytes_per_elem``)."""
        routed = self.moe_layers * self.num_experts * self.expert_params()
        layers = self.moe_layers * self.layer_params("moe") + (self.layers - self.moe_layers) * self.layer_params("dense")
        rest = layers + self.embedding_params() - routed
        return rest * self.weight_bytes_per_elem + routed * self.expert_bytes_per_elem

    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token adds across the full-attention layers (a sliding-window layer keeps only its
        window per sequence)."""
        return self.full_attention_layers * (self.kv_cache_elems_per_layer() * self.kv_bytes_per_elem
                                             + self.index_cache_bytes_per_layer)


@dataclass(frozen=True)
class AttentionShape:
    """One attention call on one TP rank (ModelConfig.attention_shape)."""

    heads: int
    """Query heads."""
    kv_heads: int
    """Key/value heads the queries share (1: MLA's absorbed decode over the latent)."""
    head_dim: int
    """Width of one query/key head."""
    v_head_dim: int
    """Width of one value (and output) head."""
    shared_kv: bool
    """The values are the keys' first ``v_head_dim`` columns (MLA decode: one latent read serves both)."""


def dataclass_missing():
    return MISSING


_HF_ID = re.compile(r"([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)(?:/blob/| config\.json)")
_CHECKPOINT_SUFFIXES = ("-instruct", "-fp8", "-nvfp4", "-fp4", "-base")


def _hf_key(hf_id: str) -> str:
    """A checkpoint's architecture key: the repository name, lower-case, without the org, a 'meta-' prefix or
    checkpoint suffixes (instruct, quantised, base variants share the base model's config)."""
    name = hf_id.strip().rstrip("/").split("/")[-1].lower()
    if name.startswith("meta-"):
        name = name[len("meta-"):]
    changed = True
    while changed:
        changed = False
        for suf in _CHECKPOINT_SUFFIXES:
            if name.endswith(suf):
                name, changed = name[: -len(suf)], True
    return name


def preset_for_hf_id(hf_id: str) -> str | None:
    """The bundled preset whose cited config.json is ``hf_id``'s base model (e.g. ``meta-llama/Llama-3.1-8B-Instruct``
    and ``nvidia/Llama-3.1-8B-Instruct-FP8`` -> ``llama3.1-8b``), or None.  Matched on the Hugging Face id each preset's
    ``source`` cites (any of them: one architecture published as several checkpoints), so a preset without one is
    never matched."""
    want = _hf_key(hf_id)
    for name in preset_names():
        cited = _HF_ID.findall(ModelConfig.from_name(name).source.replace("https://huggingface.co/", ""))
        if any(_hf_key(c) == want for c in cited):
            return name
    return None


def preset_names() -> list[str]:
    """Names of the bundled presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
