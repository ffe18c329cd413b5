"""Spark's ALS against implicit's ALS on ML-100K, by the kit's protocol, with fit CPU and wall time.

Protocol: the kit's split (a random 25% of each user's ratings held out, seed 42), every rating
a positive, top-10 among the items not rated in training, NDCG@10 and recall@10 with 95%
bootstrap intervals over users, and the paired difference Spark - implicit.

Matched settings, as far as the two libraries define them: the same number of factors (32),
confidence ``1 + alpha`` with alpha 1, and 15 alternating sweeps. They differ in:

* the penalty: Spark multiplies ``regParam`` by each user's (item's) number of interactions,
  implicit applies one value to every vector; so each is chosen on a validation carve of the
  training part (20% of each user's training ratings), from its own grid (:data:`REG_GRID`),
  and the test part is used once;
* the initial vectors (each library's own random generator) and the solver (implicit: conjugate
  gradient, 3 steps a sweep; Spark: an exact Cholesky solve).

Time: ``fit wall s`` is the fit alone (Spark: sending the ratings, fitting, bringing the vectors
back; the Java start is reported apart); ``fit CPU s`` is this process's CPU time plus, for
Spark, the CPU time of the Java process (``perso_kit.recommenders.spark_als.jvm_cpu_seconds``:
Spark computes there, and ``resource.getrusage(RUSAGE_CHILDREN)`` counts a child only once it
has ended). The timed fits come after the validation search in the same Java process (its
compiler warmed up by five Spark fits, unless ``--no-tune``). The machine is shared: read CPU
seconds beside wall seconds.

    PERSO_KIT_DATA_DIR=/path/with/movielens python benchmarks/spark_als.py
    python benchmarks/spark_als.py --dataset demo              # offline, the demo world
    python benchmarks/spark_als.py --no-tune                   # no validation search
    python benchmarks/spark_als.py --save data/benchmarks/spark_als.json

``--save`` writes the table, with the command, date, machine and load, as JSON (notebook 13
shows it where Spark cannot run).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

K = 10
FACTORS, ALPHA, SWEEPS = 32, 1.0, 15
REG_GRID = {"implicit ALS": [1.0, 10.0, 30.0, 100.0], "Spark ALS": [0.01, 0.03, 0.1, 0.3, 1.0]}
DEFAULT_REG = {"implicit ALS": 10.0, "Spark ALS": 0.1}


def make(name: str, reg: float, spark=None):
    from perso_kit.recommenders import ALS
    from perso_kit.recommenders.spark_als import SparkALS
    if name == "implicit ALS":
        return ALS(factors=FACTORS, regularization=reg, alpha=ALPHA, iterations=SWEEPS, seed=1)
    return SparkALS(rank=FACTORS, reg_param=reg, alpha=ALPHA, max_iter=SWEEPS, seed=1,
                    spark=spark)


def ndcg(model, split) -> float:
    import perso_kit as pk
    return float(pk.evaluate(model, split, k=K, progress=False)[f"ndcg@{K}"].iloc[0])


def run(dataset: str, tune: bool, seed: int = 42) -> dict:
    import perso_kit as pk
    from perso_kit.evaluate import paired_difference
    from perso_kit.recommenders.spark_als import fit_timed, jvm_cpu_seconds, spark_session

    t0, cpu0 = time.perf_counter(), time.process_time()
    spark = spark_session("local[2]")
    start = {"wall_s": time.perf_counter() - t0,
             "cpu_s": time.process_time() - cpu0 + (jvm_cpu_seconds() or 0.0)}

    ds = pk.load_dataset(dataset)
    split = pk.split.random_per_user(ds, test_fraction=0.25, seed=seed)
    chosen, search = dict(DEFAULT_REG), []
    if tune:
        val = pk.split.random_per_user(split.train, test_fraction=0.2, seed=seed)
        for name, grid in REG_GRID.items():
            scores = {}
            for reg in grid:
                scores[reg] = ndcg(make(name, reg, spark), val)
                search.append({"model": name, "reg": reg, "val_ndcg@10": scores[reg]})
                print(f"  validation {name} reg {reg}: NDCG@10 {scores[reg]:.4f}",
                      file=sys.stderr)
            chosen[name] = max(scores, key=scores.get)

    rows, per_user = [], {}
    for name in REG_GRID:
        model = make(name, chosen[name], spark)
        times = fit_timed(model, split.train)
        table, users = pk.evaluate(model, split, k=K, fit=False, progress=False, ci=0.95,
                                   return_per_user=True)
        r = table.iloc[0]
        per_user[name] = users.set_index("user_id")[f"ndcg@{K}"]
        rows.append({"model": name, "reg": chosen[name],
                     **{c: float(r[c]) for c in [f"ndcg@{K}", f"ndcg@{K}_lo", f"ndcg@{K}_hi",
                                                 f"recall@{K}", f"recall@{K}_lo",
                                                 f"recall@{K}_hi"]},
                     **times})
    diff = paired_difference(per_user["Spark ALS"], per_user["implicit ALS"])
    return {"dataset": repr(ds), "split": split.description, "rows": rows,
            "spark_start": start, "search": search,
            "difference": {"what": "NDCG@10, Spark ALS - implicit ALS (paired bootstrap, 95%)",
                           "estimate": diff.estimate, "lo": diff.lo, "hi": diff.hi}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--no-tune", action="store_true",
                        help=f"use the default penalties {DEFAULT_REG} without validation")
    parser.add_argument("--save", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args(argv)

    from perso_kit.recommenders.spark_als import spark_missing, stop_spark
    why = spark_missing()
    if why:
        sys.exit(f"Spark cannot run here: {why}")
    import pyspark
    machine = (f"{platform.platform()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, pyspark {pyspark.__version__}, Java "
               f"{os.popen('java -version 2>&1').read().splitlines()[0]}")
    load_before = os.getloadavg()
    res = run(args.dataset, tune=not args.no_tune)
    stop_spark()
    res.update(command="python benchmarks/spark_als.py " + " ".join(argv or sys.argv[1:]),
               date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               machine=machine,
               load=f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
                    f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
               settings=f"factors {FACTORS}, alpha {ALPHA}, {SWEEPS} sweeps, seed 1; penalty "
                        + ("chosen on validation" if not args.no_tune else "defaults"))

    print(f"# Spark ALS vs implicit ALS: {res['dataset']}")
    print(f"date {res['date']}; {res['machine']}; {res['load']}")
    print(f"split: {res['split']}; {res['settings']}")
    print(f"Spark session start (Java): {res['spark_start']['wall_s']:.1f} s wall, "
          f"{res['spark_start']['cpu_s']:.1f} s CPU")
    if res["search"]:
        print("validation NDCG@10 by penalty: " + "; ".join(
            f"{s['model']} {s['reg']:g}: {s['val_ndcg@10']:.4f}" for s in res["search"]))
    table = pd.DataFrame(res["rows"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    d = res["difference"]
    print(f"{d['what']}: {d['estimate']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(res, indent=1) + "\n")
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
