"""benchmarks/client_gap.py: the closed-loop pairing, the mock server's wire format, and a run with a tiny client."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "client_gap.py"


def _load():
    spec = importlib.util.spec_from_file_location("client_gap", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cg = _load()


def _rec(arrival_s, done_s):
    return {"arrival_s": arrival_s, "done_s": done_s}


def test_closed_loop_of_two_recovers_the_known_gaps():
    # Slot A: 0 -> 1.0, gap 0.03, 1.03 -> 2.0, gap 0.01; slot B: 0 -> 1.5, gap 0.07, 1.57 -> 2.6.
    recs = [_rec(2.01, 3.0), _rec(0.0, 1.0), _rec(1.57, 2.6), _rec(0.0, 1.5), _rec(1.03, 2.0)]
    assert cg.client_gaps(recs, 2) == pytest.approx([0.03, 0.07, 0.01])
    assert cg.gap_pairs(recs, 2) == (pytest.approx([0.03, 0.07, 0.01]), 0)


def test_skip_excludes_a_warm_up_phase_drained_before_the_measured_one():
    warm = [_rec(0.0, 0.5), _rec(0.0, 0.6)]
    measured = [_rec(0.7, 1.0), _rec(0.7, 1.2), _rec(1.02, 2.0), _rec(1.25, 2.1)]
    assert cg.client_gaps(warm + measured, 2, skip=2) == pytest.approx([0.02, 0.05])
    # Without the skip the measured phase's opening burst is paired with the warm-up's completions.
    assert cg.client_gaps(warm + measured, 2) == pytest.approx([0.2, 0.1, 0.02, 0.05])


def test_an_arrival_with_nothing_completed_before_it_is_unpaired():
    recs = [_rec(0.0, 1.0), _rec(0.5, 2.0), _rec(1.1, None), _rec(1.2, 3.0)]
    assert cg.gap_pairs(recs, 1) == (pytest.approx([0.1]), 2)


def test_mock_server_streams_openai_chunks_with_usage_then_done():
    server, records = cg.make_server(0, ttft_ms=1, itl_ms=1, model_name="m")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        models = json.load(urllib.request.urlopen(url + "/v1/models", timeout=5))
        assert [m["id"] for m in models["data"]] == ["m"]
        body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_completion_tokens": 3,
                "stream": True}
        req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "X-Request-ID": "r1"})
        lines = [ln for ln in urllib.request.urlopen(req, timeout=5).read().decode().split("\n\n") if ln]
        assert lines[-1] == "data: [DONE]"
        events = [json.loads(ln[len("data: "):]) for ln in lines[:-1]]
        assert "".join(e["choices"][0]["delta"]["content"] for e in events[:-1]) == " the the the"
        assert events[-1]["usage"]["completion_tokens"] == 3
        plain = {"model": "m", "prompt": "hi", "max_tokens": 2}
        reply = json.load(urllib.request.urlopen(urllib.request.Request(
            url + "/v1/completions", json.dumps(plain).encode(), {"Content-Type": "application/json"}), timeout=5))
        assert reply["choices"][0]["text"] == " the the" and reply["usage"]["total_tokens"] == 2
    finally:
        server.shutdown()
        server.server_close()
    # Each handler thread appends its record after the response is out, so the list is in completion order: the
    # client can send the second request before the first thread appends. The tool reads records by arrival.
    by_arrival = sorted(records, key=lambda r: r["arrival_s"])
    assert [(r["max_tokens"], r["prompt_chars"], r["x_request_id"]) for r in by_arrival] == [(3, 5, "r1"), (2, 2, "")]
    assert all(r["arrival_s"] < r["first_chunk_s"] <= r["done_s"] for r in records)


CLIENT = textwrap.dedent("""
    import json, sys, threading, time, urllib.request
    url = sys.argv[1]
    def worker():
        for _ in range(6):
            body = json.dumps({"model": "mock", "prompt": "x" * 40, "max_tokens": 3, "stream": True}).encode()
            req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                for line in resp:
                    if line.strip() == b"data: [DONE]":
                        break
            time.sleep(0.05)
    threads = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
""")


def test_end_to_end_with_a_closed_loop_client(tmp_path):
    csv_path, client = tmp_path / "records.csv", tmp_path / "client.py"
    client.write_text(CLIENT)  # a file, not -c: a multi-line argument would split the one-line command header
    out = subprocess.run([sys.executable, str(SCRIPT), "--concurrency", "2", "--ttft-ms", "5", "--itl-ms", "2",
                          "--csv", str(csv_path), "--timeout-s", "60", "--", sys.executable, str(client), "{url}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("$ ") and "--concurrency 2" in lines[0] and lines[1].startswith("# ")
    assert lines[-1] == "# exit 0"
    assert "requests seen: 12" in out.stdout and "gap samples: 10  unpaired: 0" in out.stdout
    median_ms = float(out.stdout.split("client gap ms:")[1].split("median")[1].split()[0])
    assert 50.0 <= median_ms <= 90.0, out.stdout
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 13 and rows[0].startswith("arrival_s,")
    gaps_s = cg.client_gaps([{"arrival_s": float(r.split(",")[0]), "done_s": float(r.split(",")[2])}
                             for r in rows[1:]], 2)
    assert 0.05 <= statistics.median(gaps_s) <= 0.09


def test_client_failure_is_reported_with_its_status():
    out = subprocess.run([sys.executable, str(SCRIPT), "--concurrency", "1", "--", sys.executable, "-c",
                          "import sys; sys.exit(3)"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "status 3" in out.stderr
    assert "requests seen: 0" in out.stdout and out.stdout.splitlines()[-1] == "# exit 3"


@pytest.mark.parametrize("args, name", [(["--concurrency", "0", "--", "true"], "--concurrency"),
                                        (["--concurrency", "1", "--itl-ms", "-1", "--", "true"], "--itl-ms"),
                                        (["--concurrency", "1"], "client command")])
def test_bad_input_exits_2_naming_the_argument(args, name):
    out = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and name in out.stderr, out.stderr
