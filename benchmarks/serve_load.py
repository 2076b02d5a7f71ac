"""Load on ``charrnn serve`` over loopback: concurrent streaming clients against one model.

    python benchmarks/serve_load.py [--run DIR] [--clients 1 8 32] [--duration 30]
                                    [--modes batch no-batch] [--max-tokens 200] [--threads 1]

The model is a 2x256 LSTM trained on tinyshakespeare for 300 steps (trained into --run
the first time, about 5 minutes on one thread; any language-model run can be given).
For each serving mode (``batch``: continuous batching, the default; ``no-batch``: each
request on its own, taking turns) a server is started in a subprocess on 127.0.0.1; then
for each client count, that many asyncio + httpx clients each send streaming completions
one after another (prompt "ROMEO:", max_tokens tokens, temperature 0.8) for --duration
seconds, and finish the request they are in. Printed per row: requests completed,
errors, aggregate tokens/s (completion tokens of all requests over the wall time), the
mean per-client tokens/s, and p50/p99 time to first token (request sent to the first
chunk with text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

START = re.compile(r"at http://127\.0\.0\.1:(\d+)/")
DEFAULT_RUN = Path("/work/bench/serve/lm256")


def ensure_run(run: Path) -> None:
    if (run / "best.safetensors").is_file():
        return
    print(f"training {run} (2x256 LSTM, 300 steps on tinyshakespeare) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "charrnn", "train", "tinyshakespeare", "--hidden-size", "256", "--layers",
                    "2", "--max-steps", "300", "--threads", "1", "--out", str(run), "--quiet"], check=True)


def start_server(run: Path, batch: bool, threads: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "charrnn", "serve", f"lm={run}", "--port", "0", "--threads", str(threads),
           "--device", "cpu", "--max-rows", "1024", "--batch" if batch else "--no-batch"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = START.search(line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    url = f"http://127.0.0.1:{m.group(1)}"
    for _ in range(600):
        try:
            httpx.get(url + "/v1/models", timeout=5)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the server never answered")


async def one_request(client: httpx.AsyncClient, url: str, max_tokens: int) -> tuple[float | None, int]:
    """Stream one completion; return (seconds to the first text, completion tokens)."""
    body = {"model": "lm", "prompt": "ROMEO:", "max_tokens": max_tokens, "temperature": 0.8, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, tokens = None, None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if ttft is None and any(c["text"] for c in chunk["choices"]):
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    if tokens is None:
        raise RuntimeError("the stream ended without usage")
    return ttft, tokens


async def load(url: str, clients: int, duration: float, max_tokens: int) -> dict:
    ttfts: list[float] = []
    per_client = [0] * clients
    done = [0]
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()

        async def worker(k: int) -> None:
            while time.perf_counter() - t0 < duration:
                try:
                    ttft, tokens = await one_request(client, url, max_tokens)
                except Exception as e:  # noqa: BLE001 - counted and shown
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                done[0] += 1
                per_client[k] += tokens
                if ttft is not None:
                    ttfts.append(ttft)

        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    ttfts.sort()
    q = (lambda p: ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else float("nan"))
    return {"clients": clients, "requests": done[0], "errors": len(errors), "first_error": errors[0] if errors else "",
            "wall": wall, "tokens_per_sec": sum(per_client) / wall,
            "per_client": statistics.mean(t / wall for t in per_client), "ttft_p50": q(0.50), "ttft_p99": q(0.99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--modes", nargs="+", choices=["batch", "no-batch"], default=["batch", "no-batch"])
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    ensure_run(args.run)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# charrnn serve under load: {cpu}, {os.cpu_count()} CPUs, server --threads {args.threads}, "
          f"{args.max_tokens} tokens a request, {args.duration:g} s per row")
    print("| mode | clients | requests | errors | tokens/s (all) | tokens/s per client | TTFT p50 | TTFT p99 |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    for mode in args.modes:
        proc, url = start_server(args.run, mode == "batch", args.threads)
        try:
            asyncio.run(load(url, 1, 2.0, 50))  # warm-up
            for n in args.clients:
                r = asyncio.run(load(url, n, args.duration, args.max_tokens))
                rows[mode, n] = r
                print(f"| {mode} | {n} | {r['requests']} | {r['errors']} | {r['tokens_per_sec']:,.0f} | "
                      f"{r['per_client']:,.1f} | {1000 * r['ttft_p50']:,.0f} ms | {1000 * r['ttft_p99']:,.0f} ms |",
                      flush=True)
                if r["errors"]:
                    print(f"  first error: {r['first_error']}", flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if {"batch", "no-batch"} <= set(args.modes):
        print()
        for n in args.clients:
            b, s = rows["batch", n], rows["no-batch", n]
            print(f"{n} clients: batching serves {b['tokens_per_sec'] / s['tokens_per_sec']:.2f}x the tokens/s of "
                  f"one by one; TTFT p50 {1000 * b['ttft_p50']:,.0f} vs {1000 * s['ttft_p50']:,.0f} ms")


if __name__ == "__main__":
    main()
