"""How fast is a real model on this CPU? A benchmark of the local backend.

Starts the kit's local llama.cpp server (``PERSO_KIT_LLM_BACKEND=local``) with a model preset or a
``.gguf`` path, then times the requests the Act-3 notebooks send most, each ``--repeat`` times
with the cache off:

1. a one-sentence taste profile (free text, ``max_tokens=60``);
2. a listwise ranking of 20 candidates as schema-constrained JSON (``max_tokens=200``);
3. item attributes as schema-constrained JSON (``max_tokens=300``).

It prints, per request kind: wall seconds per call, prompt and completion tokens, generation
speed (completion tokens per wall second), how many answers were valid JSON and how many were
cut at ``max_tokens``; and the server's start-up time and the CPU seconds the server process
used (the machine is shared, so CPU seconds are printed beside wall time).

    python benchmarks/local_llm.py                       # SmolLM2-135M-Instruct, 5 repeats
    python benchmarks/local_llm.py --model gemma3-270m --repeat 3

Needs ``pip install -r requirements-local.txt``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import pandas as pd


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(model: str | None = None, repeat: int = 5) -> tuple[pd.DataFrame, dict]:
    from perso_kit import load_dataset
    from perso_kit.llm import get_llm, local
    from perso_kit.roles.knowledge import ATTRIBUTE_SCHEMA, attribute_messages
    from perso_kit.roles.ranker import listwise_messages

    t0 = time.perf_counter()
    server = local.start_server(model)
    start_s = time.perf_counter() - t0
    llm = get_llm("local", model=model, cache_path="off")
    ds = load_dataset("demo")
    users = ds.interactions["user_id"].drop_duplicates().sample(repeat, random_state=42)
    items = ds.items.sample(repeat, random_state=42)
    genres = sorted({g for gs in ds.items["genres"] for g in gs})
    ranking = {"title": "ranking", "type": "object", "required": ["ranking"],
               "properties": {"ranking": {"type": "array", "items": {"type": "integer"}}}}
    kinds = {
        "profile sentence (text, 60 max)": [
            dict(messages="In one sentence, describe the taste of a viewer who watched:\n"
                 + "\n".join(ds.history(u)["title"].tail(10)), max_tokens=60) for u in users],
        "rank 20 candidates (JSON, 200 max)": [
            dict(messages=listwise_messages(ds, u, ds.items["item_id"].sample(
                20, random_state=int(u)).tolist(), history_len=10), json_schema=ranking,
                max_tokens=200) for u in users],
        "item attributes (JSON, 300 max)": [
            dict(messages=attribute_messages(r.title, r.description, genres,
                                             ["light", "dark", "tense", "warm"]),
                 json_schema=ATTRIBUTE_SCHEMA, max_tokens=300) for r in items.itertuples()],
    }
    rows = []
    for kind, requests in kinds.items():
        cpu0, w0 = _cpu_seconds(server.pid), time.perf_counter()
        replies = [llm.chat(**r) for r in requests]
        wall, cpu = time.perf_counter() - w0, _cpu_seconds(server.pid) - cpu0
        completion = sum(r.usage.completion_tokens for r in replies)
        rows.append({"request": kind, "calls": len(replies),
                     "wall s / call": wall / len(replies),
                     "server CPU s / call": cpu / len(replies),
                     "prompt tokens / call": sum(r.usage.prompt_tokens for r in replies)
                     / len(replies),
                     "completion tokens / call": completion / len(replies),
                     "tokens / wall s": completion / wall if wall else float("nan"),
                     "ok": sum(r.ok for r in replies),
                     "cut at max_tokens": sum(r.truncated for r in replies)})
    info = {"model": server.alias, "file": server.model_path.name,
            "file MB": round(server.model_path.stat().st_size / 1e6),
            "server start s": round(start_s, 2),
            "server RSS MB": _rss_mb(server.pid)}
    server.stop()
    return pd.DataFrame(rows).set_index("request"), info


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="preset name or .gguf path")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table, info = run(args.model, args.repeat)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}")
    print(" | ".join(f"{k}: {v}" for k, v in info.items()))
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
