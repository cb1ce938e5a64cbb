"""The kernel suite as pytest-benchmark tests (outside the default testpaths).

    $ pytest benchmarks/test_kernel_suite_bench.py --benchmark-only
    $ ACCELCAL_DEVICE=cpu pytest benchmarks/test_kernel_suite_bench.py --benchmark-only -k "gemm and bf16"
    $ pytest benchmarks/test_kernel_suite_bench.py --benchmark-only --benchmark-json=out.json

Cases come from the quick preset of the device (``ACCELCAL_DEVICE``, default:
the accelerator if any, else the CPU), built by the same kernel modules as
``accelcal bench kernels`` (same shapes, rotated random inputs).  pytest-benchmark
times each round as ``queue_len`` back-to-back calls plus a synchronise, so a
round's time / queue_len is the per-call device time; ``extra_info`` carries the
FLOP and byte counts and the accelcal timing core's own median for the same case.
The last test times the whole quick suite once.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from accelcal.kernels.attention import attention_bytes, attention_flop, gqa_mode, make_attention_run  # noqa: E402
from accelcal.kernels.cases import SweepContext  # noqa: E402
from accelcal.kernels.device import resolve_device  # noqa: E402
from accelcal.kernels.gemm import gemm_bytes, gemm_flop, make_gemm_run, matmul_mode, set_bytes, unsupported_reason  # noqa: E402
from accelcal.kernels.memory import MEMORY_OPS, make_memory_run, memory_bytes_moved  # noqa: E402
from accelcal.kernels.overhead import make_tiny_run  # noqa: E402
from accelcal.kernels.shapes import suite_preset  # noqa: E402
from accelcal.kernels.suite import run_suite, summary_table  # noqa: E402
from accelcal.kernels.timing import time_op  # noqa: E402
from accelcal.results import ResultSet  # noqa: E402

DEVICE = resolve_device(os.environ.get("ACCELCAL_DEVICE") or None)
PRESET = suite_preset("quick", DEVICE.type)
CTX = SweepContext.create(DEVICE, ResultSet("kernels"), timing=PRESET.timing, progress=None)
QUEUE = CTX.cfg.queue_len
ROUNDS = 5

GEMM_CASES = [(d, s, m) for d in ("fp32", "bf16") for s in PRESET.gemm_shapes for m in PRESET.ms_for(s, d)]


def _bench(benchmark, run, flop=None, nbytes=None):
    def queue():
        for i in range(QUEUE):
            run(i)
        DEVICE.synchronize()

    own = time_op(run, DEVICE, CTX.cfg)
    benchmark.extra_info.update(device=DEVICE.spec, calls_per_round=QUEUE, flop=flop, bytes=nbytes,
                                accelcal_device_median_s=own.device.median_s,
                                accelcal_eager_median_s=own.eager.median_s, accelcal_method=own.device_method)
    benchmark.pedantic(queue, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("dtype,shape,m", GEMM_CASES, ids=[f"{d}-{s.name}-m{m}" for d, s, m in GEMM_CASES])
def test_gemm(benchmark, dtype, shape, m):
    reason = unsupported_reason(DEVICE, dtype)
    if reason:
        pytest.skip(reason)
    sets, why = CTX.fit_sets(set_bytes(m, shape.n, shape.k, dtype))
    if not sets:
        pytest.skip(why)
    benchmark.group = f"gemm-{dtype}-{shape.name}"
    with matmul_mode(dtype):
        run = make_gemm_run(DEVICE, dtype, m, shape.n, shape.k, sets)
        _bench(benchmark, run, gemm_flop(m, shape.n, shape.k), gemm_bytes(m, shape.n, shape.k, dtype))


@pytest.mark.parametrize("op", MEMORY_OPS)
@pytest.mark.parametrize("size", PRESET.memory_sizes_bytes, ids=lambda s: f"{s}B")
def test_memory(benchmark, op, size):
    per_set = (2 if op == "copy" else 1) * size
    sets, why = CTX.fit_sets(per_set)
    if not sets:
        pytest.skip(why)
    benchmark.group = f"memory-{op}"
    _bench(benchmark, make_memory_run(DEVICE, op, size, sets), nbytes=memory_bytes_moved(op, size))


def test_launch_eager(benchmark):
    benchmark.group = "overhead"
    _bench(benchmark, make_tiny_run(DEVICE))


ATTN = [(d, c) for d in PRESET.attention_dtypes for c in PRESET.attention_cases]


@pytest.mark.parametrize("dtype,case", ATTN, ids=[f"{d}-{c.name}" for d, c in ATTN])
def test_attention(benchmark, dtype, case):
    sets, why = CTX.fit_sets(attention_bytes(case, dtype) + 4 * case.batch * case.heads * case.q_len * case.kv_len)
    if not sets:
        pytest.skip(why)
    benchmark.group = f"attn_{case.phase}-{dtype}"
    run = make_attention_run(DEVICE, case, dtype, sets, gqa_mode(DEVICE))
    _bench(benchmark, run, attention_flop(case), attention_bytes(case, dtype))


def test_quick_suite_wall_time(benchmark):
    """The whole quick suite once; its wall time is what the 60 s (CPU) / 90 s (GPU) target is about."""
    benchmark.group = "suite"
    rs = benchmark.pedantic(lambda: run_suite(DEVICE, preset="quick", progress=None), rounds=1, iterations=1)
    benchmark.extra_info["cases"] = int(rs.frame()["case"].nunique())
    print(summary_table(rs))
    assert (rs.frame()["status"] == "ok").any()
