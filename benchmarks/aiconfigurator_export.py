"""aiconfigurator's estimate of one workload with accelcal's exported data beside its built-in data.

    python benchmarks/aiconfigurator_export.py                       # H200 and H100 profiles, Llama-3.1-8B
    python benchmarks/aiconfigurator_export.py --model Qwen/Qwen3-32B --isl 1024 --osl 128

For each measured profile and the aiconfigurator system of the same GPU (``nvidia-h200`` ->
``h200_sxm``, ``nvidia-h100`` -> ``h100_sxm``) this exports the profile with
``accelcal export --format aiconfigurator`` (datasheet prior for the peaks; the fields accelcal does not
measure -- inter-node bandwidth, NCCL / other memory reserves -- copied from aiconfigurator's own system
YAML for that GPU, so only the measured parts differ), then runs ``aiconfigurator cli estimate`` twice,
on the same backend (vllm), model, lengths, batch and TP: once on its built-in system and once on the
export, and prints TTFT and TPOT of both.  Needs ``pip install aiconfigurator`` (0.12.0 was used); no GPU:
both estimates are aiconfigurator's models, one fed with its collected tables, one with accelcal's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("nvidia-h200", "h200-sxm", "h200_sxm"), ("nvidia-h100", "h100-sxm", "h100_sxm")]
"""(measured profile stem, datasheet prior stem, aiconfigurator built-in system)."""
FIELD = re.compile(r"^\s*(TTFT|TPOT|Request Latency|Backend):\s+(.+?)\s*$")


def _aic_exe() -> str:
    exe = shutil.which("aiconfigurator") or str(Path(sys.executable).with_name("aiconfigurator"))
    if not Path(exe).exists():
        raise SystemExit("aiconfigurator_export: the aiconfigurator CLI is not installed (pip install aiconfigurator)")
    return exe


def parse_estimate(stdout: str) -> dict[str, str]:
    """The TTFT / TPOT / Request Latency / Backend lines of ``aiconfigurator cli estimate``'s summary box."""
    return {m.group(1): m.group(2) for line in stdout.splitlines() if (m := FIELD.match(line))}


def estimate(system: str, args: argparse.Namespace, systems_paths: str | None = None) -> dict[str, str]:
    """Run ``aiconfigurator cli estimate`` and return its TTFT / TPOT / latency / backend lines."""
    cmd = [_aic_exe(), "cli", "estimate", "--model", args.model, "--system", system, "--backend", "vllm",
           "--isl", str(args.isl), "--osl", str(args.osl), "--batch-size", str(args.batch), "--tp-size", "1",
           "--no-color", "--log-level", "ERROR"]
    if systems_paths:
        cmd += ["--systems-paths", systems_paths]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    got = parse_estimate(proc.stdout)
    if proc.returncode != 0 or "TTFT" not in got:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        got["error"] = f"exit {proc.returncode}: " + " | ".join(tail)
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="meta-llama/Meta-Llama-3.1-8B", help="aiconfigurator model id")
    ap.add_argument("--isl", type=int, default=1024)
    ap.add_argument("--osl", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per aiconfigurator run")
    args = ap.parse_args(argv)
    try:
        import aiconfigurator_core
    except ImportError:
        print("aiconfigurator_export: aiconfigurator is not installed (pip install aiconfigurator)", file=sys.stderr)
        return 2
    from accelcal.calibrate.export_aiconfigurator import export_aiconfigurator
    from accelcal.calibrate.profile import Profile

    builtin = Path(aiconfigurator_core.__file__).parent / "systems"
    print(f"aiconfigurator estimate, {args.model}, vllm, TP 1, batch {args.batch}, isl {args.isl}, osl {args.osl}")
    print(f"{'system':40} {'data':28} {'TTFT':>11} {'TPOT':>10}")
    with tempfile.TemporaryDirectory(prefix="aic-export-") as tmp:
        for stem, ds_stem, aic_system in PAIRS:
            prof = ROOT / "profiles" / f"{stem}.yaml"
            if not prof.is_file():
                continue
            res = export_aiconfigurator(Profile.load(prof), Path(tmp) / stem, profile_path=prof,
                                        datasheet=Profile.load(ROOT / "profiles" / "datasheet" / f"{ds_stem}.yaml"),
                                        fill_from=builtin / f"{aic_system}.yaml")
            rows = [(aic_system, "aiconfigurator built-in", estimate(aic_system, args)),
                    (res.system, f"accelcal {prof.name}", estimate(res.system, args, str(res.systems_dir)))]
            for system, data, got in rows:
                if "error" in got:
                    print(f"{system:40} {data:28} error: {got['error']}")
                else:
                    print(f"{system:40} {data:28} {got['TTFT']:>11} {got['TPOT']:>10}   [{got.get('Backend', '')}]")
            copied = sorted(k for k, v in res.provenance.items() if v.startswith("copied from"))
            print(f"  (export: {sum(res.tables.values())} table rows; copied from {aic_system}.yaml, "
                  f"not measured: {', '.join(copied)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
