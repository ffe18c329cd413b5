"""How long does the two-stage ranker take to fit, and what does it reach? CPU beside wall.

For each split seed (random 25% of each user's ratings held out, as in
``classic_movielens.py``), the retrievers (ALS, EASE) and the item-kNN scorer are tuned on a
validation split carved from the training part (20% of each user's training ratings; the grids
of ``classic_movielens.py``), then the ranker is fitted and scored:

* ``--on test`` (the default): fitted on the whole training part, NDCG@10 on the test part;
* ``--on validation``: fitted on the validation split's training side, NDCG@10 on its held-out
  side. Use this to choose the ranker's settings; the test part stays untouched.

Fit seconds are CPU (``time.process_time``, all threads of this process) and wall
(``time.perf_counter``) of ``TwoStageRanker.fit`` alone; then the mean over the seeds. Ranker
settings are given as ``--set name=value`` (values parsed as JSON, e.g. ``--set n_rounds=3``),
or as a preset (``--preset lean``: :meth:`TwoStageRanker.lean`). LightGBM is imported before
the first fit, so no fit pays for the import.

``--grid FILE`` tries several settings in one run and prints one table row per setting (mean
+/- sample std of NDCG@10 over the seeds, mean fit CPU-s): FILE is a JSON list of objects
``{"label": "...", "set": {...}}`` (optionally ``"preset": "lean"`` and ``"als_threads": 1``).
``--als-threads`` sets the ALS retriever's threads (0, the default: all cores; ALS gives the
same factors with any number of threads, only the time changes). ``--repeat R`` fits each
setting R times per seed and reports the median CPU-s (and the fastest fit): on a shared
machine one fit's time swings by 10% and more. To time an older version of the kit with this
same script, put its checkout first on the path: ``PYTHONPATH=/path/to/old/checkout python
benchmarks/ranker_speed.py ...`` (the last line says which ``perso_kit`` was timed).

    PERSO_KIT_DATA_DIR=/path/with/movielens nice python benchmarks/ranker_speed.py
    python benchmarks/ranker_speed.py --dataset demo --seeds 42
    python benchmarks/ranker_speed.py --on validation --set num_leaves=31 --params /tmp/p.json
    python benchmarks/ranker_speed.py --on validation --grid settings.json --params /tmp/p.json
    python benchmarks/ranker_speed.py --seeds 43 --preset lean --als-threads 1 --repeat 3
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

K = 10
TUNED = ("ItemKNN", "EASE", "ALS")


def tuned_params(ds, seed: int) -> dict:
    """The retrievers' and scorer's settings chosen by validation NDCG@10 (as classic_movielens)."""
    import classic_movielens as cm
    import perso_kit as pk

    split = pk.split.random_per_user(ds, test_fraction=0.25, seed=seed)
    tune_split = pk.split.random_per_user(split.train, test_fraction=0.2, seed=seed)
    saved = cm.GRIDS
    cm.GRIDS = {name: saved[name] for name in TUNED}
    try:
        params, _ = cm.tune(tune_split, verbose=False)
    finally:
        cm.GRIDS = saved
    return {name: params[name] for name in TUNED}


def make_ranker(params: dict, settings: dict, preset: str | None = None, als_threads: int = 0):
    from perso_kit.recommenders import ALS, EASE, ItemKNN, Popularity, TwoStageRanker
    build = TwoStageRanker if preset is None else getattr(TwoStageRanker, preset)
    return build(
        retrievers={"ALS": ALS(**params["ALS"], num_threads=als_threads),
                    "EASE": EASE(**params["EASE"])},
        scorers={"ItemKNN": ItemKNN(**params["ItemKNN"]), "Popularity": Popularity()},
        n_candidates=100, show_progress=False, **settings)


def measure(ds, seed: int, params: dict, settings: dict, on: str, preset: str | None = None,
            als_threads: int = 0, repeat: int = 1) -> dict:
    """Fit the ranker ``repeat`` times on one seed's split (a fresh ranker each time: the fits
    are identical, only their times vary); CPU and wall seconds are the median over the fits,
    ``fit_cpu_min_s`` the fastest."""
    import numpy as np
    import perso_kit as pk

    split = pk.split.random_per_user(ds, test_fraction=0.25, seed=seed)
    if on == "validation":
        split = pk.split.random_per_user(split.train, test_fraction=0.2, seed=seed)
    cpus, walls = [], []
    for _ in range(repeat):
        ranker = make_ranker(params, settings, preset, als_threads)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ranker.fit(split.train)
        cpus.append(time.process_time() - cpu0)
        walls.append(time.perf_counter() - wall0)
    table = pk.evaluate({"ranker": ranker}, split, k=K, fit=False, progress=False)
    return {"seed": seed, "fit_cpu_s": float(np.median(cpus)), "fit_wall_s": float(np.median(walls)),
            "fit_cpu_min_s": min(cpus), "fit_cpus": cpus,
            "ndcg@10": float(table[f"ndcg@{K}"].iloc[0]),
            "pairs": len(ranker.training_pairs_),
            "trees": getattr(ranker, "best_iteration_", None) or ranker.model_.n_estimators}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--on", choices=["test", "validation"], default="test")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a TwoStageRanker argument (value parsed as JSON)")
    parser.add_argument("--preset", help="a TwoStageRanker classmethod, e.g. lean")
    parser.add_argument("--als-threads", type=int, default=0,
                        help="threads of the ALS retriever (0: all cores)")
    parser.add_argument("--grid", help="JSON list of settings to try (see the docstring)")
    parser.add_argument("--params", help="JSON file caching the tuned settings per seed")
    parser.add_argument("--repeat", type=int, default=1,
                        help="fit each setting this many times per seed; report the median "
                             "CPU-s and the fastest (the first fit of a process also pays "
                             "for warming up its libraries)")
    args = parser.parse_args(argv)
    import lightgbm  # noqa: F401  (imported here, so that no fit pays for the import)
    import pandas as pd
    import perso_kit as pk

    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    cache = {}
    if args.params and os.path.exists(args.params):
        with open(args.params) as f:
            cache = json.load(f)
    print(f"# Two-stage ranker fit time on {args.dataset} ({args.on}); date "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    ds = pk.load_dataset(args.dataset)
    for seed in args.seeds:
        key = f"{args.dataset}:{seed}"
        if key not in cache:
            cache[key] = tuned_params(ds, seed)
            if args.params:
                with open(args.params, "w") as f:
                    json.dump(cache, f, indent=1)
    if args.grid:
        with open(args.grid) as f:
            grid = json.load(f)
        print(f"| settings | fit CPU-s (per seed) | fit wall s | trees | NDCG@{K} ({args.on}) |")
        print("| --- | --- | --- | --- | --- |")
        for entry in grid:
            rows = [measure(ds, seed, cache[f"{args.dataset}:{seed}"], entry.get("set", {}),
                            args.on, entry.get("preset"), entry.get("als_threads", 0),
                            args.repeat)
                    for seed in args.seeds]
            t = pd.DataFrame(rows)
            nd = t[f"ndcg@{K}"]
            print(f"| {entry.get('label', entry)} | {t['fit_cpu_s'].mean():.2f} ("
                  + ", ".join(f"{c:.2f}" for c in t["fit_cpu_s"]) + f") | "
                  f"{t['fit_wall_s'].mean():.1f} | " + ", ".join(map(str, t["trees"])) + " | "
                  f"{nd.mean():.4f} +/- {nd.std(ddof=1) if len(nd) > 1 else 0:.4f} "
                  f"({', '.join(f'{v:.4f}' for v in nd)}) |", flush=True)
        print(f"load {os.getloadavg()[0]:.1f}")
        return
    print(f"ranker settings: {settings or 'the defaults'}"
          + (f", preset {args.preset}" if args.preset else "")
          + (f", ALS threads {args.als_threads}" if args.als_threads else ""))
    rows = []
    for seed in args.seeds:
        row = measure(ds, seed, cache[f"{args.dataset}:{seed}"], settings, args.on,
                      args.preset, args.als_threads, args.repeat)
        times = (f" (median of {args.repeat}: " + ", ".join(f"{c:.2f}" for c in row["fit_cpus"])
                 + f"; fastest {row['fit_cpu_min_s']:.2f})" if args.repeat > 1 else "")
        print(f"seed {seed}: fit {row['fit_cpu_s']:.2f} CPU-s{times} "
              f"({row['fit_wall_s']:.1f} s wall), "
              f"{row['pairs']} training pairs, {row['trees']} trees, "
              f"NDCG@{K} {row['ndcg@10']:.4f}", flush=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    nd = table[f"ndcg@{K}"]
    print(f"mean over seeds {', '.join(map(str, args.seeds))}: fit {table['fit_cpu_s'].mean():.2f}"
          f" CPU-s ({table['fit_wall_s'].mean():.1f} s wall); NDCG@{K} {nd.mean():.4f}"
          + (f" +/- {nd.std(ddof=1):.4f} (sample std)" if len(nd) > 1 else "")
          + (f"; fastest fits {table['fit_cpu_min_s'].mean():.2f} CPU-s" if args.repeat > 1
             else "")
          + f"; load {os.getloadavg()[0]:.1f}; perso_kit from {os.path.dirname(pk.__file__)}")


if __name__ == "__main__":
    main()
