"""How fast is BPR with uniform negatives? Per-epoch CPU beside ``implicit``'s own BPR.

For each data set (random 25% of each user's ratings held out, seed 42), the same factors and
one thread:

* ``implicit`` -- ``implicit``'s BPR on the training matrix as it is (its negatives are drawn
  from the log, i.e. by popularity): the reference speed;
* ``placeholder`` -- the kit's former route to uniform negatives: ``implicit`` on the matrix
  plus one placeholder user whose row makes every item equally frequent (each epoch draws, and
  skips, the placeholder's entries too);
* ``kit uniform`` -- :class:`perso_kit.recommenders.BPR` (``negatives="uniform"``): the kit's
  compiled loop drawing as many triples as there are interactions, negatives uniform.

Per-epoch seconds are CPU (``time.process_time``) and wall seconds of a fit divided by its
epochs, the median of 3 fits, after one warm-up fit (``numba`` compiles once). Then NDCG@10 of
the uniform BPR at the kit's defaults (50 epochs), on the test part. The bar of the project:
uniform per-epoch CPU <= 2x ``implicit``'s on ML-100K and ml-latest-small; NDCG@10 on ML-100K
>= 0.41.

    PERSO_KIT_DATA_DIR=/path/with/movielens python benchmarks/bpr_speed.py
    python benchmarks/bpr_speed.py --datasets demo --factors 64 --epochs 20
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def _placeholder(X: sp.csr_matrix) -> sp.csr_matrix:
    """The matrix plus one user whose row lists item i (max count + 1 - count_i) times."""
    counts = np.diff(X.tocsc().indptr)
    extra = np.repeat(np.arange(X.shape[1]), counts.max() + 1 - counts)
    indices = np.concatenate([X.indices, extra]).astype(X.indices.dtype)
    indptr = np.append(X.indptr, X.indptr[-1] + len(extra))
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                         shape=(X.shape[0] + 1, X.shape[1]))


def _implicit_fit(X, factors, epochs):
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    with threadpool_limits(limits=1, user_api="blas"):
        BayesianPersonalizedRanking(factors=factors, iterations=epochs, num_threads=1,
                                    verify_negative_samples=True, random_state=42).fit(
            X, show_progress=False)


def _kit_fit(train, factors, epochs):
    from perso_kit.recommenders import BPR
    BPR(factors=factors, iterations=epochs, show_progress=False, seed=42).fit(train)


def per_epoch(fit, epochs: int, repeats: int = 3) -> tuple[float, float]:
    """Median (CPU, wall) seconds per epoch of ``fit(epochs)``, after one warm-up call."""
    fit(1)
    cpus, walls = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fit(epochs)
        cpus.append((time.process_time() - c) / epochs)
        walls.append((time.perf_counter() - w) / epochs)
    return statistics.median(cpus), statistics.median(walls)


def run(name: str, factors: int, epochs: int) -> dict:
    import perso_kit as pk
    from perso_kit.recommenders import BPR

    ds = pk.load_dataset(name)
    split = pk.split.random_per_user(ds, test_fraction=0.25, seed=42)
    X = split.train.matrix().tocsr().astype(np.float32)
    P = _placeholder(X)
    out = {"dataset": repr(split.train), "placeholder_nnz": P.nnz, "nnz": X.nnz}
    out["implicit"] = per_epoch(lambda e: _implicit_fit(X, factors, e), epochs)
    out["placeholder"] = per_epoch(lambda e: _implicit_fit(P, factors, e), epochs)
    out["kit uniform"] = per_epoch(lambda e: _kit_fit(split.train, factors, e), epochs)
    model = BPR(factors=factors, show_progress=False, seed=42)
    c = time.process_time()
    table = pk.evaluate(model, split, k=10, progress=False)
    out["ndcg"] = float(table["ndcg@10"].iloc[0])
    out["fit_cpu"] = time.process_time() - c
    out["iterations"] = model.iterations
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    import implicit
    import numba

    print("# BPR with uniform negatives: per-epoch CPU beside implicit's BPR")
    print(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; implicit "
          f"{implicit.__version__}, numba {numba.__version__}")
    print(f"factors {args.factors}, one thread, per-epoch seconds = median of 3 fits of "
          f"{args.epochs} epochs / {args.epochs}, after a warm-up fit")
    for name in args.datasets:
        r = run(name, args.factors, args.epochs)
        base = r["implicit"][0]
        print(f"\n## {name}: {r['dataset']} (training part)")
        print(f"{'variant':<13} {'CPU ms/epoch':>13} {'wall ms/epoch':>14} {'CPU vs implicit':>16}"
              f"  triples drawn per epoch")
        for variant, drawn in [("implicit", r["nnz"]), ("placeholder", r["placeholder_nnz"]),
                               ("kit uniform", r["nnz"])]:
            cpu, wall = r[variant]
            print(f"{variant:<13} {1e3 * cpu:13.1f} {1e3 * wall:14.1f} {cpu / base:15.2f}x"
                  f"  {drawn:,}")
        ratio = r["kit uniform"][0] / base
        print(f"kit uniform BPR at its defaults ({r['iterations']} epochs): NDCG@10 "
              f"{r['ndcg']:.4f} (fit + evaluate {r['fit_cpu']:.1f} CPU s)")
        bars = [f"CPU <= 2x implicit {'ok' if ratio <= 2 else 'MISSED'} ({ratio:.2f}x)"]
        if name == "ml-100k":
            bars.append(f"NDCG@10 >= 0.41 {'ok' if r['ndcg'] >= 0.41 else 'MISSED'}")
        print("bars: " + "; ".join(bars))


if __name__ == "__main__":
    main()
