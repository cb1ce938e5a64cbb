"""Measure a serving benchmark client's closed-loop "client gap" against a mock OpenAI server.

    $ python benchmarks/client_gap.py --concurrency 8 --skip 16 -- aiperf profile -m mock --endpoint-type chat \
        --streaming -u {url} --tokenizer TOKDIR --isl 1024 --isl-stddev 0 --osl 128 --osl-stddev 0 \
        --extra-inputs ignore_eos:true --concurrency 8 --request-count 160 --warmup-request-count 16 --ui none

The client gap is the time from the moment the server has written a streamed response's final chunk
(``data: [DONE]``) to the moment the client's next request, the one that takes over that concurrency slot,
arrives at the server.  It lies outside every per-request metric (TTFT starts at the client's send), but in a
closed loop it delays each slot's next arrival and so changes how arrivals cluster into batches; the serving
simulator models it as ``client_gap_s`` (planner/serving/simulate.py; ``accelcal predict --client-gap-ms``).
This script serves a stdlib mock (fixed --ttft-ms then max_tokens chunks " the" every --itl-ms), runs the
client command with ``{url}`` / ``{port}`` substituted, and pairs each arrival after the opening burst with
the earliest unpaired earlier completion (FIFO).  Use --skip W for a warm-up of W requests that the client
drains before its measured phase (aiperf --warmup-request-count W).  The client's own stdout goes to stderr
(or --client-log) so this script's stdout holds only the report.  Exit status: the client's.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from accelcal.atomic import atomic_write_text

DONE = b"data: [DONE]\n\n"
FIELDS = ("arrival_s", "first_chunk_s", "done_s", "path", "max_tokens", "prompt_chars", "x_request_id")


def _prompt_chars(body: dict) -> int:
    if "messages" in body:
        parts = [m.get("content", "") for m in body["messages"] if isinstance(m, dict)]
        parts = [p if isinstance(p, str) else " ".join(c.get("text", "") for c in p if isinstance(c, dict))
                 for p in parts]
    else:
        parts = body.get("prompt", "")
        parts = [parts] if isinstance(parts, str) else [p for p in parts if isinstance(p, str)]
    return sum(len(p) for p in parts)


def make_server(port: int, ttft_ms: float, itl_ms: float, model_name: str = "mock"):
    """(server, records): a ThreadingHTTPServer on 127.0.0.1 (not yet serving) and the list it appends to."""
    records: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive + chunked: what aiohttp-based clients handle best
        disable_nagle_algorithm = True  # small SSE writes must not wait for a delayed ACK

        def log_message(self, *args):
            pass

        def _json(self, obj: dict, status: int = 200):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._json({"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                                        "owned_by": "client_gap"}]})
            else:
                self._json({"error": {"message": f"no route {self.path}"}}, 404)

        def do_POST(self):
            arrival_s = time.monotonic()  # headers parsed, body not read: as close to arrival as stdlib allows
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            chat = self.path.rstrip("/") == "/v1/chat/completions"
            if not chat and self.path.rstrip("/") != "/v1/completions":
                return self._json({"error": {"message": f"no route {self.path}"}}, 404)
            n_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
            chars = _prompt_chars(body)
            # No tokenizer here: ~4 characters a token (aiperf may warn of a usage mismatch; timing is unaffected).
            usage = {"prompt_tokens": chars // 4, "completion_tokens": n_tokens, "total_tokens": chars // 4 + n_tokens}
            head = {"id": "cmpl-%d" % id(self), "created": int(time.time()), "model": body.get("model", model_name)}
            start_s = time.monotonic() + ttft_ms / 1e3
            rec = dict(arrival_s=arrival_s, first_chunk_s=None, done_s=None, path=self.path, max_tokens=n_tokens,
                       prompt_chars=chars, x_request_id=self.headers.get("X-Request-ID", ""))
            try:  # a client that hangs up mid-stream still leaves a record (done_s None)
                if not body.get("stream"):
                    time.sleep(max(0.0, start_s + (n_tokens - 1) * itl_ms / 1e3 - time.monotonic()))
                    text = " the" * n_tokens
                    choice = {"index": 0, "finish_reason": "length",
                              **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
                    self._json({**head, "object": "chat.completion" if chat else "text_completion",
                                "choices": [choice], "usage": usage})
                    rec["first_chunk_s"] = rec["done_s"] = time.monotonic()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    obj = "chat.completion.chunk" if chat else "text_completion"

                    def send(payload: bytes):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                        self.wfile.flush()

                    def event(choices: list, **extra) -> bytes:
                        data = json.dumps({**head, "object": obj, "choices": choices, **extra})
                        return b"data: %s\n\n" % data.encode()

                    for i in range(n_tokens):
                        # An absolute schedule, so the write times do not drift with the handler's own cost.
                        time.sleep(max(0.0, start_s + i * itl_ms / 1e3 - time.monotonic()))
                        delta = {"content": " the", **({"role": "assistant"} if i == 0 else {})}
                        last = i == n_tokens - 1
                        choice = {"index": 0, "logprobs": None, "finish_reason": "length" if last else None,
                                  **({"delta": delta} if chat else {"text": " the"})}
                        send(event([choice]))
                        if i == 0:
                            rec["first_chunk_s"] = time.monotonic()
                    send(event([], usage=usage))
                    # [DONE] and the terminating zero-length chunk in one write: when it returns, the response is out.
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(DONE), DONE))
                    self.wfile.flush()
                    rec["done_s"] = time.monotonic()
            finally:
                with lock:
                    records.append(rec)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # a client opening many connections at once must not hit the default backlog of 5

    return Server(("127.0.0.1", port), Handler), records


def gap_pairs(records: list[dict], concurrency: int, skip: int = 0) -> tuple[list[float], int]:
    """(gaps in s, number of unpaired arrivals): see client_gaps."""
    measured = sorted(records, key=lambda r: r["arrival_s"])[skip:]
    done_s = sorted(r["done_s"] for r in measured if r["done_s"] is not None)
    gaps_s, unpaired, next_done = [], 0, 0
    for r in measured[concurrency:]:
        # FIFO: the earliest unpaired completion is done_s[next_done]; if it is later than this arrival, all are.
        if next_done < len(done_s) and done_s[next_done] <= r["arrival_s"]:
            gaps_s.append(r["arrival_s"] - done_s[next_done])
            next_done += 1
        else:
            unpaired += 1
    return gaps_s, unpaired


def client_gaps(records: list[dict], concurrency: int, skip: int = 0) -> list[float]:
    """Closed-loop gaps (s): arrival - the earliest unpaired earlier completion, after the first ``skip`` arrivals
    (a separate warm-up phase) and the next ``concurrency`` (the opening burst).  Records need arrival_s, done_s."""
    return gap_pairs(records, concurrency, skip)[0]


def _bounded(kind, low: float, what: str):
    def parse(text: str):
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="client_gap.py", description=__doc__.split("\n\n")[0],
                                usage="%(prog)s [options] --concurrency C -- CLIENT COMMAND ...")
    p.add_argument("--port", type=_bounded(int, 0, ">= 0"), default=0, help="0: a free port")
    p.add_argument("--ttft-ms", type=_bounded(float, 0, ">= 0"), default=50.0)
    p.add_argument("--itl-ms", type=_bounded(float, 0, ">= 0"), default=10.0)
    p.add_argument("--model-name", default="mock")
    p.add_argument("--concurrency", type=_bounded(int, 1, ">= 1"), required=True, help="the client's concurrency")
    p.add_argument("--skip", type=_bounded(int, 0, ">= 0"), default=0, help="warm-up requests drained first")
    p.add_argument("--csv", help="write the per-request records here")
    p.add_argument("--client-log", help="the client's stdout and stderr go here (default: this script's stderr)")
    p.add_argument("--timeout-s", type=_bounded(float, 1e-3, "> 0"), default=1800.0)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser()
    args = parser.parse_args(argv[:split])
    client = argv[split + 1:]
    if not client:
        parser.error("the client command (after --) is required")
    print("$ " + shlex.join([os.path.basename(sys.executable), os.path.relpath(__file__), *argv]))
    print("# " + datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    server, records = make_server(args.port, args.ttft_ms, args.itl_ms, args.model_name)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}"
    command = [a.replace("{url}", url).replace("{port}", str(port)) for a in client]
    print(f"server: {url}  ttft {args.ttft_ms:g} ms  itl {args.itl_ms:g} ms  model {args.model_name}")
    print("client: " + shlex.join(command), flush=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    log = open(args.client_log, "w") if args.client_log else None
    try:
        # Its own session, so a timeout can stop the client's worker processes too.
        proc = subprocess.Popen(command, stdout=log or 2, stderr=log or None, start_new_session=True)
    except OSError as e:
        server.shutdown()
        print(f"client_gap: cannot start the client: {e}", file=sys.stderr)
        print("# exit 127")
        return 127
    try:
        rc = proc.wait(timeout=args.timeout_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
        why = f"timeout after {args.timeout_s:g} s" if isinstance(e, subprocess.TimeoutExpired) else "interrupted"
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"client_gap: client stopped ({why})", file=sys.stderr)
        rc = 124
    server.shutdown()
    server.server_close()
    if log:
        log.close()
    rc = 128 - rc if rc < 0 else rc  # killed by a signal: the shell's convention
    if rc:
        print(f"client_gap: the client exited with status {rc}; reporting what was recorded", file=sys.stderr)
    recs = list(records)
    gaps_s, unpaired = gap_pairs(recs, args.concurrency, args.skip)
    print(f"requests seen: {len(recs)}  skipped phase: {min(args.skip, len(recs))}  opening burst: "
          f"{min(args.concurrency, max(0, len(recs) - args.skip))}  gap samples: {len(gaps_s)}  unpaired: {unpaired}")
    if gaps_s:
        ms = [g * 1e3 for g in gaps_s]
        print(f"client gap ms: min {min(ms):.2f}  median {np.percentile(ms, 50):.2f}  mean {sum(ms) / len(ms):.2f}  "
              f"p90 {np.percentile(ms, 90):.2f}  p99 {np.percentile(ms, 99):.2f}  max {max(ms):.2f}")
    else:
        print("client gap ms: no samples")
    ttft_ms = [(r["first_chunk_s"] - r["arrival_s"]) * 1e3 for r in recs if r["first_chunk_s"] is not None]
    if ttft_ms:
        print(f"server ttft ms (handler entry -> first chunk written): mean {sum(ttft_ms) / len(ttft_ms):.2f} "
              f"(set {args.ttft_ms:g})")
    if args.csv:
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(sorted(recs, key=lambda r: r["arrival_s"]))
        atomic_write_text(args.csv, buf.getvalue())  # an interrupted write leaves no half file
        print(f"records: {args.csv}")
    print(f"# exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
