"""Engine settings a known deployment recipe changes from the engine's defaults (a recipe is data with sources).

    from accelcal.planner.serving.deployment import apply_deployment
    engine, kv_dtype, notes = apply_deployment("aiconfigurator", EnginePreset.from_name("trtllm"), "1.0.0rc3",
                                               isl=4096, osl=128, concurrency=32, weight_dtype="fp8_e4m3")
    print(engine.token_budget, kv_dtype, notes)

``default``: the engine as ``vllm serve`` / ``python -m sglang.launch_server`` / ``trtllm-serve`` start it
(the presets in presets/*.yaml).  ``aiconfigurator``: the aggregated-serving configuration NVIDIA's
aiconfigurator generator writes for an (isl, osl, batch size) and that its published silicon measurements
were run with; every rule below cites the generator source it comes from (github.com/ai-dynamo/aiconfigurator,
Apache-2.0; commits named by hash).  The batch size the generator is given is taken to be the benchmark
concurrency (the published rows record it as ``batch_size``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .engine import version_key

__all__ = ["DEPLOYMENTS", "DeploymentSettings", "apply_deployment", "deployment_settings", "device_of"]

DEPLOYMENTS: tuple[str, ...] = ("default", "aiconfigurator")
"""Recipes :func:`deployment_settings` knows."""

_AIC = "ai-dynamo/aiconfigurator"
_TOKENS_RULE = (f"{_AIC} generator rule 'agg max_num_tokens = max_batch_size + isl + 1500' (TRT-LLM since the "
                f"first commit efcae124c src/aiconfigurator/cli/backends/trtllm.py; vLLM in rule_plugin/vllm.rule "
                f"since 95ddf241a)")
_SGLANG_OLD_TEMPLATES = ("0.5.1.post1", "0.5.3.post2", "0.5.4.post3")
"""SGLang versions with a template of their own in the generator from 95ddf241a (backend_templates/sglang/
cli_args.<version>.j2); other versions used the generic cli_args.j2."""
_KV_RULE = (f"{_AIC}: fp8 checkpoints run an fp8 KV cache (efcae124c cli/backends/trtllm.py: kvcache_quant_mode "
            f"fp8 -> kv_cache_dtype fp8; sdk/models/helpers.py _infer_quant_modes at 095f58a5)")


@dataclass(frozen=True)
class DeploymentSettings:
    """What a recipe sets for one engine, load and model precision."""

    overrides: dict = field(default_factory=dict)
    """EnginePreset key -> value (EnginePreset.with_overrides)."""
    source: str = ""
    """Where the overrides come from."""
    kv_dtype: str | None = None
    """KV cache dtype the recipe runs (None: keep the caller's)."""
    notes: tuple[str, ...] = ()
    """One line per setting, with its source."""


def deployment_settings(recipe: str, engine: str, version: str, isl: int, osl: int, concurrency: int | None,
                        weight_dtype: str = "bf16") -> DeploymentSettings:
    """The settings ``recipe`` gives ``engine`` (preset name) at ``version`` for this load."""
    if recipe not in DEPLOYMENTS:
        raise ValueError(f"unknown --deployment {recipe!r}; expected one of {list(DEPLOYMENTS)}")
    if recipe == "default":
        return DeploymentSettings()
    if engine == "static":
        return DeploymentSettings(notes=(f"--deployment {recipe}: the recipe has rules for trtllm, vllm and sglang; "
                                         f"the static batch runs as its preset says",))
    if engine not in ("trtllm", "vllm", "sglang"):
        raise ValueError(f"--deployment aiconfigurator has rules for trtllm, vllm and sglang, not {engine!r}")
    bs = int(concurrency) if concurrency else 128  # the generator's own default batch size (rule_plugin/*.rule)
    over: dict = {}
    notes: list[str] = []
    kv = "fp8_e4m3" if weight_dtype == "fp8_e4m3" else None
    if kv:
        notes.append(f"KV cache fp8_e4m3 for fp8 weights: {_KV_RULE}")
    if engine in ("trtllm", "vllm"):
        over["token_budget"] = bs + isl + 1500
        over["max_seqs"] = bs
        notes.append(f"token budget {bs} + {isl} + 1500 = {bs + isl + 1500}, at most {bs} sequences: {_TOKENS_RULE}")
    if engine == "trtllm":
        over["chunked_prefill"] = False
        over["memory_fraction"] = 0.80
        notes.append(f"no chunked prefill, KV free_gpu_memory_fraction 0.80: {_AIC} backend_templates/trtllm/"
                     f"extra_engine_args.*.yaml.j2 defaults (enable_chunked_prefill false, 0.80)")
        if version_key(version) < (1, 1):
            # The 1.0.x template reads both settings from the generator, which since its automated evaluation
            # (961028348, 2025-08-22: the commit that first deployed and benchmarked generated configurations)
            # sets them for agg serving; the template's own defaults (overlap off, graphs at powers of two)
            # apply only where the generator leaves them unset, as the first commit (efcae124c) did.
            over["cuda_graph_sizes"] = list(range(1, bs + 1))
            over["cuda_graph_padding"] = True
            notes.append(f"CUDA graphs at every batch 1..{bs}, padded: {_AIC} 961028348 cli/backends/trtllm.py "
                         f"agg 'cuda_graph_batch_sizes = range(1, bs + 1)', template extra_engine_args."
                         f"1.0.0rc3.yaml.j2 'padding_enabled: ... default(true)'")
            over["overlap_scheduling"] = True
            notes.append(f"overlap scheduler on: {_AIC} 961028348 cli/backends/trtllm.py agg "
                         f"'disable_overlap_scheduler = False' (read by extra_engine_args.1.0.0rc3.yaml.j2)")
        else:
            over["overlap_scheduling"] = True
            notes.append(f"overlap scheduler on: {_AIC} rule_plugin/trtllm.rule 'agg disable_overlap_scheduler = "
                         f"false' (95ddf241a)")
            over["cuda_graph_sizes"] = list(range(1, bs + 1))
            over["cuda_graph_padding"] = False
            notes.append(f"CUDA graphs at every batch 1..{bs}, no padding: {_AIC} rule_plugin/trtllm.rule "
                         f"'cuda_graph_batch_sizes = range(1, max_batch_size + 1)' (95ddf241a), template "
                         f"enable_padding default false")
    if engine == "sglang":
        # The rule has set --max-running-requests and --cuda-graph-bs from the batch size since 95ddf241a (until
        # 71bb3d00e, 2026-01-30, widened both); max_prefill_tokens and enable_mixed_chunk reach the command line
        # only through a template that emits them.  The versioned templates (_SGLANG_OLD_TEMPLATES) emitted neither
        # until fa895ffb1 (2026-01-19) added both at once; the generic one emitted --max-prefill-tokens from
        # 95ddf241a and --enable-mixed-chunk once the rule had it (07a377923, the same day).  The recipe takes rows
        # of a version older than 0.5.6 as generated before 2026-01-19 and newer ones after it (the 0.5.6.post2
        # and 0.5.8 templates came on 2026-01-23, c46a56b02): one date per version, so the flags are a set some
        # generator wrote together.
        old = version_key(version) < (0, 5, 6)
        if old:
            over["max_seqs"] = bs
            over["cuda_graph_sizes"] = list(range(1, bs + 1))
            notes.append(f"at most {bs} running requests, CUDA graphs at every batch 1..{bs}: {_AIC} 95ddf241a "
                         f"rule_plugin/sglang.rule (max_batch_size, 'cuda_graph_batch_sizes = range(1, "
                         f"max_batch_size + 1)')")
        if not old or str(version).strip() not in _SGLANG_OLD_TEMPLATES:
            # max_prefill_tokens caps a prefill batch; chunked_prefill_size (the preset's token budget, which also
            # sizes SGLang's reserved memory) is unchanged and still splits longer prompts.
            over["prefill_batch_tokens"] = isl + 1500
            notes.append(f"prefill batches of at most {isl} + 1500 = {isl + 1500} tokens: {_AIC} rule_plugin/"
                         f"sglang.rule 'max_prefill_tokens = isl + 1500' (95ddf241a)")
        else:
            notes.append(f"SGLang's own prefill batch cap: {_AIC} backend_templates/sglang/cli_args.{version}.j2 "
                         f"emitted no --max-prefill-tokens before fa895ffb1 (2026-01-19)")
        if not old:
            over["mixed_steps"] = True  # the preset's priority (decode_first) is how SGLang budgets mixed steps
            notes.append(f"decodes ride in prefill batches (--enable-mixed-chunk): {_AIC} rule_plugin/sglang.rule "
                         f"'agg enable_mixed_chunk = true' (07a377923)")
    return DeploymentSettings(over, f"{_AIC} generator (recipe 'aiconfigurator'; see accelcal.planner.serving.deployment)",
                              kv, tuple(notes))


def apply_deployment(recipe: str, engine, version: str, isl: int, osl: int, concurrency: int | None,
                     weight_dtype: str = "bf16", kv_dtype: str = "bf16", profile=None, kv_dtype_given: bool = False):
    """(engine preset with the recipe's settings, KV dtype, notes) for ``engine`` (an EnginePreset); ``profile``:
    the device profile, whose memory and name set the engine's device-dependent defaults (EnginePreset.for_device).
    ``kv_dtype_given``: ``kv_dtype`` is the user's own choice (--kv-dtype), which the recipe's does not replace."""
    # the release's own defaults first, then the device's, then the recipe's
    if profile is not None:
        engine, release_notes, device_notes = engine.for_release_on(version, *device_of(profile))
        release_notes += device_notes
    else:
        engine, release_notes = engine.for_version(version)
    d = deployment_settings(recipe, engine.name, version, isl, osl, concurrency, weight_dtype)
    notes = list(d.notes)
    kv = d.kv_dtype or kv_dtype
    if kv_dtype_given and d.kv_dtype and d.kv_dtype != kv_dtype:
        kv = kv_dtype
        notes = [n for n in notes if not n.startswith(f"KV cache {d.kv_dtype} ")]
        notes.append(f"KV cache {kv_dtype} as --kv-dtype gives; --deployment {recipe} alone would run {d.kv_dtype} "
                     f"({_KV_RULE})")
    return engine.with_overrides(d.overrides, d.source), kv, release_notes + notes


def device_of(profile) -> tuple[float, str]:
    """(total memory in bytes, device name) of a device profile, as the engines read them at start-up."""
    ident = profile.identity
    return float(ident.memory_capacity_bytes or 0.0), str(getattr(ident, "device_name", "") or "")
