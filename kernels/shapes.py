"""Sweep presets as data: model projection shapes, the M sweep, memory sizes, attention cases.

    from accelcal.kernels.shapes import MODELS, projection_shapes, suite_preset
    print([s.name for s in projection_shapes()])          # llama3-8b.qkv, ...
    p = suite_preset("quick", device_type="cpu")
    print(p.gemm_ms, [s.name for s in p.gemm_shapes])

No torch here: the planner and the docs may read these tables without it.

A projection ``y = x @ W.T`` has ``x`` of shape (M, K) and a weight ``W`` of
shape (N, K) (``nn.Linear`` layout); M is tokens in flight, N and K come from
the model presets (models/presets/*.yaml, each citing its config.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from accelcal.models import ModelConfig, ModelDims
from accelcal.vocab import ALL_DTYPES

__all__ = [
    "ALL_DTYPES",
    "AttentionCase",
    "MixedAttentionCase",
    "DENSE_MS",
    "GemmShape",
    "GroupedGemmCase",
    "MODELS",
    "ModelDims",
    "QUICK_MS",
    "SQUARE_SIZES",
    "SWEEP_MODELS",
    "SuitePreset",
    "projection_shapes",
    "square_shapes",
    "suite_preset",
]



SWEEP_MODELS: tuple[str, ...] = ("llama3-8b", "llama3-70b", "mixtral-8x7b")
"""Model presets (models/presets) whose projection shapes the GEMM sweeps measure."""

MODELS: dict[str, ModelDims] = {n: ModelDims.from_config(ModelConfig.from_name(n)) for n in SWEEP_MODELS}
"""The sweep view of each of :data:`SWEEP_MODELS`, from the model presets."""


@dataclass(frozen=True)
class GemmShape:
    """One (N, K) weight shape; M is swept."""

    name: str
    """Label stored in the ``shape`` column, e.g. ``llama3-8b.qkv`` or ``square4096``."""
    n: int
    """Output features (rows of W)."""
    k: int
    """Input features (columns of W)."""
    source: str = ""
    """How N and K were derived."""
    square: bool = False
    """A square shape: the interesting case is M = N = K."""

    def scaled(self, divisor: int) -> "GemmShape":
        """The same projection with N and K divided by ``divisor`` (CPU-sized; labelled ``/divisor``)."""
        if self.n % divisor or self.k % divisor:
            raise ValueError(f"{self.name}: n={self.n}, k={self.k} not divisible by {divisor}")
        return GemmShape(f"{self.name}/{divisor}", self.n // divisor, self.k // divisor,
                         f"{self.source}; N and K divided by {divisor} for slow devices", self.square)


@dataclass(frozen=True)
class GroupedGemmCase:
    """One grouped expert GEMM: ``experts`` GEMMs of ``m`` tokens each, one (N, K) weight each, in one kernel (what
    a MoE layer runs over the experts a step's tokens reach)."""

    experts: int
    """Experts (weights) in the call."""
    m: int
    """Tokens routed to each expert."""
    shape: GemmShape
    """One expert's projection."""


def grouped_cases(models: Sequence[str], experts: Sequence[int], ms: Sequence[int],
                  divisor: int = 1) -> tuple[GroupedGemmCase, ...]:
    """The routed-expert projections of each MoE preset in ``models`` (divided by ``divisor`` for slow devices) with
    each number of experts and tokens per expert."""
    shapes = [s if divisor == 1 else s.scaled(divisor)
              for name in models for s in _model_projections(ModelDims.from_config(ModelConfig.from_name(name)))
              if s.name.split(".")[-1].startswith("expert_")]
    return tuple(GroupedGemmCase(e, m, s) for s in shapes for e in experts for m in ms)


def _model_projections(m: ModelDims) -> list[GemmShape]:
    return [GemmShape(f"{m.name}.{suffix}", n, k, f"{how} ({m.source})") for suffix, n, k, how in m.projections()]


def projection_shapes() -> list[GemmShape]:
    """Every model projection: Llama-3-8B and -70B QKV/o/gate_up/down, Mixtral experts."""
    return [s for m in MODELS.values() for s in _model_projections(m)]


SQUARE_SIZES: tuple[int, ...] = (1024, 2048, 4096, 8192)
"""Square N = K sizes (M is swept as well; M = N = K is the classic peak case)."""


def square_shapes(sizes: tuple[int, ...] = SQUARE_SIZES) -> list[GemmShape]:
    return [GemmShape(f"square{s}", s, s, "N = K", square=True) for s in sizes]


def _dense_ms(top: int = 16384) -> tuple[int, ...]:
    # Powers of two, both sides of every tile boundary from 16 up (p, p + 1),
    # and the midpoints 3p/2 so efficiency curves are sampled between steps.
    ms: set[int] = {1, 2, 3, 4, 6, 8, 12}
    p = 16
    while p <= top:
        ms.update({p, p + 1, p * 3 // 2})
        p *= 2
    return tuple(sorted(m for m in ms if m <= top))


DENSE_MS: tuple[int, ...] = _dense_ms()
"""M from 1 to 16384 including 16/17, 32/33, 64/65, 128/129, 256/257, ... 8192/8193."""

QUICK_MS: tuple[int, ...] = (1, 16, 17, 128, 129, 1024, 4096, 8192, 16384)
"""The quick subset on accelerators: decode, both sides of two tile boundaries, prefill sizes up to
16384 tokens (8 prompts of 2048), where long GEMMs run power-limited below the M=1024 rate."""


@dataclass(frozen=True)
class AttentionCase:
    """One scaled_dot_product_attention call (GQA when kv_heads < heads)."""

    phase: str
    """``prefill`` (causal; q_len = kv_len, or q_len < kv_len: a chunk after kv_len - q_len cached tokens,
    the causal mask aligned to the last query) or ``decode`` (q_len = 1, not causal)."""
    batch: int
    """Sequences."""
    heads: int
    """Query heads."""
    kv_heads: int
    """Key/value heads."""
    head_dim: int
    """Per-head dimension."""
    q_len: int
    """Query tokens per sequence."""
    kv_len: int
    """Key/value tokens per sequence."""
    label: str = ""
    """Where the head layout comes from."""

    def __post_init__(self) -> None:
        if self.phase not in ("prefill", "decode"):
            raise ValueError(f"attention case phase must be 'prefill' or 'decode', got {self.phase!r}")
        if self.phase == "prefill" and not 1 <= self.q_len <= self.kv_len:
            raise ValueError(f"prefill attention needs 1 <= q_len <= kv_len, got q_len={self.q_len}, kv_len={self.kv_len}")
        if self.phase == "decode" and self.q_len != 1:
            raise ValueError(f"decode attention has q_len = 1, got {self.q_len}")

    @property
    def causal(self) -> bool:
        return self.phase == "prefill"

    @property
    def name(self) -> str:
        return (f"{self.phase}_b{self.batch}_h{self.heads}_kv{self.kv_heads}_d{self.head_dim}"
                f"_q{self.q_len}_kv{self.kv_len}")


@dataclass(frozen=True)
class MixedAttentionCase:
    """One continuous-batching step's attention: a decode batch and one prefill chunk, issued back to back
    (op ``attn_mixed``).  Not fitted: benchmarks/fit_accuracy.py predicts it from the prefill and decode fits
    (each part's call in full, as the two calls are timed), so its measured time checks that composition."""

    decode: AttentionCase
    """The decode part (batch x 1 query over kv_len)."""
    chunk: AttentionCase
    """The prefill chunk (q_len new tokens over kv_len, causal)."""

    def __post_init__(self) -> None:
        if self.decode.phase != "decode" or self.chunk.phase != "prefill":
            raise ValueError("a mixed attention case is a decode part and a prefill chunk")
        d, c = self.decode, self.chunk
        if (d.heads, d.kv_heads, d.head_dim) != (c.heads, c.kv_heads, c.head_dim):
            raise ValueError("the decode part and the chunk of a mixed case must share the head layout")

    @property
    def name(self) -> str:
        d, c = self.decode, self.chunk
        return (f"mixed_h{d.heads}_kv{d.kv_heads}_d{d.head_dim}_dec_b{d.batch}_kv{d.kv_len}"
                f"_chunk_q{c.q_len}_kv{c.kv_len}")


def _mixed(heads: int, kv_heads: int, head_dim: int, decode_batch: int, decode_kv: int, chunk_q: int, chunk_kv: int,
           label: str) -> MixedAttentionCase:
    return MixedAttentionCase(AttentionCase("decode", decode_batch, heads, kv_heads, head_dim, 1, decode_kv, label),
                              AttentionCase("prefill", 1, heads, kv_heads, head_dim, chunk_q, chunk_kv, label))


def _layout_cases(layouts: Sequence[tuple[int, int, int, str]], prefill: Sequence[tuple[int, int, int]],
                  decode: Sequence[tuple[int, int]]) -> tuple[AttentionCase, ...]:
    """Every head layout ``(heads, kv_heads, head_dim, label)`` at each prefill ``(batch, q_len, kv_len)`` and decode
    ``(batch, kv_len)``: batch x length x heads, so a fit is judged across head counts, not along one line."""
    out = [AttentionCase("prefill", b, h, kv, d, q, k, lab) for h, kv, d, lab in layouts for b, q, k in prefill]
    out += [AttentionCase("decode", b, h, kv, d, 1, k, lab) for h, kv, d, lab in layouts for b, k in decode]
    return tuple(out)


def _attention_cases(heads: int, kv_heads: int, head_dim: int, prefill_lens: tuple[int, ...],
                     decode_lens: tuple[int, ...], decode_batches: tuple[int, ...], label: str) -> tuple[AttentionCase, ...]:
    cases = [AttentionCase("prefill", 1, heads, kv_heads, head_dim, n, n, label) for n in prefill_lens]
    cases += [AttentionCase("decode", b, heads, kv_heads, head_dim, 1, n, label)
              for b in decode_batches for n in decode_lens]
    return tuple(cases)


_L8 = MODELS["llama3-8b"]
_SMALL = ModelDims.from_config(ModelConfig.from_name("small"))  # the CPU validation model
# The sampler is timed over the largest vocabulary among the serving presets (Qwen3's), and the CPU presets over
# the CPU validation model's.
_SAMPLER_VOCAB = ModelConfig.from_name("qwen3-32b").vocab_size
_SMALL_VOCAB = ModelConfig.from_name("small").vocab_size
_L8_LABEL = f"llama3-8b heads ({_L8.source})"


def _tp_layouts(model: ModelDims, name: str, tps: Sequence[int]) -> list[tuple[int, int, int, str]]:
    """(heads, kv_heads, head_dim, label) of ``model`` with its heads divided by each TP degree (Megatron splits
    query and KV heads alike; a degree that does not divide the KV heads is left out)."""
    return [(model.heads // t, model.kv_heads // t, model.head_dim, f"{name} heads / TP{t} ({model.source})")
            for t in tps if model.heads % t == 0 and model.kv_heads % t == 0]


# GQA ratios 4 (Llama-3-8B) and 8 (Llama-3-70B, also Qwen3-32B's 64/8), and 70B's heads divided by TP 1..8:
# the prefill wave term sees 8 to 64 heads, the decode fit two arithmetic intensities.
_GPU_LAYOUTS = _tp_layouts(_L8, "llama3-8b", (1,)) + _tp_layouts(MODELS["llama3-70b"], "llama3-70b", (1, 2, 4, 8))
_CPU_LABEL = "llama3-8b layout scaled down 4x in heads and 2x in head_dim for slow devices"
_CPU_TP2_LABEL = "the same layout divided by TP 2 (4 query heads, 1 KV head)"
_CPU_G8_LABEL = "16 query heads over 2 KV heads: the GQA ratio 8 of Llama-3-70B and Qwen3-32B at head_dim 64"


@dataclass(frozen=True)
class SuitePreset:
    """What one kernel-suite run measures (all sizes as data)."""

    name: str
    """Preset id, e.g. ``quick-cpu``."""
    timing: str = "quick"
    """TimingConfig preset name (``quick``, ``default``, ``full``)."""
    dtypes: tuple[str, ...] = ALL_DTYPES
    """dtypes for GEMM and attention (memory and overheads are dtype-free)."""
    gemm_shapes: tuple[GemmShape, ...] = ()
    """(N, K) shapes."""
    gemm_ms: tuple[int, ...] = QUICK_MS
    """M values swept for every shape."""
    square_ms: tuple[int, ...] | None = None
    """M values for square shapes; None: the same as ``gemm_ms``."""
    memory_sizes_bytes: tuple[int, ...] = ()
    """Buffer sizes for copy/read/write (capped by free memory at run time)."""
    attention_cases: tuple[AttentionCase, ...] = ()
    """Attention calls."""
    attention_dtypes: tuple[str, ...] = ("bf16",)
    """dtypes for attention (intersected with ``dtypes``)."""
    mixed_attention_cases: tuple[MixedAttentionCase, ...] = ()
    """Decode batch + prefill chunk pairs timed as one step (op ``attn_mixed``), in ``attention_dtypes``."""
    decode_shapes: tuple[GemmShape, ...] = ()
    """(N, K) shapes swept only at ``decode_ms``: larger weights in the memory-bound small-M (decode)
    regime, where they cost little to measure even on a slow device."""
    decode_ms: tuple[int, ...] = ()
    """M values for ``decode_shapes``."""
    reduced_dtypes: tuple[str, ...] = ()
    """dtypes measured only on the first shape at ``reduced_ms`` (slow or absent paths on this device class)."""
    reduced_ms: tuple[int, ...] = ()
    """M values for ``reduced_dtypes``."""
    elementwise_dims: ModelDims | None = None
    """Layer dimensions the eager elementwise groups (norm, rope, ...) are timed at; None: not timed."""
    elementwise_tokens: tuple[int, ...] = ()
    """Token counts the elementwise groups are timed at (decode batches up to prefill chunks)."""
    elementwise_dtypes: tuple[str, ...] = ("bf16",)
    """dtypes for the elementwise groups (intersected with ``dtypes``): those the layers run in."""
    sampler_batches: tuple[int, ...] = ()
    """Sequences per step the sampler kinds (kernels/sampler.py) are timed at; empty: not timed."""
    sampler_vocab: int = 0
    """Logits per sequence for the sampler timings (a preset model's whole vocabulary)."""
    grouped_cases: tuple[GroupedGemmCase, ...] = ()
    """Grouped expert GEMMs (kernels/grouped_gemm.py, bf16); empty: not timed."""
    case_budget_s: float = 2.0
    """Skip (and record) a case whose estimated measuring time exceeds this, in seconds."""
    overhead_queue_len: int = 100
    """Back-to-back tiny kernels per overhead sample."""
    model_shapes: tuple[GemmShape, ...] = ()
    """TP-divided projection shapes of ``for_models`` (kernels/model_shapes.py), swept at ``model_ms`` in ``model_dtypes``."""
    model_ms: tuple[int, ...] = ()
    """M values for ``model_shapes``."""
    model_dtypes: tuple[str, ...] = ()
    """dtypes for ``model_shapes``."""
    for_models: tuple[str, ...] = ()
    """Models whose shapes ``model_shapes`` holds (recorded in the profile as covered)."""
    for_tp: tuple[int, ...] = ()
    """TP degrees ``model_shapes`` were divided by."""

    def ms_for(self, shape: GemmShape, dtype: str | None = None) -> tuple[int, ...]:
        """M values to sweep for ``shape`` (and ``dtype``: reduced dtypes get a few M on the first shape)."""
        if shape in self.model_shapes and shape not in self.gemm_shapes:
            return self.model_ms if dtype is None or dtype in self.model_dtypes else ()
        if dtype is not None and dtype in self.reduced_dtypes:
            return self.reduced_ms if self.gemm_shapes and shape == self.gemm_shapes[0] else ()
        if shape in self.decode_shapes:
            return self.decode_ms
        return self.square_ms if (shape.square and self.square_ms is not None) else self.gemm_ms


def _pow2_sizes(lo: int, hi: int, step: int) -> tuple[int, ...]:
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= step
    return tuple(out)


KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_BY_NAME = {s.name: s for s in projection_shapes() + square_shapes()}

_PRESETS: dict[tuple[str, str], SuitePreset] = {
    # CPU quick: <= 60 s for all four ops on a 2-core machine, yet enough GEMM
    # points per dtype (3 shapes x 9 M) to fit time(M, N, K).
    ("quick", "cpu"): SuitePreset(
        name="quick-cpu",
        timing="quick",
        dtypes=("fp32", "tf32", "bf16", "fp16", "fp8_e4m3"),
        gemm_shapes=(_BY_NAME["llama3-8b.qkv"].scaled(8), _BY_NAME["llama3-8b.down"].scaled(8),
                     _BY_NAME["llama3-8b.gate_up"].scaled(8)),
        # M=2 and 8 as well as 1: CPU BLAS runs M=1 as a GEMV and M>=2 as a small-M GEMM that can be
        # slower per call than the GEMV; each regime needs neighbours of its own for the fit to interpolate.
        gemm_ms=(1, 2, 8, 16, 17, 64, 65, 128, 129, 256, 512),
        # Decode GEMMs of real layers have weights far beyond the /8 shapes; /4 at small M keeps the fit
        # interpolating there instead of extrapolating (gate_up/4 at M=64 is ~1 GFLOP, ~20 ms on one core).
        decode_shapes=(_BY_NAME["llama3-8b.qkv"].scaled(4), _BY_NAME["llama3-8b.down"].scaled(4),
                       _BY_NAME["llama3-8b.gate_up"].scaled(4)),
        decode_ms=(1, 2, 4, 8, 16, 32, 64),
        # The fits need fp32 and bf16; fp16/fp8 are slow emulated paths on CPUs and
        # tf32 does not exist there: a few points (or recorded skips) say so.
        reduced_dtypes=("tf32", "fp16", "fp8_e4m3"),
        reduced_ms=(1, 16, 128),
        # Factor-2 steps from 4 KiB to 256 MiB: >= 3 sizes inside each cache level (L2 ~1 MiB, L3 ~32 MiB on
        # the EPYC VMs this runs on) and beyond, so a 2-3 piece fit can be chosen and checked by held-out error.
        memory_sizes_bytes=_pow2_sizes(4 * KiB, 256 * MiB, 2),
        # Six prefill lengths of one head layout, and two more layouts (its TP-2 half and a GQA-8 layout, as the
        # planner asks for TP-divided heads) at three lengths and a batch of 2 each: k-fold and layout-held-out
        # errors then judge the fit on cases it did not see (with four lengths of one layout, a held-out point
        # was mostly an extrapolation; 1024 tokens of 16 heads cost ~30 ms a call on one core).  Decode: two
        # batches x two KV lengths of the first layout, one point each of the others.  Plus batches of 2 and a
        # 256-token chunk after 768 cached tokens (chunked prefill), and one engine step.
        attention_cases=_attention_cases(8, 2, 64, (128, 256, 384, 512, 768, 1024), (512, 2048), (1, 4), _CPU_LABEL)
        + _layout_cases(((4, 1, 64, _CPU_TP2_LABEL), (16, 2, 64, _CPU_G8_LABEL)),
                        ((1, 256, 256), (1, 512, 512), (1, 1024, 1024), (2, 256, 256)), ((1, 512), (4, 2048)))
        + (AttentionCase("prefill", 2, 8, 2, 64, 256, 256, _CPU_LABEL), AttentionCase("prefill", 2, 8, 2, 64, 512, 512, _CPU_LABEL),
           AttentionCase("prefill", 1, 8, 2, 64, 256, 1024, _CPU_LABEL)),
        mixed_attention_cases=(_mixed(8, 2, 64, 4, 1024, 128, 512, _CPU_LABEL),),
        attention_dtypes=("fp32", "bf16"),
        # The biggest case (gate_up/8 at M=512, 1.9 GFLOP) needs ~0.4 s on an idle
        # 2-core CPU; 1.5 s leaves room for a busy machine, fp16/fp8 emulation does not fit.
        # The CPU validation layers run in fp32; up to 1024 tokens (4 prompts of 256).  Ten token counts: a
        # layer's multi-pass ops (norm, rope) keep their intermediates in the per-core cache up to ~64 tokens
        # of this width and stream them beyond, and a two-piece fit needs points on both sides of that bend
        # to be chosen by held-out error (five counts left norm and rope at 31-39% held-out on the Intel VM).
        elementwise_dims=_SMALL,
        elementwise_tokens=(1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        elementwise_dtypes=("fp32",),
        sampler_batches=(1, 2, 4, 16),  # four points: the fit holds one out
        sampler_vocab=_SAMPLER_VOCAB,
        # Qwen3-30B-A3B's experts divided by 4 (384 x 512 and 512 x 192), 8 of them, decode to prefill tokens each:
        # about a second in all, inside the preset's 60 s
        grouped_cases=grouped_cases(("qwen3-30b-a3b",), (8,), (1, 4, 16, 64), divisor=4),
        case_budget_s=1.5,
        overhead_queue_len=50,
    ),
    # Smoke: seconds, for run_bench.sh --test-mode and the test suite; numbers
    # from it are not meant for a profile anyone plans with.
    ("smoke", "cpu"): SuitePreset(
        name="smoke-cpu",
        timing="quick",
        dtypes=("fp32",),
        gemm_shapes=(_BY_NAME["llama3-8b.qkv"].scaled(32), _BY_NAME["llama3-8b.down"].scaled(32),
                     _BY_NAME["llama3-8b.gate_up"].scaled(32)),
        gemm_ms=(1, 16, 64, 128, 256),
        memory_sizes_bytes=(64 * KiB, 1 * MiB, 8 * MiB),
        attention_cases=_attention_cases(8, 2, 64, (64, 128), (256, 512), (1, 2), _CPU_LABEL),
        attention_dtypes=("fp32",),
        elementwise_dims=_SMALL,
        elementwise_tokens=(1, 16, 64),
        elementwise_dtypes=("fp32",),
        sampler_batches=(1, 8),
        sampler_vocab=_SMALL_VOCAB,
        case_budget_s=0.5,
        overhead_queue_len=20,
    ),
    ("smoke", "accelerator"): SuitePreset(
        name="smoke-accelerator",
        timing="quick",
        dtypes=("bf16",),
        gemm_shapes=(_BY_NAME["llama3-8b.qkv"], _BY_NAME["llama3-8b.down"], _BY_NAME["llama3-8b.gate_up"]),
        gemm_ms=(1, 16, 128, 1024),
        memory_sizes_bytes=(1 * MiB, 64 * MiB, 256 * MiB),
        attention_cases=_attention_cases(_L8.heads, _L8.kv_heads, _L8.head_dim, (512, 2048), (1024, 8192), (1, 8), _L8_LABEL),
        attention_dtypes=("bf16",),
        elementwise_dims=_L8,
        elementwise_tokens=(1, 128, 1024),
        case_budget_s=1.0,
        overhead_queue_len=50,
    ),
    ("full", "cpu"): SuitePreset(
        name="full-cpu",
        timing="default",
        gemm_shapes=tuple(s.scaled(4) for s in projection_shapes()) + tuple(square_shapes((256, 512, 1024, 2048))),
        gemm_ms=tuple(m for m in DENSE_MS if m <= 2048),
        memory_sizes_bytes=_pow2_sizes(4 * KiB, 1 * GiB, 4),
        attention_cases=_attention_cases(8, 2, 64, (128, 256, 512, 1024, 2048), (512, 2048, 8192), (1, 4, 16), _CPU_LABEL),
        attention_dtypes=("fp32", "bf16"),
        elementwise_dims=_SMALL,
        elementwise_tokens=(1, 4, 16, 64, 256, 1024, 4096),
        elementwise_dtypes=("fp32", "bf16"),
        sampler_batches=(1, 4, 16, 64, 256),
        sampler_vocab=_SAMPLER_VOCAB,
        grouped_cases=grouped_cases(("qwen3-30b-a3b",), (8, 32), (1, 4, 16, 64, 256), divisor=2),
        case_budget_s=10.0,
        overhead_queue_len=200,
    ),
    # Accelerator quick: <= 90 s on one H100/H200; includes bf16 8192^3 and a 1 GiB copy.
    ("quick", "accelerator"): SuitePreset(
        name="quick-accelerator",
        timing="quick",
        # gate_up is the largest projection of a dense layer (N = 28672): measured, not extrapolated.
        gemm_shapes=(_BY_NAME["llama3-8b.qkv"], _BY_NAME["llama3-8b.gate_up"], _BY_NAME["llama3-8b.down"],
                     _BY_NAME["llama3-70b.o"], _BY_NAME["square8192"]),
        gemm_ms=QUICK_MS,
        square_ms=(1, 128, 1024, 8192),
        memory_sizes_bytes=_pow2_sizes(4 * KiB, 1 * GiB, 8),
        # batch x length x heads: whole prompts of 512..8192 tokens, a batch of 4, and chunks after a cached
        # context (what chunked prefill runs); decode batches 1..64 over 1K..32K of KV; every head layout.
        attention_cases=_layout_cases(_GPU_LAYOUTS,
                                      prefill=((1, 512, 512), (1, 2048, 2048), (1, 8192, 8192), (4, 1024, 1024),
                                               (1, 2048, 8192), (1, 512, 4096)),
                                      decode=((1, 1024), (1, 32768), (16, 8192), (16, 32768), (64, 2048))),
        # A decode batch plus a prefill chunk, as one engine step runs them (predicted from the two fits).
        mixed_attention_cases=tuple(_mixed(h, kv, d, db, dk, cq, ck, lab)
                                    for h, kv, d, lab in (_GPU_LAYOUTS[1], _GPU_LAYOUTS[-1])
                                    for db, dk, cq, ck in ((16, 4096, 2048, 2048), (64, 2048, 1024, 4096),
                                                           (32, 8192, 512, 8192))),
        attention_dtypes=("bf16",),
        # Decode batches to prefill chunks of 8 x 2048 tokens, at Llama-3-8B widths.
        elementwise_dims=_L8,
        elementwise_tokens=(1, 16, 128, 1024, 4096, 16384),
        # Decode batches of a serving engine, either side of torch's 128-row switch between sort algorithms.
        sampler_batches=(1, 8, 32, 64, 128, 256),
        sampler_vocab=_SAMPLER_VOCAB,
        # A fine-grained MoE's experts (Qwen3-30B-A3B) and a wide one's (DeepSeek-V3), 8 and 32 in a call, from a
        # decode step's few tokens per expert to a prefill's
        grouped_cases=grouped_cases(("qwen3-30b-a3b", "deepseek-v3"), (8, 32), (1, 8, 32, 128, 512)),
        case_budget_s=3.0,
        overhead_queue_len=200,
    ),
    ("full", "accelerator"): SuitePreset(
        name="full-accelerator",
        timing="default",
        gemm_shapes=tuple(projection_shapes()) + tuple(square_shapes()),
        gemm_ms=DENSE_MS,
        memory_sizes_bytes=_pow2_sizes(4 * KiB, 4 * GiB, 2),
        attention_cases=_layout_cases(_GPU_LAYOUTS,
                                      prefill=tuple((1, n, n) for n in (128, 512, 1024, 2048, 4096, 8192, 16384))
                                      + ((4, 1024, 1024), (8, 2048, 2048), (1, 512, 4096), (1, 2048, 8192), (1, 2048, 32768)),
                                      decode=tuple((b, k) for b in (1, 8, 32, 128) for k in (512, 2048, 8192, 32768, 131072)
                                                   if b * k <= 32 * 131072)),
        mixed_attention_cases=tuple(_mixed(h, kv, d, db, dk, cq, ck, lab) for h, kv, d, lab in _GPU_LAYOUTS
                                    for db, dk, cq, ck in ((16, 4096, 2048, 2048), (64, 2048, 1024, 4096),
                                                           (32, 8192, 512, 8192), (128, 1024, 4096, 8192))),
        attention_dtypes=("bf16", "fp16"),
        elementwise_dims=_L8,
        elementwise_tokens=(1, 4, 16, 64, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768),
        elementwise_dtypes=("bf16", "fp16"),
        sampler_batches=(1, 8, 32, 64, 96, 128, 192, 256, 512),
        sampler_vocab=_SAMPLER_VOCAB,
        grouped_cases=grouped_cases(("qwen3-30b-a3b", "deepseek-v3"), (8, 32, 128), (1, 4, 16, 64, 256, 1024, 4096)),
        case_budget_s=30.0,
        overhead_queue_len=500,
    ),
}


def suite_preset(name: str, device_type: str = "cpu") -> SuitePreset:
    """The preset ``name`` (``smoke`` | ``quick`` | ``full``) sized for ``device_type`` (``cpu`` or an accelerator)."""
    cls = "cpu" if device_type == "cpu" else "accelerator"
    names = sorted({n for n, _ in _PRESETS})
    if (name, cls) not in _PRESETS:
        raise ValueError(f"unknown kernel-suite preset {name!r}; expected one of {names}")
    return _PRESETS[(name, cls)]
