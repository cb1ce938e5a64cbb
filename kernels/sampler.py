"""A serving engine's sampler over one step's logits, and its microbenchmarks.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.sampler import run_sampler
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_sampler(ctx, batches=(1, 4), vocab=32000)
    print(ctx.results.frame()[["case", "figure", "median_s", "bytes_per_s"]])

Every sequence that emits a token samples from the logits all-gathered to the whole vocabulary, on every TP
rank, each step; at large batches and vocabularies that is milliseconds, and an engine whose default sampler
sorts the vocabulary (vLLM's top-k/top-p path) pays it per sequence whatever the TP degree.  The kinds are the
op sequences named in :data:`accelcal.vocab.SAMPLER_BYTES_PER_LOGIT`, written here in plain torch:

* ``argmax``: greedy, over fp32 logits.
* ``softmax_sample``: temperature, softmax, then an exponential race (argmax of probs / Exp(1) noise, which
  samples from the probabilities without a host sync).
* ``top_k_top_p_sort``: temperature, the vocabulary sorted per sequence, the top-k and nucleus (top-p) masks
  applied in sorted order, scattered back, then softmax and the exponential race.

Rows: op ``sampler``; dtype ``bf16`` (the gathered logits; ``argmax`` reads fp32); params ``kind``, ``batch``,
``vocab`` and ``elements`` (batch x vocab logits); bytes = elements x the kind's bytes per logit, so the fitted
bandwidth is the one the planner's formula needs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from accelcal.vocab import SAMPLER_BYTES_PER_LOGIT

from .cases import SweepContext, replicas

__all__ = ["SAMPLER_KINDS", "make_sampler_run", "run_sampler", "sample_logits"]

SAMPLER_KINDS: tuple[str, ...] = tuple(SAMPLER_BYTES_PER_LOGIT)
"""Sampler kinds, in run order."""

TEMPERATURE, TOP_K, TOP_P = 0.6, 20, 0.95
"""Sampling parameters of the timed calls: a chat model's recommended settings (Qwen3's model card); the time
does not depend on their values."""


def _race(probs: torch.Tensor) -> torch.Tensor:
    q = torch.empty_like(probs).exponential_()
    return (probs / q).argmax(dim=-1)


def sample_logits(kind: str, logits: torch.Tensor, temperature: float = TEMPERATURE, top_k: int = TOP_K,
                  top_p: float = TOP_P) -> torch.Tensor:
    """One token id per row of ``logits`` ([batch, vocab]) by the op sequence ``kind``."""
    if kind == "argmax":
        return logits.float().argmax(dim=-1)
    if kind not in SAMPLER_BYTES_PER_LOGIT:
        raise ValueError(f"unknown sampler kind {kind!r}; expected one of {list(SAMPLER_KINDS)}")
    x = logits.float()
    x.div_(temperature)
    if kind == "top_k_top_p_sort":
        vals, idx = x.sort(dim=-1)
        k = min(top_k, vals.shape[-1])
        kth = vals[:, -k:-k + 1] if k > 1 else vals[:, -1:]
        vals.masked_fill_(vals < kth, float("-inf"))
        cum = vals.softmax(dim=-1).cumsum(dim=-1)
        drop = cum <= 1 - top_p
        drop[:, -1] = False  # the most likely token always stays
        vals.masked_fill_(drop, float("-inf"))
        x = vals.scatter(-1, idx, vals)
    return _race(x.softmax(dim=-1))


def make_sampler_run(device: object, kind: str, batch: int, vocab: int, sets: int) -> Callable[[int], object]:
    """Allocate ``sets`` logits tensors and return ``run(i)`` sampling from set ``i % sets``."""
    if sets < 1:
        raise ValueError(f"sets must be >= 1, got {sets}")
    dev = getattr(device, "torch", device)
    dt = torch.float32 if kind == "argmax" else torch.bfloat16
    xs = replicas(torch.randn(batch, vocab, device=dev, dtype=torch.float32).mul_(3).to(dt), sets)
    return lambda i: sample_logits(kind, xs[i % sets])


def run_sampler(ctx: SweepContext, batches: Sequence[int], vocab: int, kinds: Sequence[str] = SAMPLER_KINDS) -> None:
    """Measure every (kind, batch) at ``vocab`` logits per sequence; rows and skips go to ``ctx.results``."""
    bad = [k for k in kinds if k not in SAMPLER_BYTES_PER_LOGIT]
    if bad:
        raise ValueError(f"unknown sampler kind(s) {bad}; expected some of {list(SAMPLER_KINDS)}")
    if vocab < 2 or any(b < 1 for b in batches):
        raise ValueError(f"sampler: vocab must be >= 2 and batches >= 1, got vocab={vocab}, batches={list(batches)}")
    work = [(k, b) for k in kinds for b in batches]
    ctx.plan("sampler", len(work))
    for kind, b in work:
        elems = b * vocab
        dtype = "fp32" if kind == "argmax" else "bf16"
        params = {"kind": kind, "batch": b, "vocab": vocab, "elements": elems}
        case = f"{kind}_b{b}_v{vocab}"
        ctx.step("sampler", f"{kind} batch={b} vocab={vocab}")
        nbytes = SAMPLER_BYTES_PER_LOGIT[kind] * elems
        sets, why = ctx.fit_sets(int(nbytes))
        if not sets:
            ctx.skip("sampler", case, params, dtype, why)
            continue
        ctx.measure("sampler", case, params, dtype, lambda: make_sampler_run(ctx.device, kind, b, vocab, sets),
                    flop=None, bytes_moved=nbytes)
