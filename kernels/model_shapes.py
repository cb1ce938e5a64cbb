"""GEMM shapes the planner will ask about: a model's projections divided by each TP degree.

    from accelcal.kernels.model_shapes import model_gemm_shapes, with_model_shapes
    shapes, notes = model_gemm_shapes(["llama3-70b"], [1, 2, 4, 8])
    print([(s.name, s.n, s.k) for s in shapes])     # llama3-70b.qkv/tp8 (1280, 8192), ...
    preset = with_model_shapes(suite_preset("quick", "cuda"), ["llama3-70b"], [1, 2, 4, 8])

The (N, K) of every GEMM come from the planner's own layer and LM-head DAGs (planner/dag.py: QKV, output,
gate/up, down, router, routed and shared experts, LM head) built at ``Layout(tp=t)``, so the sweep measures
exactly the shapes the planner queries (KV heads replicated below one per rank as the DAG does).  A TP degree
the model cannot be split by is reported in ``notes`` and skipped.  No torch here.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from .shapes import GemmShape, SuitePreset

__all__ = ["model_gemm_shapes", "with_model_shapes", "MODEL_SHAPE_MS", "MODEL_SHAPE_DTYPES", "QUICK_FOR_MODELS",
           "QUICK_FOR_TP"]

MODEL_SHAPE_MS: tuple[int, ...] = (1, 16, 128, 1024, 4096)
"""M grid for model shapes in the quick sweep: decode batches, a tile boundary, prefill chunks."""

MODEL_SHAPE_DTYPES: tuple[str, ...] = ("bf16",)
"""dtypes the model shapes are measured in: what the planner costs the preset models in (weight_dtype)."""

QUICK_FOR_MODELS: tuple[str, ...] = ("llama3-8b", "llama3-70b", "llama3.1-405b", "mixtral-8x7b")
"""Preset models the quick accelerator sweep covers by default (planner/presets)."""

QUICK_FOR_TP: tuple[int, ...] = (1, 2, 4, 8)
"""TP degrees covered by default (one 8-GPU node)."""


def model_gemm_shapes(models: Sequence[str], tps: Sequence[int]) -> tuple[list[GemmShape], list[str]]:
    """(unique (N, K) shapes, notes): every GEMM of each model's layer and LM head at each TP degree."""
    from accelcal.planner.dag import Layout, build_edge_dag, build_layer_dag
    from accelcal.planner.models import ModelConfig
    from accelcal.planner.search import _check_divisible

    shapes: dict[tuple[int, int], GemmShape] = {}
    notes: list[str] = []
    for name in models:
        cfg = ModelConfig.resolve(name)
        for t in tps:
            why = _check_divisible(cfg, int(t), 1)  # the planner's own rule for a valid TP split
            if why:
                notes.append(f"{cfg.name} at TP={t}: {why}; skipped")
                continue
            try:
                nodes = build_layer_dag(cfg, "decode", 1, 1, 1, Layout(tp=int(t))).nodes + \
                        build_edge_dag(cfg, "decode", "head", 1, 1, int(t)).nodes
            except ValueError as exc:
                notes.append(f"{cfg.name} at TP={t}: not a valid split ({exc}); skipped")
                continue
            for node in nodes:
                if node.op not in ("gemm", "grouped_gemm"):
                    continue
                n, k = int(node.p["n"]), int(node.p["k"])
                shapes.setdefault((n, k), GemmShape(f"{cfg.name}.{node.name}/tp{t}", n, k,
                                                    f"planner DAG node {node.name} of {cfg.name} at TP={t} ({cfg.source})"))
    return list(shapes.values()), notes


def with_model_shapes(preset: SuitePreset, models: Sequence[str], tps: Sequence[int],
                      ms: Sequence[int] = MODEL_SHAPE_MS, dtypes: Sequence[str] = MODEL_SHAPE_DTYPES) -> SuitePreset:
    """``preset`` plus the models' TP-divided shapes not already swept (by (N, K)), at ``ms`` in ``dtypes``."""
    shapes, _ = model_gemm_shapes(models, tps)
    have = {(s.n, s.k) for s in preset.gemm_shapes + preset.decode_shapes + preset.model_shapes}
    new = tuple(s for s in shapes if (s.n, s.k) not in have)
    return dataclasses.replace(preset, model_shapes=preset.model_shapes + new, model_ms=tuple(ms),
                               model_dtypes=tuple(dtypes),
                               for_models=tuple(dict.fromkeys(preset.for_models + tuple(models))),
                               for_tp=tuple(sorted(set(preset.for_tp) | {int(t) for t in tps})))
