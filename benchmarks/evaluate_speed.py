"""How long does one evaluation take? Prints a table (a benchmark, not a test).

Also: seconds to generate the demo world. Protocol: random per-user 75/25 split (seed 42); top-10 for every user with test data,
excluding training items; all accuracy and beyond-accuracy metrics. ``fit_s`` is the model's
fit; ``evaluate_s`` is recommend + scoring, the median of 5 runs. ML-100K is read from
PERSO_KIT_DATA_DIR (or the download cache) and skipped when absent.

    python benchmarks/evaluate_speed.py
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import pandas as pd

import perso_kit as pk
from perso_kit.recommenders import Popularity


def models():
    out = {"Popularity": Popularity()}
    try:
        from perso_kit.recommenders import EASE
        out["EASE"] = EASE()
    except ImportError:
        pass
    return out


def demo_generation_seconds(repeats: int = 5) -> float:
    """Median seconds to generate the demo world (the issue asks for under 2 s)."""
    from perso_kit.data.demo import make_world

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        make_world(seed=42)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_seconds(name: str) -> tuple[float, float] | None:
    """Wall and CPU seconds to parse a MovieLens data set from files already on disk (median of
    3), or None when its files are not here."""
    from perso_kit.data import movielens as ml
    walls, cpus = [], []
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            ml.load_movielens(name, download=False)
        except Exception:  # no files here
            return None
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    print(f"demo world generated in {demo_generation_seconds():.2f} s (median of 5)")
    for name in ("ml-100k", "ml-latest-small"):
        took = load_seconds(name)
        print(f"{name} loaded from disk in " + (f"{took[0]:.2f} s wall, {took[1]:.2f} s CPU "
                                               "(median of 3)" if took else "(no files here)"))
    rows = []
    for name in ["demo", "ml-100k"]:
        try:
            ds = pk.load_dataset(name, download=False) if name != "demo" else pk.load_dataset(name)
        except Exception as e:  # no MovieLens files here
            print(f"skipping {name}: {type(e).__name__}: {str(e).splitlines()[0]}")
            continue
        split = pk.split.random_per_user(ds, test_fraction=0.25, seed=42)
        for model_name, model in models().items():
            t0 = time.perf_counter()
            model.fit(split.train)
            fit_s = time.perf_counter() - t0
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                table = pk.evaluate({model_name: model}, split, k=10, fit=False)
                times.append(time.perf_counter() - t0)
            rows.append({"dataset": name, "model": model_name, "users": int(table["users"][0]),
                         "ndcg@10": round(float(table["ndcg@10"][0]), 4),
                         "fit_s": round(fit_s, 3), "evaluate_s": round(statistics.median(times), 3)})
    print(f"evaluate() top-10 over all users; {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, perso-kit {pk.__version__}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
