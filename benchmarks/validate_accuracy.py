"""How well does a measured profile predict real decoder layers?  Target on a 2-core CPU: median |rel err| <= 20%.

    python benchmarks/validate_accuracy.py                           # a measured CPU profile from profiles/, else calibrate one
    python benchmarks/validate_accuracy.py --profile profiles/cpu.yaml --nproc 2
    python benchmarks/validate_accuracy.py --profile P --quick --no-breakdown
    python benchmarks/validate_accuracy.py --device cuda:0 --profile gpu.yaml --nproc 1 --models llama3-8b --breakdown-shape 3

Runs ``accelcal validate`` on a temporary copy of the profile (the file itself
is never modified), prints measured vs predicted per case, the TP=2 vs
TP=1 x DP=2 ranking, the median |relative error| against the target, and, per
model, a per-node breakdown (each planner node re-run alone) that says which
op's prediction is off and by how much.  Everything printed is measured in this
run; the machine's load average is printed because a shared 2-core machine
makes every figure noisier.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MEDIAN_ABS_REL_ERR = 0.20
"""Issue 6's target on a 2-core CPU machine."""
TARGET_GRAPH_MEDIAN_ABS_REL_ERR = 0.10
"""Issue 6's target for single-device prefill and decode in graph mode on one H100/H200."""


def _find_measured_cpu_profile() -> Path | None:
    from accelcal.calibrate.profile import Profile

    for p in sorted((REPO / "profiles").rglob("*.yaml")):
        try:
            prof = Profile.load(p)
        except Exception:
            continue
        if prof.identity.source == "measured" and prof.identity.device_type == "cpu":
            return p
    return None


def _calibrate(out: Path, nproc: int) -> None:
    cmd = [sys.executable, "-m", "accelcal", "calibrate", "--device", "cpu", "--quick", "--nproc", str(nproc), "--out", str(out)]
    print(f"no measured CPU profile under profiles/; calibrating one: {' '.join(cmd)}", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"calibration failed (exit {r.returncode}); no profile to validate:\n  " + "\n  ".join(tail))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None,
                    help="measured profile (default on the CPU: one under profiles/, else calibrate; required elsewhere)")
    ap.add_argument("--device", default="cpu", help="device the layers run on: cpu (default), cuda:0, ...")
    ap.add_argument("--nproc", type=int, default=2, help="ranks for TP cases and the ranking check (default 2)")
    ap.add_argument("--models", default="small,small-moe",
                    help="comma-separated planner presets (default small,small-moe: layers larger than the CPU's cache)")
    ap.add_argument("--quick", action="store_true", help="fewer shapes, quick timing preset")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for the 1-minute load average to drop below the core count first")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-node diagnosis")
    ap.add_argument("--breakdown-shape", type=int, default=1, metavar="I",
                    help="index into the device class's (batch, length) grid (validate/configs.py SHAPES) for the "
                         "per-node breakdown of each phase (default 1)")
    args = ap.parse_args(argv)

    from accelcal.calibrate.profile import Profile
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig
    from accelcal.models import ModelConfig
    from accelcal.validate.breakdown import count_ops, format_breakdown, node_breakdown
    from accelcal.validate.compare import predict_case, prediction_model
    from accelcal.validate.layers import LayerDims
    from accelcal.validate.compare import format_table
    from accelcal.validate.configs import Case, SHAPES
    from accelcal.validate.ranking import format_rankings
    from accelcal.validate.runner import run_validation

    t0 = time.monotonic()
    cores = os.cpu_count() or 1
    while args.wait_quiet > 0 and os.getloadavg()[0] >= cores and time.monotonic() - t0 < args.wait_quiet:
        time.sleep(5)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="accelcal-valbench-") as tmp:
        work = Path(tmp) / "profile.yaml"
        src = Path(args.profile) if args.profile else (_find_measured_cpu_profile() if args.device == "cpu" else None)
        if src is None and args.device != "cpu":
            raise SystemExit(f"--device {args.device}: give --profile (a profile measured on that device)")
        if src is None:
            _calibrate(work, args.nproc)
            src_label = "calibrated in this run"
        else:
            shutil.copyfile(src, work)
            src_label = str(src)
        prof = Profile.load(work)
        print(f"profile: {src_label} ({prof.identity.name}, source {prof.identity.source}, {prof.identity.device_name})")
        models = [m for m in args.models.split(",") if m]
        run = run_validation(work, device=args.device, nproc=args.nproc, models=models, quick=args.quick,
                             preset="quick" if args.quick else "default")
        print()
        print(format_table(run.comparisons))
        if run.rankings:
            print(format_rankings(run.rankings))
        for note in run.notes:
            print(f"note: {note}")
        single = [c for c in run.comparisons if c.case.ranks == 1]
        multi = [c for c in run.comparisons if c.case.ranks > 1]
        med = run.median_abs_rel_err
        print()
        if single:
            import statistics

            print(f"single-rank cases: median |rel err| = {statistics.median(abs(c.rel_err) for c in single):.1%} "
                  f"over {len(single)}")
        if multi:
            import statistics

            print(f"multi-rank cases:  median |rel err| = {statistics.median(abs(c.rel_err) for c in multi):.1%} "
                  f"over {len(multi)}")
        import statistics

        groups: dict[str, list[float]] = {}
        for c in run.comparisons:
            kind = "moe" if ModelConfig.resolve(c.case.model).is_moe else "dense"
            layout = "multi-rank" if c.case.ranks > 1 else f"single-rank {kind}"
            mode = "graph" if c.case.graphs else "eager"
            groups.setdefault(f"{layout} {c.case.phase} {mode}", []).append(c.rel_err)
        for g, errs in groups.items():
            print(f"  {g:<28} median |rel err| = {statistics.median(abs(e) for e in errs):6.1%}  "
                  f"(signed: {', '.join(f'{e:+.0%}' for e in errs)})")
        verdict = "MET" if med <= TARGET_MEDIAN_ABS_REL_ERR else "MISSED"
        print(f"all cases: median |rel err| = {med:.1%} vs target <= {TARGET_MEDIAN_ABS_REL_ERR:.0%}: {verdict} "
              f"(max {run.max_abs_rel_err:.1%}, {len(run.comparisons)} cases)")
        graph = [abs(c.rel_err) for c in single if c.case.graphs]
        if graph:
            gmed = statistics.median(graph)
            print(f"single-device graph-mode cases: median |rel err| = {gmed:.1%}, max {max(graph):.1%} over {len(graph)} "
                  f"vs target <= {TARGET_GRAPH_MEDIAN_ABS_REL_ERR:.0%}: "
                  f"{'MET' if gmed <= TARGET_GRAPH_MEDIAN_ABS_REL_ERR else 'MISSED'}")
        verdicts = [r.verdict for r in run.rankings]
        if verdicts:
            print(f"ranking check: {verdicts.count('agree')}/{len(verdicts)} phases agree, "
                  f"{verdicts.count('DISAGREE')} disagree, {verdicts.count('too close to rank')} too close to rank")

        if not args.no_breakdown:
            dev = resolve_device(args.device)
            cfg = TimingConfig.preset("quick" if args.quick else "default")
            grid = SHAPES["cpu" if dev.is_cpu else "gpu"]
            for model in models:
                if ModelConfig.resolve(model).is_moe and not dev.is_cpu:
                    continue  # the routed block is one node group; dense models say more per node on a GPU
                for phase in ("prefill", "decode"):
                    if not 0 <= args.breakdown_shape < len(grid[phase]):
                        raise SystemExit(f"--breakdown-shape {args.breakdown_shape}: expected 0..{len(grid[phase]) - 1}")
                    batch, length = grid[phase][args.breakdown_shape]
                    case = Case(model, phase, batch, length if phase == "prefill" else 1, length)
                    rows = node_breakdown(prof, model, case, run.dtype, dev, cfg)
                    print()
                    print(format_breakdown(rows, title=f"per-node breakdown, {case.name}"))
                    mc = ModelConfig.resolve(model)
                    n_all, n_work = count_ops(case, LayerDims.from_model(mc), run.dtype, dev)
                    pred = predict_case(prof, prediction_model(mc, run.dtype), case)
                    kernels = sum(n.kernels for n in pred.nodes)
                    print(f"ops per layer forward: {n_all} aten ops dispatched, {n_work} doing work; "
                          f"the planner counts {kernels} kernels (launch share predicted "
                          f"{pred.breakdown.get('launch', 0.0) * 1e3:.4f} ms of {pred.total_s * 1e3:.4f} ms)")
    print()
    print(f"load average at end: {os.getloadavg()[0]:.2f}; wall {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
