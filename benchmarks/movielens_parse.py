"""How long does the lean MovieLens parser take on an ML-25M-sized ``ratings.csv``, and how much
memory? (a benchmark, not a test)

The real ml-25m.zip is a 262 MB download; this script measures the parser on a synthetic file of
the same layout instead, so it runs offline: ``<folder>/ml-25m/ratings.csv`` with
``--rows`` lines of ``userId,movieId,rating,timestamp`` (seeded random ids in ML-25M's ranges,
ratings 0.5-5 in halves, timestamps 1995-2019) and a ``movies.csv`` for the movies it names.
Then, in a fresh process (so its peak memory is its own), it times
``load_dataset("ml-25m", data_dir=<folder>, download=False)`` and prints CPU seconds
(``time.process_time``) beside wall seconds, the process's peak resident memory and the size of
the interactions table.

    python benchmarks/movielens_parse.py                      # 25,000,095 rows, as ML-25M
    python benchmarks/movielens_parse.py --rows 2000000       # quicker
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CHILD = """
import json, resource, sys, time
from perso_kit.data.movielens import load_movielens
c, w = time.process_time(), time.perf_counter()
ds = load_movielens("ml-25m", data_dir=sys.argv[1], cache_dir=sys.argv[2], download=False)
cpu, wall = time.process_time() - c, time.perf_counter() - w
print(json.dumps({"rows": ds.n_interactions, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                  "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "table_mb": round(ds.interactions.memory_usage(index=False).sum() / 1e6, 1)}))
"""


def write_ratings(folder: Path, rows: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """A ratings.csv and movies.csv of ml-25m's layout, written in chunks (seeded). Every
    (user, movie) pair occurs once, as in GroupLens's file."""
    rng = np.random.default_rng(seed)
    (folder / "ml-25m").mkdir(parents=True)
    movie_ids = np.unique(rng.integers(1, 209_172, size=62_423))
    codes = np.unique(rng.integers(0, 162_541 * len(movie_ids), size=rows + rows // 100 + 1000))
    codes = rng.permutation(codes)[:rows]          # distinct pairs, in random order
    with open(folder / "ml-25m" / "ratings.csv", "w", encoding="utf-8") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for start in range(0, rows, chunk):
            c = codes[start:start + chunk]
            part = pd.DataFrame({"userId": c // len(movie_ids) + 1,
                                 "movieId": movie_ids[c % len(movie_ids)],
                                 "rating": rng.integers(1, 11, size=len(c)) / 2,
                                 "timestamp": rng.integers(789_652_009, 1_574_327_703,
                                                           size=len(c))})
            part.to_csv(f, header=False, index=False, float_format="%.1f")
    pd.DataFrame({"movieId": movie_ids, "title": [f"Film {m} (2000)" for m in movie_ids],
                  "genres": "Drama"}).to_csv(folder / "ml-25m" / "movies.csv", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=25_000_095)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml25m-parse-") as tmp:
        folder = Path(tmp)
        write_ratings(folder, args.rows, args.seed)
        size_mb = (folder / "ml-25m" / "ratings.csv").stat().st_size / 1e6
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(folder / "cache")],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
          f"{platform.platform()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}")
    print(f"synthetic ml-25m/ratings.csv: {args.rows:,} rows, {size_mb:,.0f} MB of text")
    print(f"load_dataset('ml-25m'): {result['cpu_s']} CPU s, {result['wall_s']} s wall, "
          f"peak {result['peak_mb']:,} MB (whole process), interactions table "
          f"{result['table_mb']:,} MB ({result['table_mb'] * 1e6 / result['rows']:.0f} bytes a "
          "rating)")


if __name__ == "__main__":
    main()
