"""Fault injection (issue 15): each test injects one fault and asserts the time bound, the message, no leftovers.

    python -m pytest -q tests/test_faults.py            # ~30-40 s on 2 busy cores
    python -m pytest -q tests/test_faults.py -m slow    # + validate --nproc 2 killed mid-run

Numbered as in the issue: 1 parent killed, 2 loopback/ports, 3-4 bounded safe reads, 5/6 plausibility, 7
destinations, 8 terminal escapes, then the smaller items.  A full disk is a 64 KiB tmpfs when `mount` works
(root in a container), else ``shutil.disk_usage`` is monkeypatched; a read-only folder is a read-only tmpfs,
else chmod 0555 (non-root), else skipped (root without mount).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from faults_util import (CPU_RAW, REPO, SAMPLE_PROFILE, accelcal_cmd, children, environ_of, kill_and_measure,
                         leftovers, listening_sockets, start_sweep, wait_for_ranks, wait_gone)

from accelcal.calibrate.profile import Profile, ProfileError
from accelcal.cli import main
from accelcal.safe_io import UnsafeInput, inside, load_json, parse_yaml, read_text

RANKS_GONE_BOUND_S = 5.0
"""Every rank must be gone this soon after the parent ends (the guardian polls every 0.2 s)."""

FAST_S = 1.0
"""Bound for a refused input: well under a second."""


def _profile_dict() -> dict:
    return yaml.safe_load(SAMPLE_PROFILE.read_text())


def _write_profile(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _timed(fn):
    t0 = time.monotonic()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - returned for the caller's assertions
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


# ----------------------------------------------------------------------------- 1. the parent killed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_killing_the_parent_ends_every_rank_and_leaves_nothing(tmp_path, sig):
    out = tmp_path / "d"
    proc = start_sweep(out)
    try:
        took, ranks, env = kill_and_measure(proc, sig, RANKS_GONE_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < RANKS_GONE_BOUND_S
    time.sleep(0.3)  # rank 0's orphan clean-up runs just before it exits
    assert leftovers(out, env) == [], "staging/log folders left behind"
    assert env.get("ACCELCAL_ORPHAN_CLEANUP"), "the rank was not told what to clean up"
    log = (tmp_path / "sweep.log").read_text(errors="replace")
    assert "Traceback" not in log
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert "terminated by SIGTERM" in log
    assert not list(out.glob("*.csv")), "a killed sweep must not leave result files"


# ----------------------------------------------------------------------------- 2. loopback and ports


def test_sweep_listens_on_loopback_only_and_gloo_is_pinned(tmp_path):
    proc = start_sweep(tmp_path / "d")
    try:
        ranks = wait_for_ranks(proc)
        time.sleep(1.5)  # gloo's pair listeners appear once the group is up
        socks = listening_sockets(ranks)
        env = environ_of(ranks[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert socks, "no listening socket seen"
    assert all(addr in ("127.0.0.1", "::1") for addr, _ in socks), f"listeners not on loopback: {socks}"
    assert env.get("GLOO_SOCKET_IFNAME") in ("lo", "lo0")


def test_port_held_by_another_process_is_a_clear_error_within_seconds(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        for how in (["--port", str(port)], []):
            env = {**os.environ, "MASTER_PORT": str(port)} if not how else dict(os.environ)
            env.pop("RANK", None)
            t0 = time.monotonic()
            r = subprocess.run(accelcal_cmd("bench", "collectives", "--nproc", "2", "--preset", "smoke",
                                            "--out", str(tmp_path / "d"), *how),
                               capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
            took = time.monotonic() - t0
            assert r.returncode == 2, r.stderr
            assert f"port {port} taken by another sweep/process" in r.stderr
            assert "Traceback" not in r.stderr
            assert took < 10.0
            assert not list((tmp_path / "d").glob(".collectives-staging-*"))
    finally:
        holder.close()


def test_bad_port_values_are_one_line_errors(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "collectives", "--port", "70000"])
    assert "--port=70000 is not a TCP port (1..65535)" in capsys.readouterr().err



def test_launch_inputs_are_refused_before_any_rank_starts(tmp_path, capsys):
    cores = os.cpu_count() or 1
    too_many = 8 * cores + 1
    for argv in (["bench", "collectives", "--nproc", str(too_many)],
                 ["bench", "collectives", "--device-type", "nonsense"],
                 ["bench", "collectives", "--backend", "nccl"]):
        out = tmp_path / "never"
        assert main([*argv, "--preset", "smoke", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "sweep failed" not in err, err  # bad input, not a failed measurement
        assert not out.exists()  # no empty --out folder left behind
    assert main(["validate", "--profile", str(SAMPLE_PROFILE), "--device", "cpu", "--nproc", str(too_many),
                 "--quick"]) == 2
    assert f"--nproc {too_many}: more than 8 ranks per CPU core" in capsys.readouterr().err
    t0 = time.monotonic()
    assert main(["calibrate", "--smoke", "--nproc", str(too_many), "--out", str(tmp_path / "p.yaml")]) == 2
    assert f"--nproc {too_many}: more than 8 ranks per CPU core" in capsys.readouterr().err
    assert time.monotonic() - t0 < 30 and not (tmp_path / "p.yaml").exists()  # refused before the kernel suite


def test_sizes_errors_name_every_bad_value(capsys):
    assert main(["bench", "collectives", "--sizes", "0,-8,64", "--nproc", "2"]) == 2
    assert "--sizes '0,-8,64': byte counts must be >= 1, got 0, -8" in capsys.readouterr().err


def test_a_swallowed_termination_is_raised_again_by_the_launch_loops(monkeypatch):
    from accelcal import guardian

    monkeypatch.setattr(guardian, "_pending", None)
    guardian.raise_if_terminated()  # nothing pending: no-op
    monkeypatch.setattr(guardian, "_pending", int(signal.SIGTERM))
    with pytest.raises(guardian.Terminated) as exc:
        guardian.raise_if_terminated()
    assert exc.value.signum == signal.SIGTERM
    # a later command in the same process (accelcal.cli.main installs the handler again) starts clean
    old_term = signal.getsignal(signal.SIGTERM)
    old_hup = signal.getsignal(signal.SIGHUP)
    try:
        assert guardian.install_termination_handler()
        guardian.raise_if_terminated()
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)

@pytest.mark.slow
def test_orphan_cleanup_takes_calibrates_staging_folder_and_nothing_it_did_not_name(tmp_path):
    import tempfile

    from accelcal import guardian

    raw = tmp_path / "p-raw"
    raw.mkdir()
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=raw))  # as calibrate stages a run (calibrate/cli.py)
    (staging / "kernels.csv").write_text("x\n")
    other = raw / "kernels.csv"
    other.write_text("earlier run\n")
    guardian._cleanup([str(staging), str(raw), str(other)])
    assert not staging.exists() and other.read_text() == "earlier run\n" and raw.is_dir()


def test_validate_ranks_listen_on_loopback_and_die_with_the_parent(tmp_path):
    code = f"""
import sys; sys.path.insert(0, {str(REPO / 'tests')!r})
from accelcal.validate.configs import Case
from accelcal.validate.layers import LayerDims
from accelcal.validate.tp_worker import run_rank_cases
dims = LayerDims(hidden_size=256, heads=8, kv_heads=4, head_dim=32, ffn_size=768)
run_rank_cases([Case("tiny", "decode", 8, 1, 512, tp=2)] * 1, {{"tiny": dims}}, nproc=2, preset="full")
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kids = wait_for_ranks(proc, n=2, timeout_s=90)
        # Read the socket table at once, while the rendezvous listens (it may close once the ranks have met;
        # on a loaded machine a fixed sleep can miss it): every listener of the run must be on loopback.
        socks = listening_sockets(kids + [proc.pid])
        assert socks and all(a == "127.0.0.1" for a, _ in socks), socks
        ranks = [p for p in kids if "spawn" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_gone(ranks, RANKS_GONE_BOUND_S) < RANKS_GONE_BOUND_S
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- 3-4. bounded, safe reads


def _alias_bomb(key: str) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text + f"{key}: *i\n"


@pytest.mark.parametrize("key", ["schema_version", "identity"])
def test_alias_bomb_fails_fast(tmp_path, key):
    p = tmp_path / "bomb.yaml"
    p.write_text(_alias_bomb(key))
    took, exc = _timed(lambda: Profile.load(p))
    assert isinstance(exc, ProfileError)
    assert "alias" in str(exc) and str(p) in str(exc)
    assert len(str(exc)) < 300, "the error must not repr the expanded value"
    assert took < FAST_S


def test_deep_nesting_is_a_clear_error(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("[" * 100_000 + "]" * 100_000)
    took, exc = _timed(lambda: Profile.load(p))
    assert isinstance(exc, ProfileError) and "nested deeper than" in str(exc)
    assert took < 2.0
    j = tmp_path / "deep.json"
    j.write_text("[" * 100_000 + "]" * 100_000)
    took, exc = _timed(lambda: load_json(j))
    assert isinstance(exc, UnsafeInput) and "nested deeper than" in str(exc) and took < FAST_S


def test_symlink_to_dev_zero_and_fifo_are_refused(tmp_path):
    z = tmp_path / "zero.yaml"
    z.symlink_to("/dev/zero")
    took, exc = _timed(lambda: Profile.load(z))
    assert isinstance(exc, ProfileError) and "a device file" in str(exc) and "/dev/zero" in str(exc)
    assert took < FAST_S
    f = tmp_path / "fifo.yaml"
    os.mkfifo(f)
    took, exc = _timed(lambda: Profile.load(f))  # would block forever on open() without the check
    assert isinstance(exc, ProfileError) and "a FIFO" in str(exc) and took < FAST_S


def test_size_cap(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(200 * 2**20)  # sparse: 200 MB of zeros, no disk used
    took, exc = _timed(lambda: Profile.load(big))
    assert isinstance(exc, ProfileError) and "larger than the" in str(exc) and "limit" in str(exc)
    assert took < FAST_S


def test_wrong_file_never_printed_in_the_error(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("".join(f"user{i}:$6$SECRETHASH{i}:19000:0:99999:7:::\n" for i in range(50)))
    link = tmp_path / "profile.yaml"
    link.symlink_to(secret)
    _, exc = _timed(lambda: Profile.load(link))
    assert isinstance(exc, ProfileError)
    assert "SECRETHASH1" not in str(exc) and len(str(exc)) < 600
    keyed = tmp_path / "keys.yaml"
    keyed.write_text("".join(f"secret_line_{i}_{'x' * 50}: {i}\n" for i in range(200)))
    _, exc = _timed(lambda: Profile.load(keyed))
    assert "unknown key(s)" in str(exc) and "secret_line_199" not in str(exc) and len(str(exc)) < 700


def test_duplicate_keys_rejected_naming_key_and_line(tmp_path):
    text = SAMPLE_PROFILE.read_text() + "compute: {}\n"
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    took, exc = _timed(lambda: Profile.load(p))
    assert isinstance(exc, ProfileError)
    assert "duplicate key 'compute'" in str(exc) and f"line {text.count(chr(10))}" in str(exc)
    assert took < FAST_S


def test_raw_data_paths_stay_inside_the_profile_folder(tmp_path):
    with pytest.raises(UnsafeInput, match="points outside"):
        inside(tmp_path, "../../etc/passwd.csv", "raw_data entry")
    from accelcal.calibrate.plot import _raw

    d = _profile_dict()
    d["identity"]["raw_data"] = ["../outside.csv"]
    (tmp_path / "sub").mkdir()
    p = _write_profile(tmp_path / "sub" / "p.yaml", d)
    (tmp_path / "outside.csv").write_text("suite\nx\n")
    with pytest.raises(UnsafeInput, match="points outside"):
        _raw(Profile.load(p), p, [])


@pytest.mark.parametrize("env_kind", ["dev_zero", "json_list"])
def test_from_results_with_a_bad_env_json_is_one_line(tmp_path, capsys, env_kind):
    csv = tmp_path / "collectives.csv"
    shutil.copy(CPU_RAW / "collectives-round1.csv", csv)
    envp = tmp_path / "collectives.env.json"
    if env_kind == "dev_zero":
        envp.symlink_to("/dev/zero")
    else:
        envp.write_text("[1, 2, 3]")
    t0 = time.monotonic()
    rc = main(["calibrate", "--from-results", str(csv), "--out", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 5.0
    assert len(err.strip().splitlines()) == 1 and str(envp) in err
    assert ("a device file" in err) if env_kind == "dev_zero" else ("expected a mapping" in err)
    assert not (tmp_path / "p.yaml").exists()


# ----------------------------------------------------------------------------- 5/6. plausibility, inf/NaN


@pytest.mark.parametrize("where,value,key", [
    (("memory", "copy", "bandwidth_bytes_per_s"), 1e-30, "memory.copy.bandwidth_bytes_per_s"),
    # a device memory's 3065 GB/s written as B/s: within a collective piece's floor (1 kB/s), not a memory's
    (("memory", "copy", "bandwidth_bytes_per_s"), 3065.0, "memory.copy.bandwidth_bytes_per_s"),
    (("identity", "memory_capacity_bytes"), 1, "identity.memory_capacity_bytes"),
])
def test_tiny_values_are_refused_naming_the_key(tmp_path, where, value, key):
    d = _profile_dict()
    node = d
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    p = _write_profile(tmp_path / "tiny.yaml", d)
    took, exc = _timed(lambda: Profile.load(p))
    assert isinstance(exc, ProfileError) and key in str(exc) and "below the plausible floor" in str(exc)
    assert took < FAST_S


def test_tiny_flops_refused(tmp_path):
    d = _profile_dict()
    dt = next(iter(d["compute"]))
    d["compute"][dt]["peak_flop_per_s"] = 1e-300
    p = _write_profile(tmp_path / "f.yaml", d)
    with pytest.raises(ProfileError, match=rf"compute\.{dt}\.peak_flop_per_s: 1e-300 is below the plausible floor"):
        Profile.load(p)


def test_plan_json_never_carries_inf_or_nan():
    from accelcal.safe_io import dumps_finite

    with pytest.raises(ValueError, match=r"non-finite number at \.best\.ttft_s = inf"):
        dumps_finite({"best": {"ttft_s": math.inf}}, what="the plan")
    assert json.loads(dumps_finite({"a": [1.0, 2]})) == {"a": [1.0, 2]}


def test_compare_flags_a_non_finite_or_1000x_change():
    from accelcal.calibrate.compare import Change, format_changes

    rows = [Change("memory copy time at 1e+06 bytes", 1e-3, math.inf, math.inf, 0.05, True, "", "memory copy"),
            Change("gemm bf16 time", 1.0, 1e-7, 1e-7 - 1.0, 0.05, True, "", "gemm bf16")]
    text = format_changes(rows)
    assert text.count("IMPLAUSIBLE") == 2 and "no change beyond" not in text


# ----------------------------------------------------------------------------- 7. destinations


def _mount_tmpfs(path: Path, opts: str) -> bool:
    path.mkdir(exist_ok=True)
    if shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path):
    d = tmp_path / "ro"
    if _mount_tmpfs(d, "ro,size=64k"):
        yield d
        _umount(d)
        return
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    pytest.skip("root without mount: no way to make a read-only folder")


@pytest.fixture
def full_dir(tmp_path, monkeypatch):
    d = tmp_path / "full"
    if _mount_tmpfs(d, "size=64k"):
        yield d
        _umount(d)
        return
    d.mkdir()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=32 * 1024) if str(p).startswith(str(d)) else real(p))
    yield d


def test_read_only_destinations_fail_before_measuring(readonly_dir, capsys):
    for argv in (["bench", "collectives", "--nproc", "2", "--out", str(readonly_dir / "r")],
                 ["plan", "--profile", str(SAMPLE_PROFILE), "--model", "llama3-8b", "--export-dir", str(readonly_dir / "x")]):
        t0 = time.monotonic()
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and time.monotonic() - t0 < 5.0, err
        assert "cannot write in" in err and str(readonly_dir) in err and "Traceback" not in err


def test_full_disk_fails_before_measuring(full_dir, capsys):
    t0 = time.monotonic()
    rc = main(["bench", "collectives", "--nproc", "2", "--out", str(full_dir / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 5.0
    assert "MiB free" in err and "needed" in err
    assert not (full_dir / "r").exists()


def test_directory_as_out_fails_before_measuring(tmp_path, capsys):
    d = tmp_path / "adir"
    d.mkdir()
    t0 = time.monotonic()
    rc = main(["calibrate", "--device", "cpu", "--smoke", "--out", str(d)])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 20.0  # torch import included; no measuring
    assert f"--out {d} is a folder" in err
    assert list(tmp_path.iterdir()) == [d] and not list(d.iterdir()), "nothing may be created"


def test_file_where_a_folder_is_meant(tmp_path, capsys):
    f = tmp_path / "results"
    f.write_text("x")
    assert main(["bench", "collectives", "--nproc", "2", "--out", str(f)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_broken_pipe_is_quiet(tmp_path):
    cmd = " ".join(accelcal_cmd("plan", "--profile", str(SAMPLE_PROFILE), "--model", "llama3-8b", "--format", "json"))
    r = subprocess.run(f"{cmd} | head -c 1", shell=True, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout == "{"
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


# ----------------------------------------------------------------------------- 8. terminal escapes


def test_control_characters_in_profile_strings_are_escaped(tmp_path, capsys):
    d = _profile_dict()
    d["identity"]["name"] = "evil\x1b]0;pwned\x07\x1b[2J\rFAKE LINE\x00"
    d["identity"]["device_name"] = "gpu\x1b[31mred\x9b"
    p = _write_profile(tmp_path / "esc.yaml", d)
    for argv in (["show", str(p)], ["plan", "--profile", str(p), "--model", "llama3-8b"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\r\x00\x9b"), argv
        assert "\\x1b" in out


# ----------------------------------------------------------------------------- smaller items


def test_worker_refuses_a_stem_with_a_folder(tmp_path):
    from accelcal.collectives.options import SweepOptions

    with pytest.raises(ValueError, match="plain file name stem"):
        SweepOptions(stem="../x", out_dir=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    r = subprocess.run([sys.executable, "-m", "accelcal.collectives.worker", "--stem", "../x", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "plain file name stem" in r.stderr


def test_secret_scrub_covers_passwd_auth_cred(monkeypatch):
    from accelcal.kernels.environment import _relevant_env

    for k in ("NCCL_IB_PASSWD", "NCCL_X_AUTH", "NCCL_MY_CRED", "NCCL_TOKEN", "GLOO_key", "NCCL_PASSPHRASE"):
        monkeypatch.setenv(k, "hunter2")
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    env = _relevant_env()
    assert "hunter2" not in env.values() and env.get("NCCL_DEBUG") == "INFO"


def test_planner_search_is_bounded():
    from accelcal.models import ModelConfig
    from accelcal.planner.search import count_layouts

    m = ModelConfig.resolve("llama3-8b")
    t0 = time.monotonic()
    n = count_layouts(m, 16384 * 8, 8)
    assert time.monotonic() - t0 < 5.0 and 0 < n < 10_000
    r = subprocess.run(accelcal_cmd("plan", "--profile", str(SAMPLE_PROFILE), "--model", "llama3-8b",
                                    "--nodes", "16384", "--max-layouts", "10"),
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "layouts to cost, above the limit of 10" in r.stderr


def test_safe_reads_accept_real_files():
    assert Profile.load(SAMPLE_PROFILE).identity.name
    assert parse_yaml("a: [1, {b: c}]\n") == {"a": [1, {"b": "c"}]}
    assert isinstance(load_json(CPU_RAW / "collectives-round1.env.json", expect=dict), dict)
    assert read_text(SAMPLE_PROFILE, max_bytes=10**7).startswith(SAMPLE_PROFILE.read_text()[:20])
