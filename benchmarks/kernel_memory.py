"""Does the course fit in a small machine? Peak memory of each notebook's kernel.

Binder gives a student 2 GB. With the local backend, the memory in use is the notebook's kernel
plus the llama.cpp server beside it. This script runs each notebook once through the kit's tour
(``python -m perso_kit tour --only NN``, one process per notebook) and reads the peak resident
size of the largest process that run left behind (``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the
kernel, which is far larger than the tour process that drives it).

The Act-3 notebooks replay the shipped recording of SmolLM2-135M-Instruct, so they run at the
same ``local`` size and do the same work as with the local model, without the server; add the
server's own resident size (``benchmarks/local_llm.py``: 0.7 GB for SmolLM2) to read the total a
student with the local model needs.

    python benchmarks/kernel_memory.py               # every notebook
    python benchmarks/kernel_memory.py --only 05 07
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "data" / "recordings" / "smollm2-135m.sqlite"
ACT3 = ("05", "06", "07", "08", "09", "10", "11", "12")


def peak_rss_mb(number: str, out_dir: Path) -> dict:
    """Run notebook ``number`` in a child process and return its peak resident size (MB)."""
    env = dict(os.environ)
    if number in ACT3:
        env.update(PERSO_KIT_LLM_BACKEND="replay", PERSO_KIT_LLM_REPLAY=str(RECORDING))
    cmd = [sys.executable, "-c", _CHILD, number, str(out_dir)]
    t0, c0 = time.perf_counter(), os.times()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    c1 = os.times()
    row = {"notebook": number, "LLM answers": "recording" if number in ACT3 else "none",
           "status": "ok" if done.returncode == 0 else f"failed ({done.returncode})"}
    # the child reports its own children's peak (the kernel) on its last line
    lines = done.stdout.strip().splitlines()
    row["kernel peak RSS MB"] = float(lines[-1]) if lines and _number(lines[-1]) else None
    row["wall s"] = round(time.perf_counter() - t0, 1)
    row["CPU s (children)"] = round((c1.children_user - c0.children_user)
                                    + (c1.children_system - c0.children_system), 1)
    if done.returncode:
        row["status"] += ": " + (done.stderr.strip().splitlines() or [""])[-1][:80]
    return row


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


#: runs in the child: the tour of one notebook, then the peak RSS of its largest child (kB -> MB)
_CHILD = """
import resource, sys
from perso_kit.tour import run_tour
run_tour(sys.argv[2], only=[sys.argv[1]], html=False)
print(round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1))
"""


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[f"{i:02d}" for i in range(12)])
    parser.add_argument("--out", default=str(REPO / "build" / "memory"))
    args = parser.parse_args(argv)
    from tqdm.auto import tqdm
    rows = [peak_rss_mb(n, Path(args.out)) for n in tqdm(args.only, desc="notebooks")]
    table = pd.DataFrame(rows).set_index("notebook")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; resource limit "
          f"{resource.getrlimit(resource.RLIMIT_AS)[0]}")
    print(table.to_markdown() if _has_tabulate() else table.to_string())
    return table


def _has_tabulate() -> bool:
    import importlib.util
    return importlib.util.find_spec("tabulate") is not None


if __name__ == "__main__":
    main()
