"""Prefill chunks after cached context and mixed steps: the sweep times the right arithmetic and records it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accelcal.kernels.attention import CHUNK_MASKS, make_attention_run, run_attention
from accelcal.kernels.cases import SweepContext
from accelcal.kernels.device import resolve_device
from accelcal.kernels.shapes import AttentionCase, MixedAttentionCase
from accelcal.results import ResultSet


@pytest.mark.parametrize("mask", CHUNK_MASKS)
def test_chunk_attends_the_cached_context_and_its_own_causal_triangle(mask):
    # The last q rows of a causal prompt of kv tokens are what a q-token chunk after kv - q cached tokens computes.
    dev = resolve_device("cpu")
    c = AttentionCase("prefill", 1, 4, 2, 16, 8, 24)
    torch.manual_seed(0)
    run = make_attention_run(dev, c, "fp32", 1, "native", mask)
    q, k, v = _qkv(run)
    out = run(0)
    full_q = torch.cat([torch.randn(1, 4, 16, 16), q], dim=2)  # 16 cached queries in front: only the last 8 matter
    ref = F.scaled_dot_product_attention(full_q, k, v, is_causal=True, enable_gqa=True)[:, :, -8:]
    assert torch.allclose(out, ref, atol=1e-5)


def _qkv(run):
    """The (Q, K, V) set a run function closes over (its first set)."""
    cells = {name: cell.cell_contents for name, cell in zip(run.__code__.co_freevars, run.__closure__)}
    return cells["qkv"][0]


def test_sweep_records_chunks_and_mixed_steps():
    dev = resolve_device("cpu")
    rs = ResultSet("kernels")
    ctx = SweepContext.create(dev, rs, timing="quick", case_budget_s=5.0, progress=None)
    chunk = AttentionCase("prefill", 1, 4, 2, 16, 32, 128)
    mixed = MixedAttentionCase(AttentionCase("decode", 2, 4, 2, 16, 1, 64), AttentionCase("prefill", 1, 4, 2, 16, 16, 48))
    run_attention(ctx, [chunk], ["fp32"], [mixed])
    df = rs.frame()
    dev_rows = df[df["figure"] == "device"]
    assert set(dev_rows["op"]) == {"attn_prefill", "attn_mixed"}
    pre = dev_rows[dev_rows["op"] == "attn_prefill"].iloc[0]
    assert pre["chunk_mask"] in CHUNK_MASKS and int(pre["q_len"]) == 32 and int(pre["kv_len"]) == 128
    mix = dev_rows[dev_rows["op"] == "attn_mixed"].iloc[0]
    assert (int(mix["batch"]), int(mix["kv_len"]), int(mix["chunk_q_len"]), int(mix["chunk_kv_len"])) == (2, 64, 16, 48)
    with pytest.raises(ValueError, match="share the head layout"):
        MixedAttentionCase(AttentionCase("decode", 2, 4, 2, 16, 1, 64), AttentionCase("prefill", 1, 8, 2, 16, 16, 48))
