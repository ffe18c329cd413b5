"""Throughput of the local llama.cpp server under 1, 2 and 4 concurrent clients.

Protocol. The script starts its own llama.cpp server (``llama-cpp-python[server]``) for the local
model (SmolLM2-135M-Instruct by default; ``--model`` takes a preset or a ``.gguf`` path) on a free
loopback port, with the kit's settings (``--n_threads 1``, 4,096-token context; ``--threads``
changes the thread count). It warms the server up with two requests, then, for each concurrency
level ``c``, sends the same ``--requests`` chat requests (a fixed cycle of 8 short movie prompts,
``temperature=0``, ``max_tokens`` 48) from ``c`` client threads over plain HTTP (no kit cache,
no retries). It does so in ``--rounds`` rounds (3), reversing the order of the levels every other
round so that a change in the machine's load falls on every level; a row sums its rounds. It
measures:

* requests per wall second and completion tokens per wall second (tokens as the server counts
  them);
* the p50 and p95 of one request's latency (sent -> answer read), which includes time spent
  queueing behind other requests;
* the server process's CPU seconds (``/proc``) beside the wall seconds, and their ratio (the
  share of one core the server got: on a busy machine, well below 1).

llama-cpp-python's server has no parallel-slot setting (llama.cpp's own ``llama-server`` has
``--parallel``/``-np``): it holds one model and takes requests under a lock, one at a time. So
more clients are expected to add queueing latency, not throughput; this script measures what it
does on this machine. The result is written as JSON (``--out``) with the protocol and the machine.

    nice python benchmarks/local_throughput.py
    nice python benchmarks/local_throughput.py --requests 24 --concurrency 1 2 4 8

Needs ``pip install -r requirements-local.txt``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np

PROMPTS = [
    "Recommend 3 movies like Alien (1979). Titles only.",
    "Recommend 3 movies like Heat (1995). Titles only.",
    "Recommend 3 comedies for a family evening. Titles only.",
    "In one sentence: why might someone who liked Toy Story (1995) enjoy Shrek (2001)?",
    "Name 3 science-fiction films from the 1980s. Titles only.",
    "In one sentence, describe the taste of a viewer who watched Fargo and Pulp Fiction.",
    "Recommend 3 romantic movies from the 1990s. Titles only.",
    "In one sentence: what makes a good heist movie?",
]
OUT = Path(__file__).resolve().parent.parent / "data" / "benchmarks" / "local_throughput.json"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ask(base_url: str, alias: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """One chat request; returns (latency seconds, completion tokens)."""
    body = json.dumps({"model": alias, "messages": [{"role": "user", "content": prompt}],
                       "temperature": 0.0, "max_tokens": max_tokens}).encode()
    req = urllib.request.Request(base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        payload = json.loads(r.read())
    return time.perf_counter() - t0, int(payload["usage"]["completion_tokens"])


def measure(base_url: str, alias: str, pid: int, concurrency: int, n_requests: int,
            max_tokens: int) -> dict:
    """Send ``n_requests`` from ``concurrency`` threads: wall and server CPU seconds, the
    latencies and the completion tokens of one round."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_requests)]
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda p: ask(base_url, alias, p, max_tokens), prompts))
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_seconds(pid) - cpu0,
            "latencies": [r[0] for r in results], "tokens": int(sum(r[1] for r in results))}


def row(concurrency: int, rounds: list[dict]) -> dict:
    """The table's row for one concurrency level, over its rounds (totals and pooled
    latencies)."""
    wall = sum(r["wall_s"] for r in rounds)
    cpu = sum(r["cpu_s"] for r in rounds)
    lat = np.concatenate([r["latencies"] for r in rounds])
    tokens = sum(r["tokens"] for r in rounds)
    return {"clients": concurrency, "requests": int(lat.size), "wall_s": round(wall, 2),
            "server_cpu_s": round(cpu, 2), "server_cpu_share": round(cpu / wall, 2),
            "requests_per_s": round(lat.size / wall, 3), "completion_tokens": tokens,
            "completion_tokens_per_s": round(tokens / wall, 1),
            "latency_p50_s": round(float(np.percentile(lat, 50)), 2),
            "latency_p95_s": round(float(np.percentile(lat, 95)), 2),
            "round_wall_s": [round(r["wall_s"], 2) for r in rounds]}


def run(model: str | None = None, concurrency=(1, 2, 4), n_requests: int = 16,
        max_tokens: int = 48, threads: int = 1, rounds: int = 3) -> dict:
    from perso_kit.llm import local

    path, alias = local.resolve_model(model)
    port = local.free_port()
    cmd = local.server_command(path, alias, port, threads=threads)
    log = open(os.devnull, "wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while not local._answers(base_url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the llama.cpp server did not start")
            time.sleep(0.25)
        for p in PROMPTS[:2]:  # warm-up
            ask(base_url, alias, p, max_tokens)
        load_before = os.getloadavg()[0]
        raw: dict[int, list[dict]] = {c: [] for c in concurrency}
        for r in range(rounds):  # alternate the order, so a change of load hits all levels
            for c in (concurrency if r % 2 == 0 else list(reversed(concurrency))):
                raw[c].append(measure(base_url, alias, server.pid, c, n_requests, max_tokens))
        rows = [row(c, raw[c]) for c in concurrency]
        load_after = os.getloadavg()[0]
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return {
        "what": "throughput of the local llama.cpp server (llama-cpp-python) under concurrent "
                "clients",
        "model": alias,
        "protocol": (f"one server, --n_threads {threads}, n_ctx 4096; 2 warm-up requests; "
                     f"{rounds} rounds, each sending, for N = {list(concurrency)} client "
                     f"threads in turn (the order reversed every other round), the same "
                     f"{n_requests} chat requests (a cycle of {len(PROMPTS)} short movie "
                     f"prompts, temperature 0, max_tokens {max_tokens}) over HTTP, no cache; "
                     "a row sums its rounds; latency = one request's time including its wait "
                     "in the server's queue; server CPU from /proc"),
        "server_settings": "llama-cpp-python's server has no parallel-slot setting: it "
                           "answers one request at a time under a lock",
        "command": "nice python benchmarks/local_throughput.py "
                   f"--requests {n_requests} --concurrency {' '.join(map(str, concurrency))} "
                   f"--max-tokens {max_tokens} --threads {threads} --rounds {rounds}",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores (shared), python "
                   f"{platform.python_version()}",
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="preset name or .gguf path")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(OUT), help="JSON file to write ('' for none)")
    a = ap.parse_args()
    result = run(a.model, a.concurrency, a.requests, a.max_tokens, a.threads, a.rounds)
    import pandas as pd
    print(f"{result['model']} · {result['date']} · {result['machine']} · load "
          f"{result['load_average']}")
    print(result["protocol"])
    print(pd.DataFrame(result["rows"]).to_string(index=False))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"written: {a.out}")


if __name__ == "__main__":
    main()
