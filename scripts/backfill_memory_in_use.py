"""Record a measured profile's ``identity.memory_in_use_at_start_bytes`` from its own raw data; nothing else changes.

    python scripts/backfill_memory_in_use.py profiles/nvidia-h100.yaml profiles/nvidia-h200.yaml

Profiles calibrated before the field existed already carry the figure in their raw data: the kernel suite's
``.env.json`` records ``device_memory_total_bytes`` and ``device_memory_free_bytes`` (torch.cuda.mem_get_info
when the suite started).  This reads the env of the first raw CSV in ``identity.raw_data`` (Identity.raw_env), checks that it
names the profile's device, and writes total - free (accelcal.calibrate.fit.memory_in_use_at_start, the rule
``accelcal calibrate`` now applies itself).  A CPU profile, or raw data without both figures, is left as it is
and said so.  The profile is rewritten atomically by the current serialiser, which also writes out fields the
loader defaults when absent (e.g. a GEMM model's ``column_s: 0.0``): the same profile, answer for answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from accelcal.calibrate.fit import memory_in_use_at_start
from accelcal.calibrate.profile import Profile


def backfill(path: Path) -> str:
    p = Profile.load(path)
    env_path, env = p.identity.raw_env(path)
    if env_path is None:
        raise SystemExit(f"{path}: no raw CSV with an .env.json among identity.raw_data {p.identity.raw_data}")
    if env.get("device_name") != p.identity.device_name:
        raise SystemExit(f"{path}: {env_path.name} names device {env.get('device_name')!r}, the profile "
                         f"{p.identity.device_name!r}")
    used = memory_in_use_at_start(env)
    if used is None:
        return f"{path}: left as it is ({env_path.name} has no device total/free pair, or the device is a CPU)"
    p.identity.memory_in_use_at_start_bytes = used
    p.save(path)
    return (f"{path}: identity.memory_in_use_at_start_bytes = {used:.0f} ({env_path.name}: total "
            f"{env['device_memory_total_bytes']} - free {env['device_memory_free_bytes']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="+", type=Path, help="measured profile YAMLs (their raw data beside them)")
    args = ap.parse_args(argv)
    for path in args.profiles:
        print(backfill(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
