"""The one vocabulary of accelcal: dtype names and sizes, scopes, phases, group and collective names, work formulas.

    from accelcal.vocab import DTYPE_BYTES, busbw_factor, gemm_bytes, gemm_flop
    DTYPE_BYTES["bf16"]                       # 2
    busbw_factor("all_reduce", 8)             # 1.75 (nccl-tests)
    gemm_bytes(3, 5, 7, "fp8_e4m3")           # (21 + 35) x 1 + 15 x 2: the fp8 output is bf16

Every other module imports these names from here (a second copy is a bug).
No torch and no third-party imports: the planner and the profile code run
without torch, and the measuring code maps these names to torch dtypes itself.
"""

from __future__ import annotations

from typing import Callable

__all__ = [
    "ALL_DTYPES",
    "ANSWERED_BY_ALL_REDUCE",
    "BUSBW_FACTORS",
    "COLLECTIVE_OPS",
    "DTYPE_BYTES",
    "ELEMENTWISE_GROUPS",
    "GEMM_OUTPUT_DTYPE",
    "PHASES",
    "ATTENTION_KINDS",
    "PREFILL_KINDS",
    "SAMPLER_BYTES_PER_LOGIT",
    "SCOPES",
    "WEIGHT_ONLY_BYTES",
    "attended_pairs",
    "is_kernel_name",
    "attention_flop_bytes",
    "busbw_factor",
    "dtype_bytes",
    "gemm_bytes",
    "gemm_element_bytes",
    "gemm_flop",
    "gemm_traffic_bytes",
]

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8_e4m3": 1}
"""Element size per dtype name (the dtype names used in every record and profile). tf32 is an fp32
storage type with a different matmul mode."""

WEIGHT_ONLY_BYTES: dict[str, float] = {"mxfp4": 0.53125, "int4_g32": 0.5625, "int4_g128": 0.515625}
"""Storage bytes per weight of weight-only formats, whose GEMMs compute in the activation dtype: mxfp4 is 4-bit
E2M1 elements in blocks of 32 sharing one 8-bit E8M0 scale, (32 x 4 + 8) bits / 32 = 4.25 bits = 0.53125 bytes
(OCP Microscaling Formats (MX) Specification v1.0, MXFP4).  ``int4_g<G>``: symmetric 4-bit integers with one scale
per group of G weights in the 16-bit weight dtype (compressed-tensors, ``pack-quantized`` format, strategy
``group``: quantization/lifecycle/initialize.py gives each group a scale of the module weight's dtype; symmetric,
so no zero point is stored), (G x 4 + 16) bits / G: 4.5 bits at G = 32 (Kimi-K2.5), 4.125 bits at G = 128."""

ALL_DTYPES: tuple[str, ...] = tuple(DTYPE_BYTES)
"""dtype names, in the order the kernel suite and its CLI list them."""

GEMM_OUTPUT_DTYPE: dict[str, str] = {"fp8_e4m3": "bf16"}
"""GEMMs whose output dtype differs from the input: fp8 runs through ``torch._scaled_mm`` with a bf16 result
(kernels/gemm.py); every other dtype writes its input dtype."""

SCOPES: tuple[str, ...] = ("intra_node", "inter_node")
"""Where a communication group sits: inside one node, or across nodes."""

PHASES: tuple[str, ...] = ("prefill", "decode")
"""Inference phases (attention entries, DAGs, validation cases)."""

ATTENTION_KINDS: tuple[str, ...] = PHASES + ("chunk",)
"""Attention entries a profile may hold: the two phases, and ``chunk``: a prefill chunk after cached context
as torch's SDPA runs it (the causal mask aligned to the last query takes other kernels than a whole prompt;
an engine's varlen kernel runs chunks at its whole-prompt rate)."""

PREFILL_KINDS: tuple[str, ...] = ("prefill", "chunk")
"""Attention kinds modelled in the prefill form (query blocks, each with a prologue); a chunk is a prefill after
cached context."""

ELEMENTWISE_GROUPS: tuple[str, ...] = ("norm", "residual_add", "rope", "act_mul")
"""Eager elementwise groups of a decoder layer the kernel suite times (kernels/elementwise.py)."""

QK_NORMS: tuple[str, ...] = ("", "per_head", "per_layer")
"""A model's RMSNorm on the queries and keys before RoPE (ModelConfig.qk_norm): none, over each head (Qwen3), or
over all heads of a layer at once (MiniMax-M2's qk_norm_type per_layer)."""

QK_NORM_KERNELS: tuple[int, ...] = (1, 2)
"""Launches of the q/k RMSNorm per layer an engine may issue: one kernel for both, or the queries then the keys."""

EP_COMMS: tuple[str, ...] = ("all_to_all", "all_reduce")
"""How experts spread over a TP group meet their tokens (DagOptions.ep_comm, the engine presets' ep_comm)."""

FP8_SCALINGS: tuple[str, ...] = ("per_tensor", "block")
"""How fp8 weights carry their scales (--fp8-scaling): one scale per tensor, or one per block of weights."""

DEFAULT_FP8_BLOCK: tuple[int, int] = (128, 128)
"""Block shape assumed for block-scaled fp8 weights of a model whose config states none (a bf16 preset served with
--fp8-scaling block): the ``quantization_config.weight_block_size`` of the published block-fp8 checkpoints, e.g.
https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json and
https://huggingface.co/Qwen/Qwen3-235B-A22B-FP8/blob/main/config.json ([128, 128])."""

SERVING_DTYPES: tuple[str, ...] = ("bf16", "fp8_e4m3")
"""Weight and KV cache dtypes the serving model costs (accelcal predict / plan --engine --weight-dtype, --kv-dtype)."""

GROUPED_GEMM_DTYPES: tuple[str, ...] = ("bf16",)
"""dtypes the kernel suite times grouped expert GEMMs in (kernels/grouped_gemm.py: torch._grouped_mm; an fp8
grouped kernel is not timed); a profile's grouped ratio in one of them stands in for the others."""

SAMPLER_BYTES_PER_LOGIT: dict[str, float] = {
    # the fp32 logits read once (TensorRT-LLM TorchSampler's greedy fast path)
    "argmax": 4.0,
    # bf16 logits .float() 6, temperature div_ 8, softmax 16 (three reads, one write), exponential_ 4,
    # probs / q 12, argmax 4 (an exponential race: sampling from the probabilities without a host sync)
    "softmax_sample": 50.0,
    # vLLM 0.12 forward_native with top-k and top-p: .float() 6, div_ 8, sort 156 (torch SortStable.cu below
    # 128 rows: index fill 8, a CUB radix sort of fp32 keys with 8-byte values = key histogram 4 + four 8-bit
    # passes x 24, a radix sort of the segment bits 24, post-process 24), top-k compare 5 + masked_fill_ 9,
    # softmax 16, cumsum 8, compare 5, masked_fill_ 9, scatter 24, softmax 16, exponential_ 4, div_ 12, argmax 4
    "top_k_top_p_sort": 282.0,
}
"""Sampler op sequences over one step's logits ([sequences, whole vocabulary], all-gathered across TP), the
kernel suite times (kernels/sampler.py) and the serving engine presets name (``sampler``): bytes each moves per
logit, the traffic model of the measurement rows and of the copy-bandwidth estimate where a profile has no
sampler measurement."""

# nccl-tests bus-bandwidth factors (busbw = algbw x factor; nccl-tests doc/PERFORMANCE.md); n = ranks.
BUSBW_FACTORS: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
    "send_recv": lambda n: 1.0,
    "send_recv_pingpong": lambda n: 1.0,
}

COLLECTIVE_OPS: tuple[str, ...] = tuple(BUSBW_FACTORS)
"""Collective op names used in records and profiles."""

ANSWERED_BY_ALL_REDUCE: tuple[str, ...] = ("all_gather", "reduce_scatter", "send_recv")
"""Ops a profile without entries of their own costs from the same scope's all_reduce (Profile.collective_time_s:
all_reduce(S) bounds all_gather and reduce_scatter; send_recv is S over one device's link at its bus bandwidth)."""


def dtype_bytes(dtype: str) -> int:
    """Element size of ``dtype``; ValueError naming the known dtypes otherwise."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def busbw_factor(op: str, n: int) -> float:
    """busbw / algbw for ``op`` over ``n`` ranks (nccl-tests convention)."""
    if op not in BUSBW_FACTORS:
        raise ValueError(f"unknown collective {op!r}; known: {sorted(BUSBW_FACTORS)}")
    return BUSBW_FACTORS[op](n)


# NCCL's own latency model for a ring collective (NVIDIA/nccl src/graph/tuning.cc, ncclTopoTuneModel, at
# commit b6475625fbcaa2c3c0e50eed2fa1255d7514d4a2): latency = baseLat[ring][LL] + nsteps x hwLat[hw][ring][LL],
# with baseLat 6.6 us and hwLat 0.6 us over NVLink, 1.0 us over PCI, 2.7 us over the network; nsteps =
# 2(n-1) for all_reduce, n-1 for all_gather / reduce_scatter, n for the others.  accelcal takes the measured
# latency from the profile and only the *shape* in n from NCCL: how it scales to a group size not measured.
NCCL_RING_BASE_LATENCY_S = 6.6e-6
"""baseLat[Ring][LL] in NCCL's tuning model (src/graph/tuning.cc, commit b6475625)."""
NCCL_RING_STEP_LATENCY_S: dict[str, float] = {"nvlink": 0.6e-6, "pci": 1.0e-6, "net": 2.7e-6}
"""hwLat[NVLINK|PCI|NET][Ring][LL] in NCCL's tuning model (src/graph/tuning.cc, commit b6475625)."""


FABRICS: tuple[str, ...] = ("nvswitch", "nvlink", "pcie", "xgmi", "infiniband", "roce", "ethernet", "efa", "shm")
"""What a collective entry's links are (optional ``fabric`` key of a collectives entry)."""

SWITCH_FABRICS: tuple[str, ...] = ("nvswitch",)
"""Fabrics where every rank reaches every other through one full-bandwidth switch.  On them NCCL's latency
model for its switch algorithm does not grow with the group (NVIDIA/nccl src/graph/tuning.cc at 5067397c:
``if (a == NCCL_ALGO_NVLS) latencies = intraLat``, no per-rank steps), so a group size that was not measured
keeps the measured latency instead of the ring model's per-step growth."""


def ring_steps(op: str, n: int) -> int:
    """Ring steps of ``op`` over ``n`` ranks in NCCL's model (2(n-1) all_reduce, n-1 all_gather/reduce_scatter)."""
    if op == "all_reduce":
        return 2 * (n - 1)
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return n - 1
    return n


def ring_latency_scale(op: str, n_from: int, n_to: int, link: str = "nvlink") -> float:
    """latency(n_to) / latency(n_from) under NCCL's base + per-step ring model (see NCCL_RING_* above)."""
    if op.startswith("send_recv"):
        return 1.0  # point to point: the group does not change one transfer
    step = NCCL_RING_STEP_LATENCY_S[link]
    return ((NCCL_RING_BASE_LATENCY_S + step * ring_steps(op, n_to))
            / (NCCL_RING_BASE_LATENCY_S + step * ring_steps(op, n_from)))


def gemm_flop(m: float, n: float, k: float) -> float:
    """2mnk: one multiply and one add per (row, column, k) triple (an int for int arguments)."""
    return 2 * m * n * k


def gemm_element_bytes(dtype: str) -> tuple[int, int]:
    """(input element bytes, output element bytes) of a GEMM in ``dtype``."""
    return dtype_bytes(dtype), dtype_bytes(GEMM_OUTPUT_DTYPE.get(dtype, dtype))


def gemm_traffic_bytes(m: float, n: float, k: float, in_bytes: float, out_bytes: float | None = None,
                       weight_bytes: float | None = None) -> float:
    """A (m x k) read once at ``in_bytes`` per element, B (k x n) at ``weight_bytes`` (default ``in_bytes``; a
    weight-only format's storage size, WEIGHT_ONLY_BYTES), C (m x n) written once at ``out_bytes`` (default:
    ``in_bytes``)."""
    return (m * k * in_bytes + k * n * (in_bytes if weight_bytes is None else weight_bytes)
            + m * n * (in_bytes if out_bytes is None else out_bytes))


def gemm_bytes(m: int, n: int, k: int, dtype: str, weight_bytes: float | None = None) -> float:
    """Bytes a GEMM in ``dtype`` reads and writes once (fp8 writes a bf16 output; ``weight_bytes``: its weights
    stored weight-only at that size)."""
    return gemm_traffic_bytes(m, n, k, *gemm_element_bytes(dtype), weight_bytes)


def is_kernel_name(v: object) -> bool:
    """A collective kernel name (a profile entry's or a latency table's ``kernel``): lower-case letters, digits
    and '_', e.g. ``vllm_custom_ar``."""
    return isinstance(v, str) and bool(v) and all(ch.islower() or ch.isdigit() or ch == "_" for ch in v)


def attended_pairs(q_len: int, kv_len: int, causal: bool = True, window: int = 0) -> float:
    """(query, key) pairs one head of one sequence attends: q_len x kv_len, less the masked upper triangle of
    the last q_len keys when causal (the mask aligned to the last query; q_len <= kv_len).  ``window`` > 0 (causal
    only): each query attends at most that many keys, the sum over the queries of min(keys before it, window)
    (a sliding window, or sparse attention's top-k)."""
    if causal and window:
        a, b = kv_len - q_len + 1, kv_len  # the keys the first and the last query see
        if b <= window:
            return (a + b) * q_len / 2.0
        if a >= window:
            return float(q_len * window)
        return (a + window) * (window - a + 1) / 2.0 + (b - window) * window
    if causal and q_len > 1:
        q = min(q_len, kv_len)
        return q_len * kv_len - q * (q - 1) / 2.0
    return float(q_len * kv_len)


def attention_flop_bytes(batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int,
                         elsize: int, causal: bool = True, kv_elsize: int | None = None,
                         v_head_dim: int | None = None, shared_kv: bool = False, window: int = 0) -> tuple[float, float]:
    """(FLOP, bytes) of one scaled-dot-product attention call.

    FLOP: QK^T (``head_dim`` wide) and PV (``v_head_dim``, default ``head_dim``), 2 FLOP per MAC each, over
    the attended (query, key) pairs; causal with q_len <= kv_len drops the masked upper triangle of the last
    q_len keys.  Bytes: Q (``head_dim``) and O (``v_head_dim``) of ``heads`` at ``elsize`` plus K and V of
    ``kv_heads`` at ``kv_elsize`` (default ``elsize``; 1 for an fp8 KV cache), read or written once;
    ``shared_kv``: the values are the keys' first ``v_head_dim`` columns (multi-head latent attention's
    absorbed decode reads one latent per token), so only K is read.  ``window``: each query attends at most that
    many of the keys (attended_pairs); the keys read are still ``kv_len`` (pass the keys the queries reach).
    """
    kv_el = elsize if kv_elsize is None else kv_elsize
    v_dim = head_dim if v_head_dim is None else v_head_dim
    flop = 2.0 * batch * heads * (head_dim + v_dim) * attended_pairs(q_len, kv_len, causal, window)
    kv_width = head_dim + (0 if shared_kv else v_dim)
    nbytes = float(batch) * (float(elsize) * heads * q_len * (head_dim + v_dim) + float(kv_el) * kv_heads * kv_len * kv_width)
    return flop, nbytes
