"""Classic collaborative filtering on MovieLens, with the protocol of Microsoft Recommenders'
MovieLens benchmark, side by side in one run.

Protocol (printed with the table):

* every rating is a positive (implicit feedback; the rating value is ignored);
* split: a random 25% of each user's ratings held out for test (``random_per_user``), once per
  split seed (default 42, 43 and 44); the table of each seed is printed, then each model's mean
  and spread (sample standard deviation, min and max) over the seeds;
* each model recommends its top 10 among the items the user did not rate in training;
* Precision, Recall, NDCG and MAP at 10, averaged over the users with a test rating. NDCG uses
  binary gains (Microsoft Recommenders' variant); our MAP divides each user's sum by
  min(#relevant, 10), as Microsoft Recommenders' ``map_at_k`` does (their ``map`` divides by
  #relevant, which gives smaller numbers).

Tuning never touches the test part: each model's hyperparameters are chosen by NDCG@10 on a
*validation* split carved from the training part (a random 20% of each user's training
ratings; models fitted on the other 80%), then the chosen models are refitted on the whole
training part and scored once on the test part. The two-stage ranker carves its own
validation shares from whatever training data it is given (see
:mod:`perso_kit.recommenders.ltr`); its objective (LambdaRank or pointwise) is chosen on the
same validation split.

    PERSO_KIT_DATA_DIR=/path/with/movielens python benchmarks/classic_movielens.py
    python benchmarks/classic_movielens.py --datasets demo          # offline, the demo world
    python benchmarks/classic_movielens.py --no-tune                # the kit's defaults
    python benchmarks/classic_movielens.py --seeds 42 43 44 45      # four split seeds
    python benchmarks/classic_movielens.py --datasets ml-100k --ms-split   # their split, seed 42
    python benchmarks/classic_movielens.py --datasets ml-100k --ms-split before-2022

``--ms-split`` replaces the kit's split by Microsoft Recommenders' own
(:func:`perso_kit.split.msr_stratified` with ``filter_by="item"``, as their benchmark notebook
``examples/06_benchmarks/movielens.ipynb`` calls ``python_stratified_split``: 75% of each
movie's ratings for training, seed 42 unless ``--seeds`` says otherwise), and prints the kit's
models beside the ML-100K rows they publish (:data:`MSR_PUBLISHED`), with MAP both ways.
``--ms-split`` alone is their splitter as it is now (rewritten in July 2022);
``--ms-split before-2022`` is the one their code used from 2019 to July 2022, which made all
their published rows but embdotbias's (the ``splitter`` column says which).
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import time

import pandas as pd

K = 10
BARS = {"EASE": 0.47, "ALS": 0.42, "BPR": 0.40}  # NDCG@10 on ML-100K

# hyperparameter grids, searched on the validation split
GRIDS = {
    "ItemKNN": dict(n_neighbors=[50, 100, 200, 400], shrinkage=[0, 10, 50]),
    "EASE": dict(l2=[100, 200, 300, 500, 800, 1500]),
    "ALS": dict(factors=[16, 32, 64, 128], regularization=[1.0, 10.0, 30.0], alpha=[1.0, 5.0]),
    "BPR": [dict(factors=64, learning_rate=0.05, regularization=0.01, iterations=50),
            dict(factors=128, learning_rate=0.05, regularization=0.01, iterations=50),
            dict(factors=128, learning_rate=0.02, regularization=0.003, iterations=60),
            dict(factors=256, learning_rate=0.05, regularization=0.01, iterations=40)],
}
RANKER_OBJECTIVES = ["lambdarank", "binary"]

# Microsoft Recommenders' published ML-100K table (k = 10, their stratified split, seed 42):
# README.md, section "Algorithm Comparison", of github.com/recommenders-team/recommenders at
# commit b02c95e2b98b961f9943ce561bbb03f8dff2f41f (2025-09-29), produced by
# examples/06_benchmarks/movielens.ipynb. Their MAP column is their ``map``: each user's
# average precision divided by #relevant. ALS, SVD and embdotbias there predict ratings
# (explicit feedback), which is why they rank poorly. "splitter": the version of their
# python_stratified_split in use when the row entered the README (git log -S of each number):
# every row but embdotbias's (2025-07-18) dates from 2019-04 to 2021-04, before the splitter
# was rewritten (2022-07-27), so those rows were made on the before-2022 split.
MSR_PUBLISHED = pd.DataFrame(
    [("ALS (Spark, explicit)", 0.004732, 0.044239, 0.048462, 0.017796, "before-2022"),
     ("BiVAE", 0.146126, 0.475077, 0.411771, 0.219145, "before-2022"),
     ("BPR (cornac)", 0.132478, 0.441997, 0.388229, 0.212522, "before-2022"),
     ("embdotbias", 0.018954, 0.117810, 0.104242, 0.042450, "current"),
     ("LightGCN", 0.088526, 0.419846, 0.379626, 0.144336, "before-2022"),
     ("NCF", 0.107720, 0.396118, 0.347296, 0.180775, "before-2022"),
     ("SAR", 0.110591, 0.382461, 0.330753, 0.176385, "before-2022"),
     ("SVD (surprise)", 0.012873, 0.095930, 0.091198, 0.032783, "before-2022")],
    columns=["model", "map per #rel", f"ndcg@{10}", f"precision@{10}", f"recall@{10}",
             "splitter"])


def _configs(grid) -> list[dict]:
    if isinstance(grid, list):
        return grid
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def _classes():
    from perso_kit.recommenders import ALS, BPR, EASE, ItemKNN, Popularity
    return {"Popularity": Popularity, "ItemKNN": ItemKNN, "EASE": EASE, "ALS": ALS, "BPR": BPR}


def _ndcg(model, split) -> float:
    import perso_kit as pk
    return float(pk.evaluate(model, split, k=K, progress=False)[f"ndcg@{K}"].iloc[0])


def tune(tune_split, verbose: bool = True) -> tuple[dict, pd.DataFrame]:
    """Best hyperparameters of each model by validation NDCG@10, and the full search log."""
    from tqdm.auto import tqdm

    classes = _classes()
    best, log = {"Popularity": {}}, []
    for name, grid in GRIDS.items():
        for params in tqdm(_configs(grid), desc=f"tune {name}", disable=not verbose,
                           leave=False):
            t0 = time.perf_counter()
            score = _ndcg(classes[name](**params), tune_split)
            log.append({"model": name, **params, "val_ndcg@10": score,
                        "seconds": time.perf_counter() - t0})
        rows = [r for r in log if r["model"] == name]
        top = max(rows, key=lambda r: r["val_ndcg@10"])
        best[name] = {k: top[k] for k in _configs(grid)[0]}
    return best, pd.DataFrame(log)


def make_ranker(params: dict, objective: str = "lambdarank"):
    """The two-stage ranker: tuned ALS and EASE retrieve, tuned item-kNN and popularity score
    the candidates as features (BPR is left out, as it was when the ranker's settings were
    chosen)."""
    from perso_kit.recommenders import TwoStageRanker
    c = _classes()
    return TwoStageRanker(
        retrievers={"ALS": c["ALS"](**params["ALS"]), "EASE": c["EASE"](**params["EASE"])},
        scorers={"ItemKNN": c["ItemKNN"](**params["ItemKNN"]), "Popularity": c["Popularity"]()},
        n_candidates=100, objective=objective)


def map_per_relevant(per_user: pd.DataFrame) -> float:
    """Microsoft Recommenders' ``map`` (AP@k divided by #relevant) from the kit's per-user
    ``map@k`` (AP@k divided by min(#relevant, k)): the same sum, rescaled per user (as
    :func:`perso_kit.metrics.map_per_relevant_at_k` computes it from the hits)."""
    n_rel = per_user["n_relevant"].to_numpy(dtype=float)
    ap = per_user[f"map@{K}"].to_numpy(dtype=float)
    return float((ap * n_rel.clip(max=K) / n_rel).mean())


def run_dataset(name: str, do_tune: bool = True, seed: int = 42,
                ms_split: str | None = None) -> dict:
    import perso_kit as pk
    from perso_kit.recommenders.ltr import candidate_recall

    ds = pk.load_dataset(name)
    if ms_split:
        split = pk.split.msr_stratified(ds, ratio=0.75, seed=seed, filter_by="item",
                                        before_2022=ms_split == "before-2022")
    else:
        split = pk.split.random_per_user(ds, test_fraction=0.25, seed=seed)
    tune_split = pk.split.random_per_user(split.train, test_fraction=0.2, seed=seed)
    out = {"dataset": repr(ds), "split": split.description, "tuned": do_tune, "seed": seed,
           "splitter": ms_split}

    t0 = time.perf_counter()
    if do_tune:
        params, log = tune(tune_split)
        ranker_val = {obj: _ndcg(make_ranker(params, obj), tune_split)
                      for obj in RANKER_OBJECTIVES}
        objective = max(ranker_val, key=ranker_val.get)
    else:
        params = {n: {} for n in _classes()}
        log, ranker_val, objective = pd.DataFrame(), {}, "lambdarank"
    out.update(params=params, tuning_log=log, ranker_validation=ranker_val,
               objective=objective, tuning_s=time.perf_counter() - t0)

    classes = _classes()
    rows, classic_s = [], 0.0
    models = {n: classes[n](**params[n]) for n in classes}
    models["LightGBM ranker"] = make_ranker(params, objective)
    for model_name, model in models.items():
        t1 = time.perf_counter()
        table, per_user = pk.evaluate(model, split, k=K, progress=False,
                                      return_per_user=True)
        seconds = time.perf_counter() - t1
        if model_name != "LightGBM ranker":
            classic_s += seconds
        row = table.iloc[0].to_dict()
        row["map per #rel"] = map_per_relevant(per_user)
        row["model"] = model_name
        row["fit+eval s"] = seconds
        rows.append(row)
    ranker = models["LightGBM ranker"]
    out["candidate_recall_test"] = candidate_recall(ranker.candidates(split.test_users),
                                                    split.test)
    out["candidate_recall_validation"] = ranker.validation_recall_
    out["importances"] = ranker.feature_importances().head(8)
    out["table"] = pd.DataFrame(rows)
    out["classic_s"] = classic_s
    return out


def available(name: str) -> str | None:
    """None when ``name`` can be loaded without a download, else the reason it cannot."""
    if name == "demo":
        return None
    from perso_kit.data.movielens import find_movielens
    try:
        find_movielens(name, download=False)
        return None
    except Exception as e:  # not on disk: say why, do not download in a benchmark
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"


def print_report(res: dict, name: str) -> None:
    cols = ["model", f"precision@{K}", f"recall@{K}", f"ndcg@{K}", f"map@{K}", "coverage",
            "avg_popularity", "fit+eval s"]
    table = res["table"][cols]
    print(f"\n## {name}: {res['dataset']}")
    print(f"split: {res['split']}")
    if res["tuned"]:
        print(f"tuning on the validation split ({res['tuning_s']:.0f} s): chosen hyperparameters")
        for model, p in res["params"].items():
            if p:
                print(f"  {model:<10} " + ", ".join(f"{k}={v}" for k, v in p.items()))
        rv = ", ".join(f"{k} {v:.4f}" for k, v in res["ranker_validation"].items())
        print(f"  ranker objective by validation NDCG@{K}: {rv} -> {res['objective']}")
    else:
        print("no tuning: the kit's default hyperparameters")
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    best_single = table[table["model"] != "LightGBM ranker"].sort_values(
        f"ndcg@{K}", ascending=False).iloc[0]
    ranker = table[table["model"] == "LightGBM ranker"].iloc[0]
    print(f"\nclassic models (Popularity, ItemKNN, EASE, ALS, BPR), fit + recommend + score: "
          f"{res['classic_s']:.1f} s; ranker: {ranker['fit+eval s']:.1f} s")
    print(f"ranker candidates (top-100 of ALS and of EASE): recall "
          f"{res['candidate_recall_test']:.3f} on test, "
          f"{res['candidate_recall_validation']:.3f} on its validation shares")
    gain = ranker[f"ndcg@{K}"] / best_single[f"ndcg@{K}"] - 1
    print(f"ranker vs best single model ({best_single['model']}): NDCG@{K} "
          f"{ranker[f'ndcg@{K}']:.4f} vs {best_single[f'ndcg@{K}']:.4f} ({gain:+.1%})")
    print("ranker feature importance (gain), top 8: "
          + ", ".join(res["importances"]["feature"].tolist()))
    if name.startswith("ml-100k"):
        nd = dict(zip(table["model"], table[f"ndcg@{K}"]))
        checks = [f"{m} {nd[m]:.4f} >= {b} {'ok' if nd[m] >= b else 'MISSED'}"
                  for m, b in BARS.items()]
        checks.append(f"ranker > best single {'ok' if gain > 0 else 'MISSED'}")
        checks.append(f"classic models under 60 s {'ok' if res['classic_s'] < 60 else 'MISSED'}")
        print("bars: " + "; ".join(checks))


def print_beside_published(res: dict) -> None:
    """The kit's rows and Microsoft Recommenders' published ML-100K rows in one table."""
    kit = res["table"].rename(columns={f"map@{K}": "map per min(#rel,k)"})
    kit = kit.assign(source="perso_kit, this run", splitter=res["splitter"])
    theirs = MSR_PUBLISHED.assign(source="MS Recommenders, published")
    theirs["map per min(#rel,k)"] = float("nan")
    cols = ["source", "model", "splitter", f"precision@{K}", f"recall@{K}", f"ndcg@{K}",
            "map per min(#rel,k)", "map per #rel"]
    both = pd.concat([kit[cols], theirs[cols]], ignore_index=True)
    print(f"\n### beside Microsoft Recommenders' published ML-100K table (README.md, "
          "\"Algorithm Comparison\"; NaN: not published; a row is on the same split as the "
          f"kit's when its splitter is {res['splitter']!r})")
    print("map per min(#rel,k): AP@10 divided by min(#relevant, 10) (the kit's map@10, their "
          "map_at_k); map per #rel: AP@10 divided by #relevant (their map, the MAP column "
          "they publish)")
    print(both.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


METRICS = [f"ndcg@{K}", f"precision@{K}", f"recall@{K}", f"map@{K}"]


def seed_summary(results: list[dict]) -> pd.DataFrame:
    """Each model's mean, sample standard deviation, min and max of every metric over seeds."""
    tables = pd.concat([r["table"].assign(seed=r["seed"]) for r in results])
    g = tables.groupby("model", sort=False)[METRICS]
    out = pd.concat({"mean": g.mean(), "std": g.std(ddof=1), "min": g.min(), "max": g.max()},
                    axis=1)
    out.columns = [f"{metric} {stat}" for stat, metric in out.columns]
    return out[[f"{m} {s}" for m in METRICS for s in ("mean", "std", "min", "max")]]


def print_seed_summary(results: list[dict], name: str) -> None:
    seeds = [r["seed"] for r in results]
    summary = seed_summary(results)
    listed = ", ".join(map(str, seeds))
    print(f"\n## {name}: mean and spread over {len(seeds)} split seeds ({listed};"
          " std is the sample standard deviation; "
          + ("each seed tuned on its own validation split)" if results[0]["tuned"]
             else "the kit's default hyperparameters)"))
    nd = f"ndcg@{K}"
    print(summary[[f"{nd} mean", f"{nd} std", f"{nd} min", f"{nd} max"]].to_string(
        float_format=lambda v: f"{v:.4f}"))
    others = [f"{m} {s}" for m in METRICS[1:] for s in ("mean", "std")]
    print()
    print(summary[others].to_string(float_format=lambda v: f"{v:.4f}"))
    if name == "ml-100k" and len(seeds) > 1:
        mean = summary[f"{nd} mean"]
        checks = [f"{m} mean {mean[m]:.4f} >= {b} {'ok' if mean[m] >= b else 'MISSED'} "
                  f"(min {summary.loc[m, f'{nd} min']:.4f})" for m, b in BARS.items()]
        per_seed = pd.concat([r["table"].set_index("model")[nd].rename(r["seed"])
                              for r in results], axis=1)
        margin = per_seed.loc["LightGBM ranker"] - per_seed.drop("LightGBM ranker").max()
        checks.append(f"ranker above the best single model on {int((margin > 0).sum())} of "
                      f"{len(seeds)} seeds (margins {', '.join(f'{v:+.4f}' for v in margin)})")
        print("bars over seeds: " + "; ".join(checks))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["demo", "ml-100k", "ml-1m"])
    parser.add_argument("--no-tune", action="store_true", help="use the default hyperparameters")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44],
                        help="split seeds (each gets its own split, tuning and table)")
    parser.add_argument("--ms-split", nargs="?", const="current", default=None,
                        choices=["current", "before-2022"],
                        help="Microsoft Recommenders' stratified split (75%% of each item's "
                             "ratings for training; seed 42 unless --seeds is given), as their "
                             "code does it now or did before July 2022, and their published "
                             "ML-100K rows beside the kit's")
    args = parser.parse_args(argv)
    if args.ms_split and parser.get_default("seeds") == args.seeds:
        args.seeds = [42]

    print("# Classic collaborative filtering: the MovieLens benchmark protocol")
    print(f"date {datetime.date.today()}, {platform.platform()}, Python "
          f"{platform.python_version()}, {os.cpu_count()} cores")
    held_out = (f"Microsoft Recommenders' stratified split ({args.ms_split}), 25% of each "
                "item's ratings held out" if args.ms_split
                else "random 25% of each user's ratings held out")
    print(f"protocol: every rating is a positive; {held_out} "
          f"for test (seeds {', '.join(map(str, args.seeds))}); top-{K} among items not "
          "rated in training; metrics "
          f"averaged over users with a test rating.")
    print(f"NDCG@{K}: binary gains (Microsoft Recommenders' variant). MAP@{K}: each user's "
          f"average precision divided by min(#relevant, {K}), as Microsoft Recommenders' "
          "map_at_k does (their map divides by #relevant, which gives smaller numbers).")
    print("tuning: hyperparameters chosen by NDCG@10 on a validation split carved from the "
          "training part (20% of each user's training ratings); the test part is used once.")
    for name in args.datasets:
        why = available(name)
        if why:
            print(f"\n## {name}: skipped, not available locally ({why})")
            continue
        results = []
        for seed in args.seeds:
            results.append(run_dataset(name, do_tune=not args.no_tune, seed=seed,
                                       ms_split=args.ms_split))
            print_report(results[-1], f"{name} (split seed {seed})")
            if args.ms_split and name == "ml-100k":
                print_beside_published(results[-1])
        print_seed_summary(results, name)


if __name__ == "__main__":
    main()
