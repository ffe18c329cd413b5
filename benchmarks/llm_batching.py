"""How much do batching and the cache buy? A benchmark against any OpenAI-compatible server.

Times, for the same N requests:

1. sequential ``chat`` calls,
2. ``map`` at concurrency C (16 by default),
3. the same ``map`` again, answered from the SQLite cache (no request is sent).

Each row shows the wall time and, beside it, the CPU time of this process (the client; with
the built-in server, the server's threads too). A server on another machine or in another
process spends its own CPU, which this process cannot see.

Which server:

* by default the kit's local OpenAI-compatible server (:class:`perso_kit.llm.testing.LocalServer`)
  on 127.0.0.1, answering after a fixed latency (default 200 ms, roughly a short answer from a
  hosted model). Answers come from the offline stand-in behind it, so the timings measure the
  plumbing, not a model. ``--slots 1`` makes it serve one request at a time, as a local model
  server with a single slot does (llama.cpp's server with ``--parallel 1``, the default of
  llama-cpp-python's);
* ``--base-url URL`` (and ``--model NAME``): any OpenAI-compatible server, e.g. a local
  llama.cpp or Ollama server, or a hosted API (``--api-key``, or the key its usual environment
  variable holds).

When concurrency gives no real speed-up, the benchmark says why: a server that answers one
request at a time queues the requests the client sends together, so C requests in flight take
as long as C requests in a row.

    python benchmarks/llm_batching.py                       # N=200, 200 ms, concurrency 16
    python benchmarks/llm_batching.py --n 50 --latency 0.1
    python benchmarks/llm_batching.py --n 32 --slots 1      # a one-slot server: no speed-up
    python benchmarks/llm_batching.py --base-url http://127.0.0.1:8080/v1 --model smollm2 --n 16
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

#: the concurrent run is explained when its speed-up stays below this share of the concurrency
#: (or below 1.5): the server then serves only a few of the requests in flight at once
SHORT_OF_CONCURRENCY = 0.25


@contextlib.contextmanager
def local_server(latency: float, slots: int | None):
    """The kit's local server answering after ``latency`` seconds, at most ``slots`` requests
    at a time (None: as many as arrive)."""
    from perso_kit.llm.testing import LocalServer

    server = LocalServer(delay_s=0.0 if slots else latency)
    if slots:
        gate, handle = threading.Semaphore(slots), server.stand_in.handle

        def one_slot_at_a_time(path, body):
            with gate:                       # the latency is spent holding a slot
                time.sleep(latency)
                return handle(path, body)

        server.stand_in.handle = one_slot_at_a_time
    with server:
        yield server


def _timed(name: str, fn) -> tuple:
    wall, cpu = time.perf_counter(), time.process_time()
    replies = fn()
    return name, time.perf_counter() - wall, time.process_time() - cpu, replies


def run(n: int = 200, latency: float = 0.2, concurrency: int = 16, base_url: str | None = None,
        model: str | None = None, api_key: str | None = None, max_tokens: int = 32,
        slots: int | None = None) -> pd.DataFrame:
    """The benchmark table: one row per run with ``requests, ok, cached, wall_s, cpu_s`` and
    the speed-up over the sequential run (see the module docstring)."""
    from perso_kit.llm import get_llm

    prompts = [f"Request {i}: recommend a movie like Alien (1979) for evening {i}. "
               "Answer with one title." for i in range(n)]
    rows = []
    with contextlib.ExitStack() as stack:
        if base_url is None:
            base_url = stack.enter_context(local_server(latency, slots)).base_url
            model = model or "bench"
        tmp = stack.enter_context(tempfile.TemporaryDirectory())

        def client(cache_path):
            return get_llm("compatible", base_url=base_url, model=model, api_key=api_key,
                           cache_path=cache_path, timeout_s=600)

        seq = client("off")
        seq.chat("Warm-up: say OK.", max_tokens=4)    # connection and first-call set-up, untimed
        rows.append(_timed("sequential chat",
                           lambda: [seq.chat(p, max_tokens=max_tokens) for p in prompts]))
        llm = client(str(Path(tmp) / "bench.sqlite"))
        batch = [{"messages": p, "max_tokens": max_tokens} for p in prompts]
        rows.append(_timed(f"map, concurrency {concurrency}", lambda: llm.map(
            batch, concurrency=concurrency, desc="map", progress=False)))
        rows.append(_timed("map again, from the cache", lambda: llm.map(
            batch, concurrency=concurrency, desc="cached", progress=False)))
    base = rows[0][1]
    table = pd.DataFrame([{"run": name, "requests": len(r), "ok": sum(x.ok for x in r),
                           "cached": sum(x.cached for x in r), "wall_s": round(wall, 3),
                           "cpu_s": round(cpu, 3),
                           "speed-up vs sequential": round(base / wall, 2) if wall else None}
                          for name, wall, cpu, r in rows])
    table.attrs["model"] = seq.model
    return table


def verdict(table: pd.DataFrame, concurrency: int) -> str:
    """One or two sentences on the concurrent run's speed-up: fine, or why there is none."""
    row = table.iloc[1]
    speed = row["speed-up vs sequential"]
    if row["ok"] < row["requests"] or table.iloc[0]["ok"] < table.iloc[0]["requests"]:
        failed = int(table["requests"].iloc[:2].sum() - table["ok"].iloc[:2].sum())
        lead = f"{failed} request(s) failed; the timings include their errors and retries. "
    else:
        lead = ""
    if speed is None or speed >= max(1.5, SHORT_OF_CONCURRENCY * concurrency):
        return lead + (f"Concurrency {concurrency}: x{speed:.1f} faster than the same requests "
                       "in a row." if speed else "")
    return lead + (
        f"Concurrency {concurrency} gave only x{speed:.2f}: the server answered about "
        f"{max(1, round(speed))} request(s) at a time (what remains of the speed-up is the "
        "client's own work overlapping). A server with one slot (llama.cpp's server with "
        "--parallel 1, the default of llama-cpp-python's; one model on one CPU) queues the "
        "requests sent together, so "
        f"{concurrency} in flight take as long as {concurrency} in a row. Concurrency pays "
        "against servers that serve requests in parallel (hosted APIs, vLLM, llama.cpp with "
        "--parallel N); against a one-slot server only the cache saves time.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="requests (default 200)")
    parser.add_argument("--latency", type=float, default=0.2,
                        help="built-in server: latency per request in seconds (default 0.2)")
    parser.add_argument("--slots", type=int, default=None,
                        help="built-in server: requests served at once (default: all)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--base-url", default=None,
                        help="measure this OpenAI-compatible server instead of the built-in one")
    parser.add_argument("--model", default=None, help="model name to ask the server for")
    parser.add_argument("--api-key", default=None, help="key for --base-url, if it needs one")
    parser.add_argument("--max-tokens", type=int, default=32,
                        help="longest answer per request (default 32)")
    args = parser.parse_args()
    for name in ("n", "concurrency", "max_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.slots is not None and args.slots < 1:
        parser.error("--slots must be at least 1")
    if args.base_url and not args.base_url.startswith(("http://", "https://")):
        parser.error(f"--base-url must start with http:// or https://, got {args.base_url!r} "
                     "(e.g. http://127.0.0.1:8080/v1)")
    table = run(args.n, args.latency, args.concurrency, args.base_url, args.model,
                args.api_key, args.max_tokens, args.slots)
    where = (f"{args.base_url} (model {table.attrs['model']})" if args.base_url else
             f"the built-in local server (offline stand-in behind it, not an LLM) answering "
             f"after {args.latency * 1000:.0f} ms"
             + (f", {args.slots} slot(s)" if args.slots else ""))
    print(f"\nLLM batching benchmark: {args.n} requests to {where}; "
          f"Python {platform.python_version()} on {platform.machine()}")
    print(table.to_string(index=False))
    print("\n" + verdict(table, args.concurrency))


if __name__ == "__main__":
    main()
