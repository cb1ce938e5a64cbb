"""Serving search speed: Llama-3.1-70B (llama3-70b dims until a llama3.1-70b preset exists) on 8 devices,
every TP x PP layout x a concurrency sweep, for each engine preset.  Target: < 2 s on one core.

    $ python benchmarks/serving_search_speed.py
    $ python benchmarks/serving_search_speed.py --profile profiles/my-node.yaml --engines vllm,sglang,trtllm

Default profile: profiles/datasheet/h100-sxm.yaml (it has intra-node collectives; a datasheet prior, so the
plans are for timing the search, not recommendations).  Pinned to one CPU where the OS allows it; two runs,
the faster reported, and whether both gave the same answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig
from accelcal.planner.serving.search import ServingTargets, search_serving

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pin import pin_to_one_cpu  # noqa: E402  (benchmarks/_pin.py, beside this script)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles/datasheet/h100-sxm.yaml"))
    ap.add_argument("--engines", default="vllm,sglang,trtllm")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64,128,256,512")
    ap.add_argument("--devices", type=int, default=8)
    args = ap.parse_args()
    pin_to_one_cpu()
    try:
        model = ModelConfig.from_name("llama3.1-70b")
    except ValueError:
        model = ModelConfig.from_name("llama3-70b")
    prof = Profile.load(args.profile)
    conc = [int(x) for x in args.concurrency.split(",")]
    engines = args.engines.split(",")
    targets = ServingTargets(ttft_s=2.0, tpot_s=0.05)
    runs = []
    for _ in range(2):
        w0, c0 = time.perf_counter(), time.process_time()
        res = search_serving(prof, model, args.devices, engines, conc, 2048, 256, targets)
        runs.append((time.perf_counter() - w0, time.process_time() - c0, res))
    wall = min(r[0] for r in runs)
    cpu = min(r[1] for r in runs)
    same = [c.to_dict() for c in runs[0][2].ranked] == [c.to_dict() for c in runs[1][2].ranked]
    res = runs[0][2]
    print(f"profile {prof.identity.name}; model {model.name}; {args.devices} devices; engines {engines}; "
          f"concurrency {conc}; isl 2048 osl 256; targets TTFT 2 s TPOT 50 ms")
    print(f"search: {wall:.3f} s wall, {cpu:.3f} s CPU, {res.evaluated} points, {len(res.rejected)} rejected; best "
          f"{res.best.label} ({res.best.per_device:.1f} tokens/s/device); identical over 2 runs: {same}; "
          f"target < 2 s: {'PASS' if wall < 2.0 else 'FAIL'}")
    return 0 if wall < 2.0 and same else 1


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
