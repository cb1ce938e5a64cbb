"""Cache residency: the same small cases timed with 64 rotated input sets (the timing core until 2026-12-05)
and with as many as pass twice the last-level cache (``kernels.timing.rotation_count`` now), same process.

    $ python benchmarks/cache_residency.py                 # cpu, one thread (a CPU profile's threads per device)
    $ python benchmarks/cache_residency.py --rounds 3 --threads 2

For a decode-attention case, a decode GEMM and a 1 MiB read (the small cases of the quick CPU sweep), it builds
the run with each set count through the kernel modules' own ``make_*_run`` and times it with
``kernels.timing.time_op`` (device figure), alternating the two ``--rounds`` times, and prints both medians and
their ratio.  A ratio well above 1 means the 64 sets stayed in the cache: the time a profile fitted from them
is the cache's, not the memory's that a model's weights and KV cache stream from.  Where 64 sets already pass
twice the cache (small last-level caches, large cases) both columns use the same count.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from accelcal.kernels.attention import make_attention_run, set_bytes as attention_set_bytes
from accelcal.kernels.cases import FALLBACK_CACHE_BYTES, last_level_cache_bytes
from accelcal.kernels.device import resolve_device
from accelcal.kernels.gemm import make_gemm_run, set_bytes as gemm_set_bytes
from accelcal.kernels.memory import make_memory_run
from accelcal.kernels.shapes import AttentionCase
from accelcal.kernels.timing import TimingConfig, rotation_count, time_op

OLD_SETS_MAX = 64
"""The timing core's count cap before 2026-12-05."""


def cases() -> list[tuple[str, int, object]]:
    """(label, bytes of one input set, factory(sets) -> run) for the compared cases."""
    dev = resolve_device("cpu")
    att = AttentionCase("decode", 1, 8, 2, 64, 1, 512)
    return [  # set sizes as the kernel suite computes them for its rotation
        ("attn decode b1 h8/2 d64 kv512 fp32", attention_set_bytes(att, "fp32"),
         lambda s: make_attention_run(dev, att, "fp32", s, "native")),
        ("gemm M1 N768 K512 fp32", gemm_set_bytes(1, 768, 512, "fp32"),
         lambda s: make_gemm_run(dev, "fp32", 1, 768, 512, s)),
        ("memory read 1 MiB", 1 << 20,  # one buffer per read set (kernels/memory.py)
         lambda s: make_memory_run(dev, "read", 1 << 20, s)),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two set counts (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a CPU profile's per-device thread)")
    ap.add_argument("--cache-bytes", type=int, default=None,
                    help="last-level cache to rotate past (default: what the kernel suite reads from sysfs)")
    ap.add_argument("--budget-bytes", type=int, default=4 << 30, help="most bytes of input sets per case (default 4 GiB)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or (args.cache_bytes is not None and args.cache_bytes < 1) or args.budget_bytes < 1:
        print("error: --rounds, --threads, --cache-bytes and --budget-bytes must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    dev = resolve_device("cpu")
    cache = args.cache_bytes or last_level_cache_bytes(dev) or FALLBACK_CACHE_BYTES
    cfg = TimingConfig.quick()
    print(f"cpu, {args.threads} thread(s), last-level cache {cache / 2**20:.0f} MiB, {args.rounds} round(s), timing preset quick")
    print(f"{'case':<36} {'set':>9} {'sets old/new':>13} {'old us':>9} {'new us':>9} {'new/old':>8}")
    ratios = []
    for label, nbytes, make in cases():
        old = min(rotation_count(nbytes, cache, args.budget_bytes, hi=OLD_SETS_MAX), OLD_SETS_MAX)
        new = rotation_count(nbytes, cache, args.budget_bytes)
        times: dict[int, list[float]] = {old: [], new: []}  # one entry where 64 sets already pass the cache
        for _ in range(args.rounds):
            for sets in times:
                run = make(sets)
                times[sets].append(time_op(run, dev, cfg).device.median_s)
                del run
        t_old, t_new = statistics.median(times[old]), statistics.median(times[new])
        ratios.append(t_new / t_old)
        print(f"{label:<36} {nbytes / 2**10:>6.0f} KiB {old:>6}/{new:<6} {t_old * 1e6:>9.1f} {t_new * 1e6:>9.1f} "
              f"{t_new / t_old:>7.2f}x")
    print(f"median new/old {statistics.median(ratios):.2f}x over {len(ratios)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
