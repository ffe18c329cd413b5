"""How much do batching and the cache buy? A benchmark against a local server.

Starts the kit's local OpenAI-compatible server (:class:`perso_kit.llm.testing.LocalServer`)
on 127.0.0.1 with a fixed latency per request (default 200 ms, roughly a short answer from a
hosted model), then times, for the same N requests:

1. sequential ``chat`` calls,
2. ``map`` at concurrency 16 (expected: >= 8x faster than sequential),
3. the same ``map`` again, answered from the SQLite cache (expected: under a second for 200).

The requests go through the real openai SDK and HTTP; answers come from the offline stand-in
behind the server, so the timings measure the plumbing, not a model.

    python benchmarks/llm_batching.py              # N=200, 200 ms, concurrency 16
    python benchmarks/llm_batching.py --n 50 --latency 0.1
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd


def run(n: int = 200, latency: float = 0.2, concurrency: int = 16) -> pd.DataFrame:
    from perso_kit.llm import get_llm
    from perso_kit.llm.testing import LocalServer

    prompts = [f"Request {i}: recommend a movie like Alien (1979) for evening {i}."
               for i in range(n)]
    rows = []
    with LocalServer(delay_s=latency) as server, tempfile.TemporaryDirectory() as tmp:
        seq = get_llm("compatible", base_url=server.base_url, model="bench", cache_path="off")
        t0 = time.perf_counter()
        replies = [seq.chat(p) for p in prompts]
        rows.append(("sequential chat", time.perf_counter() - t0, replies))

        llm = get_llm("compatible", base_url=server.base_url, model="bench",
                      cache_path=str(Path(tmp) / "bench.sqlite"))
        t0 = time.perf_counter()
        replies = llm.map(prompts, concurrency=concurrency, desc="map")
        rows.append((f"map, concurrency {concurrency}", time.perf_counter() - t0, replies))

        sent_before = len(server.requests)
        t0 = time.perf_counter()
        replies = llm.map(prompts, concurrency=concurrency, desc="cached")
        rows.append(("map again, from the cache", time.perf_counter() - t0, replies))
        assert len(server.requests) == sent_before, "the cached run sent requests"

    base = rows[0][1]
    return pd.DataFrame([{"run": name, "requests": len(r), "ok": sum(x.ok for x in r),
                          "cached": sum(x.cached for x in r), "seconds": round(s, 3),
                          "speed-up vs sequential": round(base / s, 1)}
                         for name, s, r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="requests (default 200)")
    parser.add_argument("--latency", type=float, default=0.2,
                        help="server latency per request in seconds (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    table = run(args.n, args.latency, args.concurrency)
    print(f"\nLLM batching benchmark: {args.n} requests, local server answering after "
          f"{args.latency * 1000:.0f} ms, {platform.python_version()} on {platform.machine()}")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
