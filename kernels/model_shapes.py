"""GEMM shapes the planner will ask about: a model's projections divided by each TP degree.

    from accelcal.kernels.model_shapes import model_gemm_shapes, with_model_shapes
    shapes, notes = model_gemm_shapes(["llama3-70b"], [1, 2, 4, 8])
    print([(s.name, s.n, s.k) for s in shapes])     # llama3-70b.qkv/tp8 (1280, 8192), ...
    preset = with_model_shapes(suite_preset("quick", "cuda"), ["llama3-70b"], [1, 2, 4, 8])
    sweep_preset_for("quick", "cuda").for_models      # the quick accelerator sweep covers the preset models

The (N, K) come from the model layer (accelcal.models: ModelDims.projections, check_tp): QKV, output,
gate/up, down, routed experts, router and LM head, each divided as Megatron TP divides it (the planner's
DAG asks the same shapes; KV heads replicated where TP exceeds them, as the planner does).  A TP degree the
model cannot be split evenly by (models.check_tp) is reported in ``notes`` and skipped.  No torch, no planner import (measuring code stays below the planner).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from .shapes import GemmShape, SuitePreset, suite_preset

__all__ = ["model_gemm_shapes", "parse_for_model", "with_model_shapes", "sweep_preset_for", "MODEL_SHAPE_MS", "MODEL_SHAPE_DTYPES", "QUICK_FOR_MODELS",
           "QUICK_FOR_TP"]

MODEL_SHAPE_MS: tuple[int, ...] = (1, 16, 128, 1024, 4096)
"""M grid for model shapes in the quick sweep: decode batches, a tile boundary, prefill chunks."""

MODEL_SHAPE_DTYPES: tuple[str, ...] = ("bf16",)
"""dtypes the model shapes are measured in: what the planner costs the preset models in (weight_dtype)."""

QUICK_FOR_MODELS: tuple[str, ...] = ("llama3-8b", "llama3-70b", "llama3.1-405b", "mixtral-8x7b", "qwen3-32b")
"""Preset models the quick accelerator sweep covers by default (planner/presets)."""

QUICK_FOR_TP: tuple[int, ...] = (1, 2, 4, 8)
"""TP degrees covered by default (one 8-GPU node)."""


_TP_SPLIT = {"qkv": "n", "o": "k", "gate_up": "n", "down": "k", "expert_gate_up": "n", "expert_down": "k"}
"""Which side of each projection TP divides (Megatron: column-parallel QKV and gate/up, row-parallel o and down)."""


def model_gemm_shapes(models: Sequence[str], tps: Sequence[int]) -> tuple[list[GemmShape], list[str]]:
    """(unique (N, K) shapes, notes): every projection of each model at each TP degree, plus router and LM head."""
    from accelcal.models import LayerDims, ModelConfig, ModelDims, check_tp

    shapes: dict[tuple[int, int], GemmShape] = {}
    notes: list[str] = []

    def add(name: str, n: int, k: int, how: str) -> None:
        shapes.setdefault((n, k), GemmShape(name, n, k, how))

    for spec in models:
        cfg = ModelConfig.resolve(spec)
        dims = ModelDims.from_config(cfg)
        projs = dims.projections()
        if dims.moe:  # attention projections are a dense model's of the same width
            projs = [p for p in dataclasses.replace(dims, moe=False).projections() if p[0] in ("qkv", "o")] + projs
        if cfg.is_mla:  # its latent projections instead (ModelConfig.mla_projections, added per TP below)
            projs = [p for p in projs if p[0] not in ("qkv", "o")]
        if cfg.is_moe and cfg.dense_layers:  # the dense layers' MLP too
            projs += [p for p in dataclasses.replace(dims, moe=False, intermediate=cfg.ffn_size).projections()
                      if p[0] in ("gate_up", "down")]
        for t in tps:
            t = int(t)
            # the model layer's rule for an even TP split, with KV heads replicated over TP where TP exceeds them
            # (the planner's rule: ModelConfig.kv_heads_per_device)
            kvh = cfg.kv_heads_per_device(t)
            try:
                check_tp(dataclasses.replace(LayerDims.from_model(cfg), kv_heads=kvh * t), t)
                if not cfg.kv_heads_split(t):
                    raise ValueError(f"kv_heads {cfg.kv_heads} and tp={t} do not divide either way")
            except ValueError as exc:
                notes.append(f"{cfg.name} at TP={t}: {exc}; skipped")
                continue
            for suffix, n, k, how in projs:
                if suffix == "qkv":  # heads / t query heads and the rank's KV heads (and a gated attention's
                    # gate, one per query element)
                    gate = cfg.heads // t if cfg.attn_output_gate else 0
                    n = (cfg.heads // t + gate + 2 * kvh) * dims.head_dim
                elif _TP_SPLIT[suffix] == "n":
                    n //= t
                else:
                    k //= t
                add(f"{cfg.name}.{suffix}/tp{t}", n, k, f"{how}, divided by TP={t} ({cfg.source})")
            for what, extra in (("multi-head latent attention", cfg.mla_projections(t) if cfg.is_mla else {}),
                                ("sparse-attention indexer (replicated)", cfg.indexer_projections()),
                                ("Gated DeltaNet", cfg.linear_projections(t) if cfg.linear_layers else {})):
                for suffix, (n, k) in extra.items():
                    add(f"{cfg.name}.{suffix}/tp{t}", n, k, f"{what} {suffix} at TP={t} ({cfg.source})")
            if cfg.is_moe:
                add(f"{cfg.name}.router", cfg.num_experts, cfg.hidden_size,
                    f"N = num_experts {cfg.num_experts}, K = hidden {cfg.hidden_size} (replicated)")
            add(f"{cfg.name}.lm_head/tp{t}", cfg.vocab_size // t, cfg.hidden_size,
                f"N = vocab {cfg.vocab_size} / TP={t} (vocab-parallel), K = hidden {cfg.hidden_size}")
    return list(shapes.values()), notes


def parse_for_model(for_model: str, tp: str | None) -> tuple[list[str], list[int]]:
    """(models, TP degrees) of ``--for-model NAME[,NAME...] --tp T[,T...]`` (``tp`` None: QUICK_FOR_TP); ValueError
    naming the options."""
    models = [m.strip() for m in str(for_model).split(",") if m.strip()]
    try:
        tps = list(QUICK_FOR_TP) if tp is None else [int(t) for t in str(tp).split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--tp: expected comma-separated integers like 1,2,4,8, got {tp!r}") from None
    if not models or not tps or min(tps) < 1:
        raise ValueError(f"--for-model/--tp: need at least one model and TP degrees >= 1; got {for_model!r}, {tp!r}")
    return models, tps


def sweep_preset_for(name: str, device_type: str = "cpu") -> SuitePreset:
    """:func:`~accelcal.kernels.shapes.suite_preset`, with the quick accelerator preset covering the preset models'
    TP-divided shapes (QUICK_FOR_MODELS at QUICK_FOR_TP): the shapes the planner asks about are measured."""
    p = suite_preset(name, device_type)
    if p.name == "quick-accelerator":
        p = with_model_shapes(p, QUICK_FOR_MODELS, QUICK_FOR_TP)
    return p


def with_model_shapes(preset: SuitePreset, models: Sequence[str], tps: Sequence[int],
                      ms: Sequence[int] = MODEL_SHAPE_MS, dtypes: Sequence[str] = MODEL_SHAPE_DTYPES) -> SuitePreset:
    """``preset`` plus the models' TP-divided shapes not already swept (by (N, K)), at ``ms`` in ``dtypes``, those of
    them the preset runs; when it runs none of them (a CPU preset measures fp32 only), in the first dtype it sweeps
    in full: the shapes are measured in some dtype, or the profile would claim models it never timed."""
    shapes, _ = model_gemm_shapes(models, tps)
    ran = [d for d in dtypes if d in preset.dtypes]
    if not ran:
        ran = [d for d in preset.dtypes if d not in preset.reduced_dtypes][:1] or list(preset.dtypes[:1])
    dtypes = ran
    have = {(s.n, s.k) for s in preset.gemm_shapes + preset.decode_shapes + preset.model_shapes}
    new = tuple(s for s in shapes if (s.n, s.k) not in have)
    return dataclasses.replace(preset, model_shapes=preset.model_shapes + new, model_ms=tuple(ms),
                               model_dtypes=tuple(dtypes),
                               for_models=tuple(dict.fromkeys(preset.for_models + tuple(models))),
                               for_tp=tuple(sorted(set(preset.for_tp) | {int(t) for t in tps})))
