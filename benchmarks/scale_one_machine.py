"""What still runs on one machine at ML-25M's shape? (a benchmark, not a test)

The real ML-25M cannot be read here (no network), so the data is a demo world of its shape
(:func:`perso_kit.data.demo.make_world`; by default 162,541 users, 62,423 items and a mean
activity that gives about 25 million interactions; smaller shapes with ``--users``/``--items``/
``--activity``). Steps, each model in a fresh process so that its peak memory is its own:

1. build the world (or read it from ``--world-cache``, an ``.npz`` written by an earlier run,
   with the build's own costs in ``<cache>.json``);
2. in each child: load the interactions, ``random_per_user`` split (20% test, seed 0), fit one
   model, then recommend and score NDCG@10 for a seeded sample of users with test interactions
   (``--eval-users``, 10,000 by default), in chunks of 2,000 users
   (:func:`perso_kit.one_machine.evaluate_in_chunks`);
3. EASE is asked too: it refuses catalogs above 20,000 items (its dense items x items matrix);
   the memory it would need is printed instead. ``HeadEASE`` (EASE on the ``--n-head`` most
   popular items, the tail ranked after them) replaces it; the share of interactions its head
   covers is printed.

CPU seconds (``time.process_time``, all threads) are printed beside wall seconds: the machine
is shared. Peak memory is ``ru_maxrss`` of each child (data, split and model together).
``--json`` merges the run, under ``--label``, into the JSON notebook 13 reads.

    nice python benchmarks/scale_one_machine.py --world-cache /tmp/ml25m.npz \\
        --json data/benchmarks/scale_one_machine.json --label "ML-25M-shaped"
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ML25M = dict(n_users=162_541, n_items=62_423, mean_activity=157)

BUILD = """
import json, sys, numpy as np
from perso_kit.data.demo import make_world
from perso_kit.one_machine import measure
kwargs, out = json.loads(sys.argv[1]), sys.argv[2]
with measure() as cost:
    world = make_world(**kwargs)
ds = world.dataset
inter = ds.interactions
np.savez(out, user_id=inter["user_id"].to_numpy(np.int32),
         item_id=inter["item_id"].to_numpy(np.int32), rating=inter["rating"].to_numpy(np.float32),
         timestamp=inter["timestamp"].to_numpy(np.int64), item_ids=ds.item_ids.astype(np.int32),
         user_ids=ds.user_ids.astype(np.int32))
record = {"kwargs": kwargs, "cpu": cost["cpu_s"], "wall": cost["wall_s"],
          "interactions": int(ds.n_interactions), "users": int(ds.n_users),
          "items": int(ds.n_items), "rss_mb": cost["peak_mb"]}
json.dump(record, open(out + ".json", "w"))
print(json.dumps(record))
"""

CHILD = """
import json, sys, numpy as np, pandas as pd
from perso_kit.data import make_dataset
from perso_kit import split as splits
from perso_kit.one_machine import measure, evaluate_in_chunks, sample_users, tail_share
from perso_kit.recommenders import ALS, EASE, ItemKNN, Popularity
from perso_kit.recommenders.head_ease import HeadEASE
path, which, n_eval, n_head = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {"model": which}
with measure() as cost:
    z = np.load(path)
    inter = pd.DataFrame({k: z[k] for k in ("user_id", "item_id", "rating", "timestamp")})
    items = pd.DataFrame({"item_id": z["item_ids"], "title": "",
                          "genres": [()] * len(z["item_ids"])})
    ds = make_dataset("demo", inter, items)
    del inter, z
    s = splits.random_per_user(ds, test_fraction=0.2, seed=0)
out["data_cpu_s"], out["data_wall_s"] = cost["cpu_s"], cost["wall_s"]
out["users"], out["items"], out["interactions"] = ds.n_users, ds.n_items, ds.n_interactions
models = {"Popularity": lambda: Popularity(),
          "ItemKNN": lambda: ItemKNN(n_neighbors=100, block_size=256),
          "ALS": lambda: ALS(factors=64, iterations=15, num_threads=2),
          "HeadEASE": lambda: HeadEASE(n_head=n_head, l2=300), "EASE": lambda: EASE(l2=300)}
if which != "data only":
    model = models[which]()
    try:
        with measure() as cost:
            model.fit(s.train)
    except ValueError as e:
        out["refused"] = str(e).split(".")[0]
        out["would_need_gb"] = ds.n_items ** 2 * 8 / 1e9
    else:
        out["fit_cpu_s"], out["fit_wall_s"] = cost["cpu_s"], cost["wall_s"]
        users = sample_users(s, n_eval, seed=0)
        with measure() as cost:
            table = evaluate_in_chunks(model, s, users=users, k=10, chunk_size=2000, progress=False)
        out["eval_cpu_s"], out["eval_wall_s"] = cost["cpu_s"], cost["wall_s"]
        out["eval_users"] = int(table.loc[0, "users"])
        out["ndcg@10"] = float(table.loc[0, "ndcg@10"])
        if which == "HeadEASE":
            out["n_head"] = int(len(model.head_))
            out["head_share_train"] = model.head_share_
            out["tail_share_test"] = tail_share(s, s.train.item_ids[model.head_])
out["peak_mb"] = cost["peak_mb"]
print(json.dumps(out))
"""

PROTOCOL = ("A demo world (make_world, seed 42) of the shape given; each model in a fresh "
            "process: load the interactions, random_per_user split (20% test, seed 0), fit, then "
            "recommend top 10 (seen items excluded) for a seeded sample of test users in chunks "
            "of 2,000 and score NDCG@10. CPU s (process_time, all threads) beside wall s; peak "
            "MB is the child's ru_maxrss (data, split and model together). ALS: 64 factors, 15 "
            "iterations, 2 threads; ItemKNN: 100 neighbours; HeadEASE and EASE: l2 300.")

MODELS = ["data only", "Popularity", "ItemKNN", "ALS", "HeadEASE", "EASE"]


def machine() -> dict:
    return {"date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "platform": platform.platform(), "python": platform.python_version(),
            "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def build(kwargs: dict, path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", BUILD, json.dumps(kwargs), path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=ML25M["n_users"])
    ap.add_argument("--items", type=int, default=ML25M["n_items"])
    ap.add_argument("--activity", type=float, default=ML25M["mean_activity"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--world-cache", help=".npz of a world built earlier (written if missing)")
    ap.add_argument("--eval-users", type=int, default=10_000)
    ap.add_argument("--n-head", type=int, default=10_000)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", help="merge the results into this JSON file")
    ap.add_argument("--label", default="ML-25M-shaped")
    args = ap.parse_args(argv)
    kwargs = dict(n_users=args.users, n_items=args.items, mean_activity=args.activity,
                  seed=args.seed)
    env = machine()
    print(f"# What runs on one machine: {args.label} demo world")
    print(f"date {env['date']}, {env['platform']}, Python {env['python']}, {env['cores']} cores, "
          f"load average {' '.join(map(str, env['load_average']))}")
    with tempfile.TemporaryDirectory(prefix="scale-one-machine-") as tmp:
        path = args.world_cache or str(Path(tmp) / "world.npz")
        if os.path.exists(path) and os.path.exists(path + ".json"):
            world = json.load(open(path + ".json"))
            if world["kwargs"] != kwargs:
                sys.exit(f"{path} holds a world built with {world['kwargs']}, not {kwargs}")
        else:
            world = build(kwargs, path)
        print(f"world: {world['users']:,} users x {world['items']:,} items, "
              f"{world['interactions']:,} interactions; built in {world['cpu']:.0f} CPU s / "
              f"{world['wall']:.0f} wall s, peak {world['rss_mb']:,.0f} MB")
        print(f"{'model':<11} {'data CPU/wall s':>16} {'fit CPU/wall s':>16} "
              f"{'eval CPU/wall s':>16} {'peak MB':>8} {'NDCG@10':>8}  note")
        rows = []
        for which in args.models.split(","):
            out = subprocess.run([sys.executable, "-c", CHILD, path, which,
                                  str(args.eval_users), str(args.n_head)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                r = {"model": which, "failed": out.stderr.strip().splitlines()[-1][:200]}
                print(f"{which:<11} failed: {r['failed']}", flush=True)
                rows.append(r)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)

            def pair(key):
                return (f"{r[key + '_cpu_s']:7.1f}/{r[key + '_wall_s']:<7.1f}"
                        if key + "_cpu_s" in r else f"{'-':>16}")
            note = (f"refused: would need {r['would_need_gb']:.0f} GB" if "refused" in r else
                    f"head {r['n_head']:,} items: {r['head_share_train']:.1%} of train, "
                    f"tail {r['tail_share_test']:.1%} of test" if "n_head" in r else "")
            ndcg = f"{r['ndcg@10']:8.4f}" if "ndcg@10" in r else f"{'-':>8}"
            print(f"{which:<11} {pair('data'):>16} {pair('fit'):>16} {pair('eval'):>16} "
                  f"{r['peak_mb']:8,.0f} {ndcg}  {note}", flush=True)
    if args.json:
        target = Path(args.json)
        doc = json.loads(target.read_text()) if target.exists() else {"runs": {}}
        doc["protocol"] = PROTOCOL
        doc["runs"][args.label] = {"machine": env, "world": world,
                                   "command": shlex.join(
                                       ["python", "benchmarks/scale_one_machine.py",
                                        *(argv if argv is not None else sys.argv[1:])]),
                                   "eval_users": args.eval_users, "models": rows}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"merged into {target} under {args.label!r}")


if __name__ == "__main__":
    main()
