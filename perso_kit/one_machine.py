"""Large data on one machine: measure what each step costs, and evaluate in chunks of users.

Three small tools the scale notebook (13) and ``benchmarks/scale_one_machine.py`` share:

* :func:`measure` times a block of code in CPU seconds *and* wall seconds (on a shared machine
  the two differ: wall time includes waiting for a core) and reads the process's peak memory;
* :func:`evaluate_in_chunks` recommends for a large set of users a chunk at a time, with a
  progress bar, then scores all lists with the standard protocol
  (:func:`perso_kit.evaluate.evaluate_recommendations`): memory is bounded by one chunk's
  users x items scores, and a long run shows how far it has got;
* :func:`sample_users` draws the users to evaluate (a seeded sample of those with test
  interactions: NDCG@10 on 10,000 users has a standard error of a few thousandths) and
  :func:`tail_share` says what share of the test interactions fall outside a set of items (the
  ceiling on what a model restricted to those items gives up).

Example
-------
>>> from perso_kit import load_dataset, split
>>> from perso_kit.recommenders import Popularity
>>> s = split.random_per_user(load_dataset("demo"), seed=0)
>>> with measure() as cost:
...     model = Popularity().fit(s.train)
>>> sorted(cost)
['cpu_s', 'peak_mb', 'wall_s']
>>> table = evaluate_in_chunks(model, s, users=sample_users(s, 200, seed=0), chunk_size=64,
...                            progress=False)
>>> int(table.loc[0, "users"])
200
"""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .evaluate import check_k, evaluate_recommendations
from .recommenders.base import Recommender
from .split import Split


def peak_memory_mb() -> float:
    """The largest resident memory this process has had so far, in MB (``getrusage``'s
    ``ru_maxrss``: kilobytes on Linux, bytes on macOS). It never goes down: to know one step's
    peak, run it in a fresh process (as the benchmark does)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def measure():
    """Time the ``with`` block: yields a dict that holds, after the block, ``cpu_s`` (CPU
    seconds of the whole process, all threads), ``wall_s`` and ``peak_mb`` (the process's peak
    memory so far, see :func:`peak_memory_mb`).

    >>> with measure() as cost:
    ...     total = sum(range(1000))
    >>> cost["cpu_s"] >= 0 and cost["wall_s"] >= 0
    True
    """
    cost: dict[str, float] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        yield cost
    finally:
        cost["cpu_s"] = time.process_time() - cpu
        cost["wall_s"] = time.perf_counter() - wall
        cost["peak_mb"] = peak_memory_mb()


def sample_users(split: Split, n: int, seed: int = 0) -> np.ndarray:
    """``n`` users drawn without replacement (seeded) among those with a test interaction,
    sorted; all of them when there are ``n`` or fewer.

    >>> from perso_kit import load_dataset, split
    >>> s = split.random_per_user(load_dataset("demo"), seed=0)
    >>> len(sample_users(s, 10)), len(sample_users(s, 10**6))
    (10, 1000)
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    users = np.sort(split.test.interactions["user_id"].unique())
    if n >= len(users):
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=n, replace=False))


def evaluate_in_chunks(model: Recommender, split: Split, users=None, k: int = 10,
                       chunk_size: int = 2000, progress: bool = True,
                       name: str | None = None) -> pd.DataFrame:
    """Evaluate a fitted ``model`` on ``users`` (default: every user with a test interaction),
    recommending for ``chunk_size`` users at a time with a progress bar.

    The numbers are those of :func:`perso_kit.evaluate` with ``fit=False`` on the same users
    (same protocol, same columns but the timing ones); only the work is cut into chunks.
    """
    k = check_k(k)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if users is None:
        users = np.sort(split.test.interactions["user_id"].unique())
    users = np.asarray(users)
    frames = []
    starts = range(0, len(users), chunk_size)
    for start in tqdm(starts, desc=f"recommend ({name or model.name})", unit="chunk",
                      disable=not progress):
        frames.append(model.recommend(users=users[start:start + chunk_size], k=k))
    recs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["user_id", "item_id", "score", "rank"])
    return evaluate_recommendations(recs, split, k=k, users=users, model=name or model.name)


def tail_share(split: Split, head_items) -> float:
    """Share of the test interactions whose item is *not* in ``head_items``.

    >>> from perso_kit import load_dataset, split
    >>> s = split.random_per_user(load_dataset("demo"), seed=0)
    >>> tail_share(s, s.train.item_ids), tail_share(s, [])
    (0.0, 1.0)
    """
    items = split.test.interactions["item_id"].to_numpy()
    if len(items) == 0:
        raise ValueError("the split has no test interaction")
    return float(1.0 - np.isin(items, np.asarray(list(head_items))).mean())


__all__ = ["measure", "peak_memory_mb", "evaluate_in_chunks", "sample_users", "tail_share"]
