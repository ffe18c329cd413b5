"""How long does a big demo world take to build, and how much memory? (a benchmark, not a test)

Cases, each in a fresh process so its peak memory (max resident set size) is its own:

* the default world (1,000 users x 1,800 items);
* an ML-1M-sized world: 6,040 users x 3,706 items, ``mean_activity=165`` (about 1M
  interactions; the bar of the project: under 10 s);
* a 30,000-item catalog at the default 1,000 users (titles run out of words near 3,000 items,
  the rest are numbered sequels);
* worlds above :data:`perso_kit.data.demo.MAX_CELLS`, built in user chunks (memory grows with
  the interactions, not with users x items).

CPU seconds (``time.process_time``) are printed beside wall seconds: the machine may be shared.

    python benchmarks/demo_world_scale.py

To time an older version of the kit, run the script from outside a checkout with the old one
on the path (each case's child process puts its working folder first on its path):
``cd /tmp && PYTHONPATH=/path/to/old/checkout python /path/to/benchmarks/demo_world_scale.py``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys

CASES = {
    "default (1,000 x 1,800)": {},
    "ML-1M-sized (6,040 x 3,706)": dict(n_users=6040, n_items=3706, mean_activity=165),
    "30,000 items (1,000 x 30,000)": dict(n_items=30_000),
    "chunked (20,000 x 4,000)": dict(n_users=20_000, n_items=4_000),
    "chunked, ML-20M-shaped users (138,000 x 2,000)": dict(n_users=138_000, n_items=2_000,
                                                           mean_activity=100),
}

CHILD = """
import json, resource, sys, time
from perso_kit.data.demo import MAX_CELLS, make_world
kwargs = json.loads(sys.argv[1])
c, w = time.process_time(), time.perf_counter()
world = make_world(**kwargs)
cpu, wall = time.process_time() - c, time.perf_counter() - w
ds = world.dataset
cells = ds.n_users * ds.n_items
print(json.dumps({"cpu": cpu, "wall": wall, "interactions": ds.n_interactions,
                  "path": "chunked" if cells > MAX_CELLS else "dense",
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    print("# Demo worlds at scale: build time and peak memory")
    print(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'world':<48} {'path':>8} {'interactions':>13} {'CPU s':>7} {'wall s':>7} "
          f"{'peak MB':>8}")
    for name, kwargs in CASES.items():
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kwargs)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:<48} {r['path']:>8} {r['interactions']:>13,} {r['cpu']:7.1f} "
              f"{r['wall']:7.1f} {r['rss_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
