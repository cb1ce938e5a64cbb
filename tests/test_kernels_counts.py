"""Kernel suite arithmetic and presets: FLOP and byte counts per op, shapes, M sweep, cache size."""

import pytest

from accelcal.kernels.attention import attention_bytes, attention_flop
from accelcal.kernels.cases import FALLBACK_CACHE_BYTES, last_level_cache_bytes
from accelcal.kernels.device import resolve_device
from accelcal.kernels.gemm import gemm_bytes, gemm_flop
from accelcal.kernels.memory import memory_bytes_moved
from accelcal.kernels.shapes import DENSE_MS, MODELS, AttentionCase, projection_shapes, suite_preset


def test_gemm_flop_and_bytes():
    assert gemm_flop(3, 5, 7) == 2 * 3 * 5 * 7
    # (mk + kn + mn) * elsize for same-dtype output.
    assert gemm_bytes(3, 5, 7, "fp32") == (3 * 7 + 7 * 5 + 3 * 5) * 4
    assert gemm_bytes(3, 5, 7, "bf16") == (21 + 35 + 15) * 2
    assert gemm_bytes(3, 5, 7, "tf32") == (21 + 35 + 15) * 4
    # fp8 inputs are 1 byte, the _scaled_mm output is bf16 (2 bytes).
    assert gemm_bytes(3, 5, 7, "fp8_e4m3") == (21 + 35) * 1 + 15 * 2
    with pytest.raises(ValueError, match="unknown dtype"):
        gemm_bytes(1, 1, 1, "int4")


def test_memory_bytes_moved():
    assert memory_bytes_moved("copy", 4096) == 8192
    assert memory_bytes_moved("read", 4096) == 4096
    assert memory_bytes_moved("write", 4096) == 4096
    with pytest.raises(ValueError, match="copy"):
        memory_bytes_moved("scan", 1)


def test_attention_flop_and_bytes():
    prefill = AttentionCase("prefill", batch=2, heads=8, kv_heads=2, head_dim=64, q_len=128, kv_len=128)
    decode = AttentionCase("decode", batch=2, heads=8, kv_heads=2, head_dim=64, q_len=1, kv_len=1024)
    assert prefill.causal and not decode.causal
    # causal: query i attends keys 0..i, q (q + 1) / 2 pairs of 4 * d FLOP per head (accelcal.vocab, the one formula)
    assert attention_flop(prefill) == 4 * 2 * 8 * 64 * (128 * 129 // 2)
    assert attention_flop(decode) == 4 * 2 * 8 * 1 * 1024 * 64
    # a 128-token chunk after 384 cached tokens: every cached key plus the causal triangle of its own
    chunk = AttentionCase("prefill", batch=1, heads=8, kv_heads=2, head_dim=64, q_len=128, kv_len=512)
    assert attention_flop(chunk) == 4 * 8 * 64 * (128 * 384 + 128 * 129 // 2)
    with pytest.raises(ValueError, match="q_len <= kv_len"):
        AttentionCase("prefill", batch=1, heads=8, kv_heads=2, head_dim=64, q_len=512, kv_len=128)
    # Q and O over query heads, K and V over kv heads.
    assert attention_bytes(prefill, "bf16") == (2 * 2 * 8 * 128 * 64 + 2 * 2 * 2 * 128 * 64) * 2
    assert attention_bytes(decode, "fp32") == (2 * 2 * 8 * 1 * 64 + 2 * 2 * 2 * 1024 * 64) * 4


def test_projection_shapes_follow_config_values():
    shapes = {s.name: s for s in projection_shapes()}
    l8, l70 = MODELS["llama3-8b"], MODELS["llama3-70b"]
    assert (l8.hidden, l8.intermediate, l8.heads, l8.kv_heads, l8.head_dim) == (4096, 14336, 32, 8, 128)
    assert (l70.hidden, l70.intermediate, l70.heads, l70.kv_heads) == (8192, 28672, 64, 8)
    assert (shapes["llama3-8b.qkv"].n, shapes["llama3-8b.qkv"].k) == ((32 + 2 * 8) * 128, 4096)
    assert (shapes["llama3-8b.o"].n, shapes["llama3-8b.o"].k) == (4096, 4096)
    assert (shapes["llama3-8b.gate_up"].n, shapes["llama3-8b.gate_up"].k) == (2 * 14336, 4096)
    assert (shapes["llama3-8b.down"].n, shapes["llama3-8b.down"].k) == (4096, 14336)
    assert (shapes["llama3-70b.qkv"].n, shapes["llama3-70b.qkv"].k) == ((64 + 16) * 128, 8192)
    assert (shapes["llama3-70b.down"].n, shapes["llama3-70b.down"].k) == (8192, 28672)
    assert (shapes["mixtral-8x7b.expert_down"].n, shapes["mixtral-8x7b.expert_down"].k) == (4096, 14336)
    assert all("config.json" in s.source for s in shapes.values())
    scaled = shapes["llama3-8b.qkv"].scaled(8)
    assert scaled.name == "llama3-8b.qkv/8" and (scaled.n, scaled.k) == (768, 512)
    assert "divided by 8" in scaled.source


def test_dense_m_sweep_covers_both_sides_of_tile_boundaries():
    assert DENSE_MS[0] == 1 and DENSE_MS[-1] == 16384
    for p in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
        assert p in DENSE_MS and p + 1 in DENSE_MS
    assert list(DENSE_MS) == sorted(set(DENSE_MS))


def test_presets_per_device_class():
    cpu = suite_preset("quick", "cpu")
    gpu = suite_preset("quick", "cuda")
    # The calibration needs several (N, K) shapes with M across tile boundaries for fp32 and bf16.
    assert len(cpu.gemm_shapes) >= 3 and {16, 17, 128, 129} <= set(cpu.gemm_ms)
    assert {"fp32", "bf16"} <= set(cpu.dtypes)
    assert all(cpu.ms_for(s, d) == cpu.gemm_ms for s in cpu.gemm_shapes for d in ("fp32", "bf16"))
    # Slow/absent CPU paths: a few M on the first shape only.
    assert cpu.ms_for(cpu.gemm_shapes[0], "fp16") == cpu.reduced_ms and cpu.ms_for(cpu.gemm_shapes[1], "fp16") == ()
    # The accelerator quick preset holds bf16 8192^3 and a 1 GiB copy.
    assert any(s.n == s.k == 8192 and 8192 in gpu.ms_for(s) for s in gpu.gemm_shapes)
    assert 1 << 30 in gpu.memory_sizes_bytes and "bf16" in gpu.dtypes
    assert set(suite_preset("full", "cuda").gemm_ms) == set(DENSE_MS)
    with pytest.raises(ValueError, match="expected one of"):
        suite_preset("huge", "cpu")


def test_last_level_cache_from_sysfs(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                                              (3, "Unified", "32768K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    cpu = resolve_device("cpu")
    assert last_level_cache_bytes(cpu, tmp_path) == 32 << 20
    assert last_level_cache_bytes(cpu, tmp_path / "missing") == FALLBACK_CACHE_BYTES
