"""Inject each fault of issue 15 into the real CLI and print a table: case, bound, observed time, message, leftovers.

    .venv/bin/python benchmarks/fault_table.py            # ~1-2 min on 2 cores; prints a Markdown table
    .venv/bin/python benchmarks/fault_table.py --quick    # skip the calibrate/validate kill cases

"observed" is the time from the fault to its end: for a killed parent, until every rank is gone; for a bad
input or destination, the whole command's wall time (interpreter start included).  "leftovers" lists staging,
log, raw and temporary folders/files the run left behind.  Everything runs in a temporary folder; a full disk
is a 64 KiB tmpfs and a read-only folder a read-only tmpfs (needs `mount`; else those rows say "skipped").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from faults_util import (CPU_RAW, SAMPLE_PROFILE, accelcal_cmd, children, environ_of, leftovers,  # noqa: E402
                         listening_sockets, start_sweep, wait_for_ranks, wait_gone)

BOUND_KILL_S = 5.0
BOUND_INPUT_S = 5.0


def _last_err(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln or "terminated" in ln or "Traceback" in ln]
    return (errs or lines or ["(none)"])[-1][:140]


def _run(argv: list[str], **kw) -> tuple[float, str, int]:
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=300, **kw)
    return time.monotonic() - t0, _last_err(r.stderr + r.stdout), r.returncode


def _kill_case(tmp: Path, argv: list[str], sig: int, out: Path, extra_left: list[Path]) -> tuple[float, str, list[str]]:
    log = tmp / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        ranks = wait_for_ranks(proc, timeout_s=180)
        time.sleep(1.0)
        env = environ_of(ranks[0])
        os.kill(proc.pid, sig)
        took = wait_gone(ranks, 60)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.3)
    left = leftovers(out, env) + [str(p) for pat in extra_left for p in pat.parent.glob(pat.name)]
    msg = _last_err(log.read_text(errors="replace")) if sig != signal.SIGKILL else f"(parent SIGKILLed, rc {proc.returncode})"
    return took, msg, left


def _mount(path: Path, opts: str) -> bool:
    path.mkdir(exist_ok=True)
    return shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def cases(tmp: Path, quick: bool):
    prof = SAMPLE_PROFILE
    py = accelcal_cmd

    def sweep_kill(sig):
        def f():
            d = tmp / f"sweep-{sig}"
            return _kill_case(tmp, py("bench", "collectives", "--nproc", "2", "--quick", "--out", str(d)), sig, d, [])
        return f

    yield "1 bench collectives: parent SIGTERM", BOUND_KILL_S, sweep_kill(signal.SIGTERM)
    yield "1 bench collectives: parent SIGKILL", BOUND_KILL_S, sweep_kill(signal.SIGKILL)
    if not quick:
        def calib(sig):
            def f():
                d = tmp / f"cal-{sig}"
                d.mkdir()
                return _kill_case(tmp, py("calibrate", "--device", "cpu", "--smoke", "--out", str(d / "p.yaml")), sig,
                                  d, [d / "p.raw-*", d / "p.yaml"])
            return f

        def validate_kill():
            d = tmp / "val"
            d.mkdir()
            p = d / "cpu.yaml"
            shutil.copy(REPO / "profiles" / "cpu-amd-epyc-2core.yaml", p)
            return _kill_case(tmp, py("validate", "--profile", str(p), "--device", "cpu", "--nproc", "2", "--model",
                                      "tiny", "--quick"), signal.SIGKILL, d, [Path(tempfile.gettempdir()) / "accelcal-validate-*"])

        yield "1 calibrate --smoke: parent SIGTERM during collectives", BOUND_KILL_S, calib(signal.SIGTERM)
        yield "1 calibrate --smoke: parent SIGKILL during collectives", BOUND_KILL_S, calib(signal.SIGKILL)
        yield "1 validate --nproc 2: parent SIGKILL", BOUND_KILL_S, validate_kill

    def listeners():
        proc = start_sweep(tmp / "lst")
        try:
            ranks = wait_for_ranks(proc)
            time.sleep(1.5)
            socks = listening_sockets(ranks)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        bad = [f"{a}:{p}" for a, p in socks if a not in ("127.0.0.1", "::1")]
        return 0.0, f"{len(socks)} listener(s), all loopback" if not bad else f"NOT loopback: {bad}", []

    yield "2 sweep listeners (/proc/net/tcp)", 0.0, listeners

    def port_taken():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            t, m, _ = _run(py("bench", "collectives", "--nproc", "2", "--preset", "smoke", "--port",
                              str(s.getsockname()[1]), "--out", str(tmp / "pt")))
        finally:
            s.close()
        return t, m, [str(p) for p in (tmp / "pt").glob(".collectives-staging-*")]

    yield "2 --port held by another process", BOUND_INPUT_S, port_taken

    def yaml_case(name, text=None, make=None):
        def f():
            p = tmp / f"{name}.yaml"
            if make:
                make(p)
            else:
                p.write_text(text)
            t, m, _ = _run(py("show", str(p)))
            return t, m, []
        return f

    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for n in "bcdefghi":
        bomb += f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = n
    yield "3 alias bomb in schema_version", BOUND_INPUT_S, yaml_case("bomb", bomb + "schema_version: *i\n")
    yield "7 100,000-deep YAML", BOUND_INPUT_S, yaml_case("deep", "[" * 100_000 + "]" * 100_000)
    yield "4 profile -> /dev/zero symlink", BOUND_INPUT_S, yaml_case("zero", make=lambda p: p.symlink_to("/dev/zero"))
    yield "4 profile is a FIFO", BOUND_INPUT_S, yaml_case("fifo", make=lambda p: os.mkfifo(p))
    yield "4 200 MB profile", BOUND_INPUT_S, yaml_case("big", make=lambda p: open(p, "wb").truncate(200 * 2**20))
    yield "4 profile -> shadow-like file (unknown keys)", BOUND_INPUT_S, yaml_case(
        "shadow", "".join(f"user{i}:$6$SECRETHASH{i}:19000:0:99999:7:::\n" for i in range(50)))
    yield "6 duplicate key (trailing compute: {})", BOUND_INPUT_S, yaml_case("dup", prof.read_text() + "compute: {}\n")
    yield "6 bandwidth 1e-30 B/s", BOUND_INPUT_S, yaml_case(
        "tiny", prof.read_text().replace("bandwidth_bytes_per_s: ", "bandwidth_bytes_per_s: 1.0e-30 #", 1))

    def env_zero():
        d = tmp / "fr"
        d.mkdir()
        shutil.copy(CPU_RAW / "collectives-round1.csv", d / "c.csv")
        (d / "c.env.json").symlink_to("/dev/zero")
        t, m, _ = _run(py("calibrate", "--from-results", str(d / "c.csv"), "--out", str(d / "p.yaml")))
        return t, m, [str(p) for p in d.glob("p.yaml*")]

    yield "4 --from-results env.json -> /dev/zero", BOUND_INPUT_S, env_zero

    def ro():
        d = tmp / "ro"
        if not _mount(d, "ro,size=64k"):
            return float("nan"), "skipped: mount unavailable", []
        try:
            return _run(py("bench", "collectives", "--nproc", "2", "--out", str(d / "r")))[:2] + ([],)
        finally:
            subprocess.run(["umount", str(d)])

    def full():
        d = tmp / "full"
        if not _mount(d, "size=64k"):
            return float("nan"), "skipped: mount unavailable", []
        try:
            t, m, _ = _run(py("bench", "kernels", "--device", "cpu", "--out", str(d / "k")))
            return t, m, [str(p) for p in d.iterdir()]
        finally:
            subprocess.run(["umount", str(d)])

    def as_dir():
        d = tmp / "adir"
        d.mkdir()
        t, m, _ = _run(py("calibrate", "--device", "cpu", "--smoke", "--out", str(d)))
        return t, m, [str(p) for p in d.iterdir()] + [str(p) for p in tmp.glob("adir.raw-*")]

    yield "7 read-only --out (bench collectives)", BOUND_INPUT_S, ro
    yield "7 full disk --out (bench kernels, 64 KiB tmpfs)", BOUND_INPUT_S, full
    yield "7 calibrate --out is a directory", 20.0, as_dir
    yield "7 --port 70000", BOUND_INPUT_S, lambda: _run(py("bench", "collectives", "--port", "70000"))[:2] + ([],)

    def pipe():
        cmd = " ".join(py("plan", "--profile", str(prof), "--model", "llama3-8b", "--format", "json"))
        t0 = time.monotonic()
        r = subprocess.run(f"{cmd} | head -1", shell=True, capture_output=True, text=True, cwd=REPO)
        return time.monotonic() - t0, ("Traceback on stderr" if "Traceback" in r.stderr else "no traceback, stdout '{'"), []

    yield "7 plan --format json | head -1", BOUND_INPUT_S, pipe

    def escapes():
        p = tmp / "esc.yaml"
        p.write_text(prof.read_text().replace("name: ", 'name: "evil\\e]0;pwned\\a\\e[2J\\rFAKE" #', 1))
        t0 = time.monotonic()
        r = subprocess.run(py("show", str(p)), capture_output=True, text=True, cwd=REPO)
        raw = any(c in r.stdout for c in "\x1b\x07\r")
        return time.monotonic() - t0, "RAW escapes reached stdout" if raw else "escaped: " + next(
            (ln.strip() for ln in r.stdout.splitlines() if "evil" in ln), "?")[:80], []

    yield "8 OSC/CSI/CR in identity.name (show)", BOUND_INPUT_S, escapes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the calibrate and validate kill cases")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="accelcal-faults-") as tmp:
        for name, bound, fn in cases(Path(tmp), args.quick):
            try:
                took, msg, left = fn()
            except Exception as exc:  # noqa: BLE001 - a failing case is a row, not the end of the table
                took, msg, left = float("nan"), f"CASE FAILED: {type(exc).__name__}: {str(exc)[:100]}", []
            ok = (took <= bound or bound == 0.0) and not left and "CASE FAILED" not in msg and "Traceback" not in msg
            rows.append((name, bound, took, msg.replace("|", "/").replace(tmp, "$TMP"), left, ok))
            print(f"  {name}: {took:.2f} s", file=sys.stderr)
    print("| case | bound (s) | observed (s) | message (last line) | leftovers | ok |")
    print("|---|---|---|---|---|---|")
    for name, bound, took, msg, left, ok in rows:
        b = f"{bound:g}" if bound else "-"
        print(f"| {name} | {b} | {took:.2f} | {msg} | {', '.join(left) or 'none'} | {'yes' if ok else 'NO'} |")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
