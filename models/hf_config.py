"""Read a Hugging Face ``config.json`` into ModelConfig field values.

    from accelcal.models import ModelConfig
    m = ModelConfig.from_hf("~/models/Qwen3-32B/config.json")   # or the folder holding it
    print(m.name, m.head_dim, m.weight_dtype, m.weight_bytes() / 1e9, "GB")

    $ accelcal plan --profile profiles/nvidia-h100.yaml --model ~/models/Qwen3-32B/config.json

``ModelConfig.resolve`` calls this for any ``*.json`` path or a folder with a
``config.json``, so ``--model`` takes one wherever a model is named.  Supported
architectures are the keys of ``ARCHITECTURES``; anything else is refused with
the list, because a config of another family (linear attention, interleaved
dense and MoE layers) would be costed as the wrong layer.  A multimodal
wrapper whose ``text_config`` holds a supported architecture is read through it.

What is read: ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
``num_key_value_heads`` (absent = heads, for the families whose transformers
class defaults it that way; Mistral/Mixtral must state it), ``head_dim`` (used
as given when present: Qwen3-32B has 64 heads of 128 on a 5120 residual, not
5120/64 = 80), ``intermediate_size``, ``vocab_size``, ``tie_word_embeddings``,
``torch_dtype``/``dtype``, ``quantization_config`` (fp8), ``max_position_embeddings``
and the MoE fields (MiniMax-M2 uses Mixtral's keys); the q/k RMSNorm comes from the architecture (Qwen3: per
head) or ``use_qk_norm`` / ``qk_norm_type`` (MiniMax-M2).  Not modelled, and small: Qwen2's QKV biases and the q/k
RMSNorm weights (under 0.01 % of a layer's weights; the norm itself is costed); Mistral's and Phi-3's
``sliding_window`` (attention and KV are counted at full context; the note goes
into ``source``).  Gemma 2 and 3: the keys their config classes default are filled in from those defaults (and
said so in ``source``), sliding layers follow the family's pattern when ``layer_types`` is absent, and the norms
after the attention and the MLP are costed (ModelConfig.post_norms).  ``layer_types`` with ``sliding_attention`` entries (gpt-oss) are read: those layers
attend through ``sliding_window``; ``quantization_config.quant_method`` mxfp4 (gpt-oss) stores the routed
experts weight-only (ModelConfig.expert_weight_dtype).  DeepSeek-V2/V3's multi-head latent attention
(``kv_lora_rank``, ``q_lora_rank``, ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim``), leading dense
layers (``first_k_dense_replace``) and DeepSeek-V3.2 / GLM-5's sparse-attention indexer (``index_topk``,
``index_n_heads``, ``index_head_dim``) are read into the ModelConfig fields of the same meaning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelcal.safe_io import read_text
from accelcal.vocab import QK_NORMS


__all__ = ["ARCHITECTURES", "MAX_CONFIG_BYTES", "TEXT_ARCHITECTURE_OF", "hf_config_path", "hf_fields_from_dict", "load_hf_fields"]

#: Largest config.json read (real ones are a few kB; a bigger file is not a config).
MAX_CONFIG_BYTES = 4 * 1024 * 1024

#: HF ``torch_dtype`` / ``dtype`` strings -> accelcal dtype names.
HF_DTYPES: dict[str, str] = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}

#: ``quantization_config.quant_method`` values read as fp8 (e4m3) weights.
FP8_QUANT_METHODS = ("fp8", "fbgemm_fp8")

#: ``quantization_config.quant_method`` values read as weight-only routed experts -> ModelConfig.expert_weight_dtype
#: (gpt-oss: quant_method mxfp4, modules_to_not_convert the attention, router, embedding and LM head;
#: compressed-tensors: a 4-bit integer group scheme, int4_g<group_size>, read by _compressed_tensors).
WEIGHT_ONLY_QUANT_METHODS = {"mxfp4": "mxfp4", "compressed-tensors": "int4_g"}


@dataclass(frozen=True)
class _Arch:
    """How one ``architectures`` entry maps onto ModelConfig."""

    moe: str
    """``""`` dense, ``"mixtral"`` (num_local_experts), ``"qwen_moe"`` (num_experts + moe_intermediate_size)."""
    kv_heads_default_heads: bool
    """An absent ``num_key_value_heads`` means MHA (= heads); else the key is required."""
    shared_expert_key: str = ""
    """Key of the always-active expert's width, when the family has one."""
    qk_norm: str = ""
    """The family's q/k RMSNorm (ModelConfig.qk_norm), or ``"config"``: read ``use_qk_norm`` / ``qk_norm_type``."""
    default_layer_types: str = ""
    """What an absent ``layer_types`` means: ``""`` every layer full attention, ``"alternating"`` sliding then full
    (transformers models/gpt_oss/configuration_gpt_oss.py GptOssConfig and Gemma2Config: layer i sliding when
    (i + 1) % 2), ``"pattern"`` every ``sliding_window_pattern``-th layer full, the others sliding (Gemma3TextConfig:
    layer i sliding when (i + 1) % sliding_window_pattern)."""
    post_norms: bool = False
    """A norm on each sub-block's output before its residual add (ModelConfig.post_norms)."""
    defaults: tuple[tuple[str, Any], ...] = ()
    """Config keys the family's transformers config class fills in when a config.json leaves them out (Gemma 3's
    multimodal checkpoints state only the text model's keys that differ from Gemma3TextConfig's defaults)."""
    gated_act: str = ""
    """The gated MLP's activation when it is not SiLU (costed as the same one elementwise pass), for the source note."""
    mla: bool = False
    """Multi-head latent attention: ``kv_lora_rank``, ``q_lora_rank``, ``qk_nope_head_dim``, ``qk_rope_head_dim``
    and ``v_head_dim`` give the attention (DeepSeek-V2/V3)."""
    indexer: bool = False
    """DeepSeek Sparse Attention: ``index_topk``, ``index_n_heads`` and ``index_head_dim`` give its indexer
    (DeepSeek-V3.2, GLM-5)."""
    linear: bool = False
    """Gated DeltaNet linear-attention layers beside gated softmax attention (Qwen3-Next, Qwen3.5): ``layer_types``
    (``linear_attention`` / ``full_attention``) or, without it, every ``full_attention_interval``-th layer full;
    ``linear_num_key_heads``, ``linear_num_value_heads``, ``linear_key_head_dim``, ``linear_value_head_dim``,
    ``linear_conv_kernel_dim`` and ``attn_output_gate`` (default true, transformers Qwen3NextConfig)."""


_GEMMA2_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("vocab_size", 256000), ("num_key_value_heads", 4), ("head_dim", 256), ("max_position_embeddings", 8192),
    ("tie_word_embeddings", True), ("sliding_window", 4096))
"""transformers Gemma2Config's defaults (models/gemma2/configuration_gemma2.py docstring) for the keys it fills in."""

_GEMMA3_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("vocab_size", 262208), ("hidden_size", 2304), ("intermediate_size", 9216), ("num_hidden_layers", 26),
    ("num_attention_heads", 8), ("num_key_value_heads", 4), ("head_dim", 256), ("max_position_embeddings", 131072),
    ("tie_word_embeddings", True), ("sliding_window", 4096), ("sliding_window_pattern", 6))
"""transformers Gemma3TextConfig.__init__ defaults (models/gemma3/configuration_gemma3.py, as read at commit
008f5c8c): the keys Gemma 3's multimodal checkpoints leave out of their text_config."""

ARCHITECTURES: dict[str, _Arch] = {
    "LlamaForCausalLM": _Arch("", True),
    "MistralForCausalLM": _Arch("", False),
    "Qwen2ForCausalLM": _Arch("", True),
    # transformers models/qwen3/modeling_qwen3.py Qwen3Attention: q_norm / k_norm = Qwen3RMSNorm(head_dim), applied
    # to each head's query and key before RoPE (the config has no key for it)
    "Qwen3ForCausalLM": _Arch("", True, qk_norm="per_head"),
    "MixtralForCausalLM": _Arch("mixtral", False),
    "Qwen2MoeForCausalLM": _Arch("qwen_moe", True, shared_expert_key="shared_expert_intermediate_size"),
    "Qwen3MoeForCausalLM": _Arch("qwen_moe", True, qk_norm="per_head"),
    # Mixtral's MoE keys (num_local_experts; intermediate_size is the expert width); q/k RMSNorm from use_qk_norm and
    # qk_norm_type ("per_layer": one RMS over all heads); its partial RoPE, sigmoid router bias and MTP modules are
    # not modelled (small, or unused when serving)
    "MiniMaxM2ForCausalLM": _Arch("mixtral", False, shared_expert_key="shared_intermediate_size", qk_norm="config"),
    # gpt-oss (transformers models/gpt_oss): Mixtral's MoE keys (num_local_experts, num_experts_per_tok,
    # intermediate_size = the expert width), sliding-window layers from layer_types, mxfp4 expert weights from
    # quantization_config; its attention sinks, QKV/output and expert biases and clamped SwiGLU are not costed
    # (one scalar per head, vectors: far under 0.1 % of a layer's work)
    "GptOssForCausalLM": _Arch("mixtral", False, default_layer_types="alternating"),
    # DeepSeek-V2/V3 (and checkpoints of the same class, e.g. DeepSeek-R1, Kimi-K2): multi-head latent attention, and
    # DeepSeek's MoE keys (n_routed_experts, n_shared_experts counted in experts, moe_intermediate_size, the first
    # first_k_dense_replace layers dense); the router's grouped top-k, its bias and the MTP modules are not costed
    "DeepseekV2ForCausalLM": _Arch("deepseek", True, mla=True),
    "DeepseekV3ForCausalLM": _Arch("deepseek", True, mla=True),
    # DeepSeek-V3.2 and GLM-5: the same, plus the sparse attention's lightning indexer (each query attends the
    # index_topk keys it scores highest)
    "DeepseekV32ForCausalLM": _Arch("deepseek", True, mla=True, indexer=True),
    "GlmMoeDsaForCausalLM": _Arch("deepseek", True, mla=True, indexer=True),
    # Qwen3-Next and Qwen3.5 (transformers models/qwen3_next, qwen3_5, qwen3_5_moe): three Gated DeltaNet layers to
    # one gated softmax-attention layer with a per-head q/k RMSNorm, Qwen2-MoE's expert keys with a shared expert
    # of shared_expert_intermediate_size; the shared expert's sigmoid gate (one output), the partial RoPE and the
    # MTP layers (mtp_num_hidden_layers, used only for speculative decoding) are not costed
    "Qwen3NextForCausalLM": _Arch("qwen_moe", True, shared_expert_key="shared_expert_intermediate_size",
                                  qk_norm="per_head", linear=True),
    "Qwen3_5MoeForCausalLM": _Arch("qwen_moe", True, shared_expert_key="shared_expert_intermediate_size",
                                   qk_norm="per_head", linear=True),
    "Qwen3_5ForCausalLM": _Arch("", True, qk_norm="per_head", linear=True),
    # Phi-3 and Phi-4 (transformers models/phi3): Llama's layer with the QKV and gate/up projections stored fused
    # (the same GEMMs an engine runs); Phi-3's sliding_window is noted as Mistral's is; partial RoPE (Phi-4-mini's
    # partial_rotary_factor) is not costed apart
    "Phi3ForCausalLM": _Arch("", True),
    # Gemma 2 and 3 (transformers models/gemma2, gemma3): GeGLU MLP (gelu_pytorch_tanh), a norm after the attention
    # and after the MLP as well as before them, sliding-window layers (Gemma 2 every other one, Gemma 3 five of six);
    # Gemma 3 normalises each head's query and key.  The embedding's sqrt(hidden) scale and the logit soft-capping
    # (attn_logit_softcapping, final_logit_softcapping) are not costed: one multiply in kernels that run anyway.
    "Gemma2ForCausalLM": _Arch("", False, default_layer_types="alternating", post_norms=True, gated_act="GeGLU",
                               defaults=_GEMMA2_DEFAULTS),
    "Gemma3ForCausalLM": _Arch("", False, qk_norm="per_head", default_layer_types="pattern", post_norms=True,
                               gated_act="GeGLU", defaults=_GEMMA3_DEFAULTS),
}

#: Multimodal wrappers whose ``text_config`` names no architecture: the text model's class (transformers
#: Qwen3_5ForConditionalGeneration / Qwen3_5MoeForConditionalGeneration hold a Qwen3.5 text model,
#: Gemma3ForConditionalGeneration a Gemma 3 one).
TEXT_ARCHITECTURE_OF: dict[str, str] = {"Qwen3_5MoeForConditionalGeneration": "Qwen3_5MoeForCausalLM",
                                        "Qwen3_5ForConditionalGeneration": "Qwen3_5ForCausalLM",
                                        "Gemma3ForConditionalGeneration": "Gemma3ForCausalLM"}

#: ``layer_types`` entries read: full attention, attention through the ``sliding_window``, or (architectures with
#: ``linear``) Gated DeltaNet linear attention.
LAYER_TYPES = ("full_attention", "sliding_attention", "linear_attention")


def hf_config_path(spec: str | Path) -> Path | None:
    """The config.json a model spec names (a ``.json`` file or a folder holding ``config.json``), else None."""
    p = Path(spec).expanduser()
    if p.suffix == ".json":
        return p
    if p.is_dir() and (p / "config.json").exists():
        return p / "config.json"
    return None


def load_hf_fields(path: str | Path, name: str | None = None) -> tuple[dict[str, Any], str]:
    """Read ``path`` (a config.json, or a folder with one) safely; ModelConfig field values and the origin.

    Returns fields rather than a ModelConfig so the model layer's config module can call this without an
    import cycle (``ModelConfig.from_hf`` builds the config).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    origin = str(p)
    data = _parse(p)
    return hf_fields_from_dict(data, origin=origin, name=name or _default_name(p, data)), origin


def hf_fields_from_dict(cfg: Any, origin: str = "<config.json>", name: str = "hf-model") -> dict[str, Any]:
    """Map a parsed config.json mapping onto ModelConfig field values (``origin`` names the file in errors)."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{origin}: expected a JSON object (a Hugging Face config.json), got {type(cfg).__name__}")
    text = cfg.get("text_config")
    if isinstance(text, dict) and not text.get("architectures"):
        wrapped = [TEXT_ARCHITECTURE_OF[a] for a in cfg.get("architectures") or [] if a in TEXT_ARCHITECTURE_OF]
        if wrapped:
            text = dict(text, architectures=wrapped[:1])
    if isinstance(text, dict) and not _supported(cfg):
        if not _supported(text):
            named = text.get("architectures")
            raise ValueError(f"{origin}: architecture {', '.join(map(str, cfg.get('architectures') or ['(none)']))} is "
                             f"not supported, nor is its text_config's ({', '.join(map(str, named)) if named else 'it names no architectures'}); "
                             f"supported: {', '.join(ARCHITECTURES)}")
        # a multimodal checkpoint (e.g. Kimi-K2.5's KimiK25ForConditionalGeneration) around a supported text model;
        # a quantization config or dtype stated on the wrapper only (llm-compressor writes it there) is the text model's
        inherited = {k: cfg[k] for k in ("quantization_config", "torch_dtype", "dtype") if k in cfg and k not in text}
        kw = hf_fields_from_dict(dict(text, **inherited), origin=f"{origin} text_config", name=name)
        kw["source"] += (f"; the text model of {', '.join(cfg['architectures'])}"
                         + (f" ({', '.join(inherited)} from the wrapper)" if inherited else "")
                         + ": its vision tower's weights and work are not counted")
        return kw
    arch_name, arch = _architecture(cfg, origin)
    filled = [k for k, _ in arch.defaults if cfg.get(k) is None]
    cfg = {**cfg, **{k: v for k, v in arch.defaults if k in filled}}
    get = _Reader(cfg, origin)

    hidden = get.int("hidden_size")
    heads = get.int("num_attention_heads")
    kv_heads = get.int("num_key_value_heads", default=heads if arch.kv_heads_default_heads else None)
    mla = _mla(cfg, get, origin) if arch.mla else {}
    if mla:
        head_dim = get.int("qk_nope_head_dim") + mla["qk_rope_head_dim"]
        kv_heads = heads  # every head's keys and values are expanded from the one latent
    elif cfg.get("head_dim") is not None:
        head_dim = get.int("head_dim")
    elif arch.linear:
        head_dim = 256  # noted below: transformers Qwen3NextConfig's head_dim default, not hidden / heads
    else:
        if hidden % heads:
            raise ValueError(f"{origin}: no head_dim, and hidden_size({hidden}) % num_attention_heads({heads}) = "
                             f"{hidden % heads}; state head_dim")
        head_dim = hidden // heads
    notes = [f"{origin} ({arch_name})"]
    if filled:
        notes.append(f"{', '.join(f'{k}={cfg[k]}' for k in filled)}: the {arch_name} config class's defaults (not in "
                     f"the file)")
    if arch.gated_act:
        notes.append(f"{arch.gated_act} MLP costed as SwiGLU's (the same GEMMs and one activation-times-up pass)")
    if arch.linear and cfg.get("head_dim") is None:
        notes.append("no head_dim: 256, transformers Qwen3NextConfig's default (not hidden_size / num_attention_heads)")

    if cfg.get("intermediate_size") is None and arch.moe == "qwen_moe" and cfg.get("moe_intermediate_size") is not None:
        # Qwen3.5-MoE's text config has no dense width: every layer is MoE, so the dense width is never used
        ffn = get.int("moe_intermediate_size")
        notes.append("no intermediate_size (every layer MoE): the unused dense width set to moe_intermediate_size")
    else:
        ffn = get.int("intermediate_size")
    kw: dict[str, Any] = dict(
        name=name, layers=get.int("num_hidden_layers"), hidden_size=hidden, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, ffn_size=ffn, vocab_size=get.int("vocab_size"),
        tie_word_embeddings=get.bool("tie_word_embeddings", default=False),
        max_context_len=_context_len(cfg, get, arch_name),
    )
    kw.update(mla)
    if arch.indexer:
        kw.update(index_topk=get.int("index_topk"), index_heads=get.int("index_n_heads"),
                  index_head_dim=get.int("index_head_dim"))
        # layers that reuse another layer's top-k instead of running an indexer of their own are not modelled
        shared = {k: cfg[k] for k in ("use_index_cache", "index_topk_freq", "index_topk_pattern", "indexer_types")
                  if cfg.get(k) not in (None, False, 1)}
        if shared:
            raise ValueError(f"{origin}: {shared}: layers sharing the indexer's top-k are not modelled (every layer "
                             f"is costed with an indexer of its own); expected these keys absent, false or 1")
    kw["qk_norm"] = _qk_norm(cfg, get, arch, origin)
    if arch.post_norms:
        kw["post_norms"] = True
    kw.update(_dtypes(cfg, get, origin, notes))
    if arch.moe:
        kw.update(_moe(cfg, get, arch, origin, kw["layers"]))
    if kw.get("expert_weight_dtype", "").startswith("int4_g") and kw.get("shared_experts"):
        # the 4-bit format is costed on the routed experts only: the shared ones must be left out of it
        ignore = (cfg.get("quantization_config") or {}).get("ignore") or []
        if not any("shared_expert" in str(i) for i in ignore):
            raise ValueError(f"{origin}: quantization_config (compressed-tensors) quantizes the shared experts too "
                             f"(no shared_experts entry in ignore {ignore}); only routed experts stored in 4 bits are "
                             f"modelled")
    kw.update(_sliding(cfg, get, arch, origin, kw["layers"], notes))
    if arch.linear:
        kw.update(_linear(cfg, get, origin, kw["layers"], notes))
    window = cfg.get("sliding_window")
    if (not kw.get("sliding_layers") and window is not None and cfg.get("use_sliding_window", True)
            and arch_name.startswith(("Mistral", "Mixtral", "Phi3"))):
        window = get.int("sliding_window")  # not costed, but a window of no tokens is a broken config all the same
        notes.append(f"sliding_window={window} not modelled (attention and KV at full context)")
    kw["source"] = "; ".join(notes)
    return kw


# -- reading -------------------------------------------------------------------------------------------------
def _parse(p: Path) -> Any:
    text = _read_capped(p)
    try:
        return json.loads(text, parse_constant=_reject_constant(str(p)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON: {exc}") from None


def _read_capped(p: Path) -> str:
    """The text of a regular file of at most MAX_CONFIG_BYTES (symlinks followed: the HF cache links to blobs)."""
    return read_text(p, what="model config", max_bytes=MAX_CONFIG_BYTES)


def _reject_constant(origin: str):
    def reject(token: str):
        raise ValueError(f"{origin}: {token} is not valid JSON")
    return reject


def _default_name(p: Path, data: Any) -> str:
    # a downloaded model sits in a folder named after it; _name_or_path is often a local path, so it comes second
    if p.name == "config.json" and p.parent.name not in ("", "."):
        return p.parent.name
    if isinstance(data, dict) and isinstance(data.get("_name_or_path"), str) and data["_name_or_path"]:
        return data["_name_or_path"].rstrip("/").split("/")[-1]
    return p.stem


ROPE_TYPES_ALREADY_EXTENDED: tuple[str, ...] = ("su", "longrope", "llama3")
"""RoPE scalings whose max_position_embeddings is already the extended context (vLLM's ModelConfig
``_get_and_verify_max_len``, vllm-project/vllm vllm/config/model.py: it applies no factor for these)."""


def _context_len(cfg: dict, get: "_Reader", arch_name: str = "") -> int:
    """The longest context an engine serves the model at by default (0: not stated): max_position_embeddings,
    times the RoPE scaling factor where the scaling extends it, from ``original_max_position_embeddings`` for YaRN,
    as vLLM derives its default max_model_len (``_get_and_verify_max_len``; Gemma 3's figure is already scaled
    there).  ``rope_scaling``, or transformers v5's ``rope_parameters`` (one mapping, or one per layer type)."""
    base = get.int("max_position_embeddings", default=0, minimum=1)
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    gemma3 = "gemma3" in str(cfg.get("model_type", "")) or arch_name.lower().startswith("gemma3")
    if not base or not isinstance(rope, dict) or gemma3:
        return base
    params = [v for v in rope.values() if isinstance(v, dict)] or [rope]  # per layer type, or one
    factor, length = 1.0, float(base)
    for rp in params:
        kind = rp.get("rope_type", rp.get("type", "default"))
        if kind in ROPE_TYPES_ALREADY_EXTENDED:
            continue
        f = rp.get("factor", factor)
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1e6:
            raise ValueError(f"{get.origin}: rope_scaling factor = {f!r}; expected a number > 0")
        factor = float(f)
        orig = rp.get("original_max_position_embeddings")
        if kind == "yarn" and isinstance(orig, int) and not isinstance(orig, bool) and orig > 0:
            length = float(orig)
    return int(length * factor)


class _Reader:
    """Typed access to config keys; every error names the file and the key."""

    def __init__(self, cfg: dict, origin: str) -> None:
        self.cfg, self.origin = cfg, origin

    MAX_INT = 2**31 - 1
    """Above every size a config states (vocabularies ~1e6, contexts ~1e7): a larger figure is a slip (1e30)."""

    def int(self, key: str, default: Any = ..., minimum: int = 1) -> int:
        v = self.cfg.get(key)
        if v is None:
            if default is ... or default is None:
                raise ValueError(f"{self.origin}: missing key {key!r} (an integer)")
            return default
        raw = v
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{self.origin}: {key} = {v!r}; expected an integer >= {minimum}")
        if v > self.MAX_INT:
            raise ValueError(f"{self.origin}: {key} = {raw!r}; expected an integer >= {minimum} and <= {self.MAX_INT} "
                             f"(no model states a size this large: a slip?)")
        return v

    def bool(self, key: str, default: bool) -> bool:
        v = self.cfg.get(key, default)
        if not isinstance(v, bool):
            raise ValueError(f"{self.origin}: {key} = {v!r}; expected true or false")
        return v


def _supported(cfg: dict) -> bool:
    archs = cfg.get("architectures")
    return isinstance(archs, list) and any(isinstance(a, str) and a in ARCHITECTURES for a in archs)


def _architecture(cfg: dict, origin: str) -> tuple[str, _Arch]:
    archs = cfg.get("architectures")
    supported = ", ".join(ARCHITECTURES)
    if archs is None:
        raise ValueError(f"{origin}: missing key 'architectures' (a list of class names); supported: {supported}")
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise ValueError(f"{origin}: 'architectures' must be a non-empty list of class names, as transformers writes "
                         f"it (e.g. [\"LlamaForCausalLM\"]), got {archs!r}; supported: {supported}")
    for a in archs:
        if a in ARCHITECTURES:
            return a, ARCHITECTURES[a]
    raise ValueError(f"{origin}: architecture {', '.join(archs)} is not supported; supported: {supported}")


def _qk_norm(cfg: dict, get: _Reader, arch: _Arch, origin: str) -> str:
    if arch.qk_norm != "config":
        return arch.qk_norm
    if not get.bool("use_qk_norm", default=False):
        return ""
    kind = cfg.get("qk_norm_type", "per_layer")  # the default sglang 0.5.8 models/minimax_m2.py reads it with
    if not kind or kind not in QK_NORMS:
        raise ValueError(f"{origin}: qk_norm_type = {kind!r}; expected 'per_layer' or 'per_head'")
    return kind


def _dtypes(cfg: dict, get: _Reader, origin: str, notes: list[str]) -> dict[str, str]:
    key = "dtype" if cfg.get("dtype") is not None else "torch_dtype"
    raw = cfg.get(key)
    if raw is None:
        act = "bf16"
        notes.append("no torch_dtype: bf16 assumed")
    elif raw in HF_DTYPES:
        act = HF_DTYPES[raw]
    else:
        raise ValueError(f"{origin}: {key} = {raw!r}; expected one of {sorted(HF_DTYPES)}")
    weight = act
    q = cfg.get("quantization_config")
    if q is not None:
        if not isinstance(q, dict):
            raise ValueError(f"{origin}: quantization_config = {q!r}; expected an object")
        method = q.get("quant_method")
        if method in WEIGHT_ONLY_QUANT_METHODS:
            fmt = _compressed_tensors(q, origin) if method == "compressed-tensors" else WEIGHT_ONLY_QUANT_METHODS[method]
            notes.append(f"routed experts' weights {fmt} (weight-only: GEMMs in {act}); the other weights {act}")
            return {"weight_dtype": act, "kv_dtype": act, "expert_weight_dtype": fmt}
        if method not in FP8_QUANT_METHODS:
            raise ValueError(f"{origin}: quantization_config.quant_method = {method!r} is not supported; "
                             f"supported: {', '.join(FP8_QUANT_METHODS)} (fp8 e4m3 weights), "
                             f"{', '.join(WEIGHT_ONLY_QUANT_METHODS)} (weight-only MoE experts)")
        fmt = q.get("fmt", "e4m3")
        # transformers' FineGrainedFP8Config writes "e4m3"; checkpoints also state the torch dtype name
        if fmt not in ("e4m3", "float8_e4m3fn"):
            raise ValueError(f"{origin}: quantization_config.fmt = {fmt!r}; only e4m3 fp8 weights are supported")
        weight = "fp8_e4m3"
        block = q.get("weight_block_size")  # checked by ModelConfig (weight_block_size)
        scales = "per-tensor/per-channel scales" if block is None else f"block-scaled {block}"
        notes.append(f"fp8 e4m3 weights, {scales} (quant_method={method})")
        return {"weight_dtype": weight, "kv_dtype": act, "weight_block_size": block}
    return {"weight_dtype": weight, "kv_dtype": act}


def _compressed_tensors(q: dict, origin: str) -> str:
    """The weight-only format of a compressed-tensors ``quantization_config`` (vocab.WEIGHT_ONLY_BYTES ``int4_g<G>``):
    one config group of symmetric 4-bit integer weights in groups of G, activations unquantised, and the attention
    left out (``ignore``), as Kimi-K2.5's routed experts are stored; any other scheme is refused."""
    from accelcal.vocab import WEIGHT_ONLY_BYTES

    groups = q.get("config_groups")
    want = ("one config group of weights {num_bits: 4, type: int, strategy: group, symmetric: true} with "
            "input_activations null, and the attention (self_attn) in ignore")
    if not isinstance(groups, dict) or len(groups) != 1:
        raise ValueError(f"{origin}: quantization_config (compressed-tensors) config_groups = {str(groups)[:80]}; "
                         f"expected {want}")
    g = next(iter(groups.values()))
    w = g.get("weights") if isinstance(g, dict) else None
    ok = (isinstance(w, dict) and w.get("num_bits") == 4 and w.get("type") == "int" and w.get("strategy") == "group"
          and w.get("symmetric") is True and g.get("input_activations") is None
          and any("self_attn" in str(i) for i in q.get("ignore") or []))
    fmt = f"int4_g{w.get('group_size')}" if isinstance(w, dict) else ""
    if not ok or fmt not in WEIGHT_ONLY_BYTES:
        what = (f"{w.get('num_bits')}-bit {w.get('type')} weights" if isinstance(w, dict) else "no weights scheme") + (
            " with quantized activations" if isinstance(g, dict) and g.get("input_activations") is not None else "")
        raise ValueError(f"{origin}: quantization_config (compressed-tensors) has {what} ({str(w)[:120]}); only 4-bit "
                         f"integer weight-only experts are read: expected {want}, group_size one of "
                         f"{sorted(int(k[len('int4_g'):]) for k in WEIGHT_ONLY_BYTES if k.startswith('int4_g'))}")
    return fmt


def _sliding(cfg: dict, get: _Reader, arch: _Arch, origin: str, layers: int, notes: list[str]) -> dict[str, int]:
    """Sliding-window layers from ``layer_types`` (one entry per layer; absent: the family's default); none where
    ``use_sliding_window`` is false (Qwen2/Qwen3: transformers then ignores the window)."""
    if cfg.get("use_sliding_window") is False:
        return {}
    types = cfg.get("layer_types")
    if types is None:
        if arch.default_layer_types not in ("alternating", "pattern"):
            return {}
        # alternating is the pattern of 2: layer i full attention when (i + 1) % every == 0
        every = 2 if arch.default_layer_types == "alternating" else get.int("sliding_window_pattern")
        types = ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(layers)]
        notes.append("no layer_types: sliding and full attention alternate, the family's default"
                     if arch.default_layer_types == "alternating" else
                     f"no layer_types: every {every}th layer full attention, the others sliding (sliding_window_pattern)")
    if not isinstance(types, list):
        raise ValueError(f"{origin}: layer_types = {str(types)[:80]}; expected a list, one entry per layer")
    if len(types) != layers:
        raise ValueError(f"{origin}: layer_types has {len(types)} entries; expected {layers}, one per layer "
                         f"(num_hidden_layers)")
    allowed = LAYER_TYPES if arch.linear else tuple(t for t in LAYER_TYPES if t != "linear_attention")
    bad = [(i, t) for i, t in enumerate(types) if t not in allowed]
    if bad:
        raise ValueError(f"{origin}: layer_types[{bad[0][0]}] = {bad[0][1]!r}" + (f" (and {len(bad) - 1} more)" if
                         len(bad) > 1 else "") + f"; expected one of {list(allowed)}")
    sliding = types.count("sliding_attention")
    if not sliding:
        return {}
    if cfg.get("sliding_window", ...) is None:
        raise ValueError(f"{origin}: sliding_window is null, but layer_types has {sliding} sliding_attention layers; "
                         f"expected the window in tokens (an integer)")
    window = get.int("sliding_window")
    notes.append(f"{sliding} of {layers} layers attend through a {window}-token sliding window")
    return {"sliding_window": window, "sliding_layers": sliding}


_STATE_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
"""``mamba_ssm_dtype`` values SGLang accepts (configs/mamba_utils.py, 0.5.9 wheel) -> accelcal dtype names."""


def _linear(cfg: dict, get: _Reader, origin: str, layers: int, notes: list[str]) -> dict[str, Any]:
    """Gated DeltaNet layers and widths (ModelConfig.linear_layers and the rest): the ``linear_attention`` entries of
    ``layer_types``, or without it all but every ``full_attention_interval``-th layer (transformers Qwen3NextConfig:
    layer i is full attention when (i + 1) % interval == 0)."""
    types = cfg.get("layer_types")
    if types is None:
        interval = get.int("full_attention_interval")
        linear = layers - layers // interval
        notes.append(f"no layer_types: every {interval}th layer full attention, the others linear")
    else:
        linear = types.count("linear_attention")  # _sliding checked the list
    if cfg.get("mamba_ssm_dtype", "float32") not in _STATE_DTYPES:
        raise ValueError(f"{origin}: mamba_ssm_dtype = {cfg.get('mamba_ssm_dtype')!r}; expected one of "
                         f"{list(_STATE_DTYPES)}")
    if not 0 < linear < layers:
        raise ValueError(f"{origin}: {linear} of {layers} layers are linear_attention; a hybrid model needs both kinds")
    notes.append(f"{linear} of {layers} layers Gated DeltaNet linear attention")
    return {"linear_layers": linear, "linear_key_heads": get.int("linear_num_key_heads"),
            "linear_value_heads": get.int("linear_num_value_heads"), "linear_key_head_dim": get.int("linear_key_head_dim"),
            "linear_value_head_dim": get.int("linear_value_head_dim"),
            "linear_conv_kernel": get.int("linear_conv_kernel_dim"),
            "attn_output_gate": get.bool("attn_output_gate", default=True),
            "linear_state_dtype": _STATE_DTYPES.get(cfg.get("mamba_ssm_dtype", "float32"), "?")}


def _mla(cfg: dict, get: _Reader, origin: str) -> dict[str, int]:
    """Multi-head latent attention's widths (ModelConfig.kv_lora_rank and the rest); a null ``q_lora_rank``
    (DeepSeek-V2-Lite) projects the queries from the hidden state directly."""
    q_lora = cfg.get("q_lora_rank")
    if q_lora is not None and not (isinstance(q_lora, int) and not isinstance(q_lora, bool) and q_lora >= 1):
        raise ValueError(f"{origin}: q_lora_rank = {q_lora!r}; expected an integer >= 1, or null (queries projected "
                         f"from the hidden state directly)")
    return {"kv_lora_rank": get.int("kv_lora_rank"), "q_lora_rank": 0 if q_lora is None else q_lora,
            "qk_rope_head_dim": get.int("qk_rope_head_dim"), "v_head_dim": get.int("v_head_dim")}


def _moe(cfg: dict, get: _Reader, arch: _Arch, origin: str, layers: int) -> dict[str, int]:
    if arch.moe == "deepseek":
        freq = get.int("moe_layer_freq", default=1)
        if freq != 1:
            raise ValueError(f"{origin}: moe_layer_freq = {freq}; expected 1: the planner models every layer after "
                             f"first_k_dense_replace as MoE, not every {freq}th")
        dense = get.int("first_k_dense_replace", default=0, minimum=0)
        if dense >= layers:
            raise ValueError(f"{origin}: first_k_dense_replace({dense}) >= num_hidden_layers({layers}): no MoE layer")
        return {"num_experts": get.int("n_routed_experts"), "top_k": get.int("num_experts_per_tok"),
                "expert_ffn_size": get.int("moe_intermediate_size"),
                "shared_experts": get.int("n_shared_experts", default=0, minimum=0), "dense_layers": dense}
    if arch.moe == "mixtral":
        expert = get.int("intermediate_size")
        return {"num_experts": get.int("num_local_experts"), "top_k": get.int("num_experts_per_tok"),
                "expert_ffn_size": expert, "shared_experts": _shared(cfg, get, arch, origin, expert)}
    step = get.int("decoder_sparse_step", default=1)
    dense_only = cfg.get("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(isinstance(i, int) for i in dense_only):
        raise ValueError(f"{origin}: mlp_only_layers = {dense_only!r}; expected a list of layer indices")
    dense = sorted({i for i in dense_only if 0 <= i < layers} | {i for i in range(layers) if (i + 1) % step})
    if dense:
        raise ValueError(f"{origin}: {len(dense)} of {layers} layers are dense MLPs (decoder_sparse_step={step}, "
                         f"mlp_only_layers={dense_only}); the planner models every layer of a MoE model as MoE")
    expert = get.int("moe_intermediate_size")
    return {"num_experts": get.int("num_experts"), "top_k": get.int("num_experts_per_tok"),
            "expert_ffn_size": expert, "shared_experts": _shared(cfg, get, arch, origin, expert)}


def _shared(cfg: dict, get: "_Reader", arch: _Arch, origin: str, expert: int) -> int:
    """Always-active experts, in units of one routed expert's width (0 when the family has none)."""
    if not (arch.shared_expert_key and cfg.get(arch.shared_expert_key)):
        return 0
    width = get.int(arch.shared_expert_key)
    if width % expert:
        raise ValueError(f"{origin}: {arch.shared_expert_key}({width}) % expert width({expert}) = "
                         f"{width % expert}; the planner counts shared experts in units of one expert")
    return width // expert

