"""Offline evaluation: the same code scores every recommender on the same split.

The protocol, spelled out so a number always says what it means:

1. fit each model on ``split.train``;
2. for every user with at least one test interaction, ask for the top ``k`` items, excluding
   items the user interacted with in training;
3. an item in a user's list is *relevant* when the user interacted with it in ``split.test``
   (with a rating of at least ``min_rating`` if one is given);
4. compute per-user metrics (:mod:`perso_kit.metrics`) and average them over users; the
   beyond-accuracy metrics describe all lists together.

>>> import perso_kit as pk
>>> from perso_kit.recommenders import Popularity
>>> split = pk.split.random_per_user(pk.load_dataset("demo"), seed=42)
>>> table = pk.evaluate({"Popularity": Popularity()}, split, k=10)
>>> list(table.columns[:4])
['model', 'segment', 'users', 'precision@10']

**Uncertainty.** A mean over a few hundred users is an estimate: another sample of users would
give another number. ``ci=0.95`` adds a *bootstrap confidence interval* to every accuracy metric
(columns ``ndcg@10_lo`` and ``ndcg@10_hi``, ...): resample the evaluated users with replacement
``n_boot`` times, average the metric in each resample, keep the middle 95% of those averages.
The draws depend only on the number of users, ``n_boot`` and ``seed``, so every model scored on
the same users is resampled the same way, and two models are compared by the interval of their
*paired* difference (:func:`paired_difference`), not by whether their own intervals overlap.
The interval covers the sampling of users only: a different hold-out (split seed) or training
seed moves the numbers too. Beyond-accuracy metrics (coverage, ...) describe all lists
together and get no interval. The one exception is the intra-list diversity ``ild@10``
(:func:`genre_diversity`): it is a per-user number like the accuracy metrics, so it gets an
interval (``ild@10_lo``, ``ild@10_hi``) from the same resamples.

>>> from perso_kit.evaluate import paired_difference
>>> from perso_kit.recommenders import ItemKNN
>>> table, per_user = pk.evaluate({"Popularity": Popularity(), "ItemKNN": ItemKNN()}, split,
...                               k=10, ci=0.95, seed=0, return_per_user=True, progress=False)
>>> row = table.iloc[0]
>>> bool(row["ndcg@10_lo"] < row["ndcg@10"] < row["ndcg@10_hi"])
True
>>> scores = per_user.pivot(index="user_id", columns="model", values="ndcg@10")
>>> d = paired_difference(scores["ItemKNN"], scores["Popularity"], seed=0)
>>> bool(d.lo < d.estimate < d.hi)
True
"""
from __future__ import annotations

import time
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from . import metrics as M
from .recommenders.base import Recommender
from .split import Split

#: default activity buckets (training interactions per user) for ``by="activity"``
ACTIVITY_BINS = (0, 5, 20, 50, np.inf)


def check_k(k) -> int:
    """``k`` as an int, or a ``ValueError`` saying what a list length must be.

    >>> check_k(10), check_k(np.int64(5))
    (10, 5)
    >>> check_k(2.5)
    Traceback (most recent call last):
    ...
    ValueError: k must be a whole number of at least 1 (the length of each list), got 2.5
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError("k must be a whole number of at least 1 (the length of each list), "
                         f"got {k!r}")
    return int(k)


def activity_segments(split: Split, bins=ACTIVITY_BINS) -> pd.Series:
    """Label each user by how many training interactions they have: "<=5", "6-20", ...

    Returns a Series indexed by ``user_id`` (an ordered categorical), usable as ``by=``.
    """
    activity = split.train.user_activity()
    labels = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        labels.append(f"<={int(hi)}" if lo == 0 else f">{int(lo)}" if np.isinf(hi)
                      else f"{int(lo) + 1}-{int(hi)}")
    cut = pd.cut(activity, bins=list(bins), labels=labels, include_lowest=True)
    return cut.rename("segment")


def recommendation_matrix(recs: pd.DataFrame, users: np.ndarray, split: Split,
                          k: int) -> np.ndarray:
    """Turn a recommendation frame into a users x k array of item column indices (-1 pads).

    Checks what a recommender returned: unknown items, unknown users and repeated items in one
    list are errors that name the offenders.
    """
    missing = [c for c in ("user_id", "item_id") if c not in recs.columns]
    if missing:
        raise ValueError(f"recommendations lack columns {missing}; expected user_id, item_id, "
                         "score, rank")
    catalog = split.train
    bad_items = ~recs["item_id"].isin(catalog.item_ids)
    if bad_items.any():
        raise ValueError(f"recommendations name {int(bad_items.sum())} unknown item ids, e.g. "
                         f"{recs.loc[bad_items, 'item_id'].unique()[:5].tolist()}: every "
                         "recommended item must be in the catalog")
    dup = recs.duplicated(["user_id", "item_id"])
    if dup.any():
        raise ValueError(f"recommendations repeat an item in one list, e.g. "
                         f"{recs.loc[dup, ['user_id', 'item_id']].head(3).to_dict('records')}")
    order = ["user_id", "rank"] if "rank" in recs.columns else ["user_id"]
    recs = recs.sort_values(order, kind="stable")
    pos = recs.groupby("user_id", sort=False).cumcount().to_numpy()
    keep = pos < k
    row_of = pd.Index(users).get_indexer(recs["user_id"].to_numpy())
    keep &= row_of >= 0
    out = np.full((len(users), k), -1, dtype=np.int64)
    out[row_of[keep], pos[keep]] = catalog.item_index(recs["item_id"].to_numpy()[keep])
    return out


def score_lists(rec_idx: np.ndarray, users: np.ndarray, split: Split,
                min_rating: float | None = None) -> pd.DataFrame:
    """Per-user accuracy metrics of ready-made lists (``rec_idx`` from
    :func:`recommendation_matrix`). One row per user."""
    test = split.test.interactions
    if min_rating is not None:
        test = test[test["rating"] >= min_rating]
    rows = pd.Index(users).get_indexer(test["user_id"].to_numpy())
    ok = rows >= 0
    relevant = sp.csr_matrix(
        (np.ones(ok.sum(), np.float32), (rows[ok], split.test.item_index(test["item_id"][ok]))),
        shape=(len(users), split.test.n_items))
    relevant.sum_duplicates()
    n_rel = np.diff(relevant.indptr)
    hits = M.hit_matrix(rec_idx, relevant)
    k = rec_idx.shape[1]
    table = {"user_id": users, "n_relevant": n_rel}
    for name, fn in M.ACCURACY_METRICS.items():
        table[f"{name}@{k}"] = fn(hits, n_rel)
    return pd.DataFrame(table)


def _beyond_accuracy(rec_idx: np.ndarray, split: Split) -> dict:
    pop = split.train.item_popularity().to_numpy()
    n_items = split.train.n_items
    return {
        "coverage": M.catalog_coverage(rec_idx, n_items),
        "avg_popularity": M.average_popularity(rec_idx, pop),
        "long_tail_share": M.long_tail_share(rec_idx, pop),
        "exposure_gini": M.exposure_gini(rec_idx, n_items),
        "novelty": M.novelty(rec_idx, pop, split.train.n_users),
    }


def genre_diversity(rec_idx: np.ndarray, split: Split) -> np.ndarray:
    """Per-user intra-list diversity of ready-made lists on the catalog's genres: the mean
    Jaccard distance between the genre sets of every pair of items in a list
    (:func:`perso_kit.metrics.intra_list_diversity`; NaN for a list of fewer than two)."""
    genres, _ = split.train.genre_matrix()
    return M.intra_list_diversity(rec_idx, genres, metric="jaccard")


def _diversity_columns(ild: np.ndarray, name: str, ci: float | None, n_boot: int,
                       seed: int | None) -> dict:
    """The ILD column of one row (mean over users whose list has a pair), with its bootstrap
    interval when ``ci`` is given, drawn with the same resamples of users as the accuracy
    metrics (users without a pair are left out of each resample's mean)."""
    valid = np.isfinite(ild)
    out = {name: float(ild[valid].mean()) if valid.any() else np.nan}
    if ci is not None:
        if valid.any():
            idx = bootstrap_indices(len(ild), n_boot, seed)
            total = resampled_means(np.where(valid, ild, 0.0), idx)
            share = resampled_means(valid.astype(float), idx)
            means = np.divide(total, share, out=np.full(len(total), np.nan), where=share > 0)
            lo, hi = np.nanquantile(means, [(1 - ci) / 2, (1 + ci) / 2])
        else:
            lo = hi = np.nan
        out.update({f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
    return out


# ----------------------------------------------------------------------------- uncertainty
class Interval(NamedTuple):
    """A point estimate with a bootstrap confidence interval ``[lo, hi]``."""

    estimate: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        """True when 0 lies outside ``[lo, hi]``: for a paired difference, the two models are
        distinguishable on these users at this confidence level."""
        return bool(self.lo > 0 or self.hi < 0)


def bootstrap_indices(n_users: int, n_boot: int = 1000, seed: int | None = 0) -> np.ndarray:
    """``n_boot`` resamples of ``n_users`` positions, drawn with replacement: an
    ``n_boot x n_users`` integer array whose row ``b`` lists the users of resample ``b``.

    The draws depend only on ``(n_users, n_boot, seed)``: every model scored on the same users
    is resampled identically, which is what makes paired comparisons possible.
    """
    if n_users < 1:
        raise ValueError("cannot bootstrap an empty set of users")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n_users, size=(n_boot, n_users))


def resampled_means(values, idx: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (one row per user; one column per metric, or 1-D) in each resample
    of ``idx`` (from :func:`bootstrap_indices`). Returns ``n_boot`` rows (x metrics)."""
    values = np.asarray(values, dtype=float)
    flat = values.ndim == 1
    v = values[:, None] if flat else values
    out = np.empty((idx.shape[0], v.shape[1]))
    step = max(1, 4_000_000 // max(1, idx.shape[1] * v.shape[1]))  # bound the memory used
    for start in range(0, idx.shape[0], step):
        out[start:start + step] = v[idx[start:start + step]].mean(axis=1)
    return out[:, 0] if flat else out


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci is a confidence level between 0 and 1 (e.g. 0.95), got {ci}")


def _quantiles(means: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return lo, hi


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a proportion ``k / n`` (``nan`` when
    ``n = 0``): for shares counted over few cases (tasks, claims, pairs), where a normal
    approximation would leave [0, 1]. ``z = 1.96`` gives 95 %.

    >>> [round(x, 3) for x in wilson_interval(2, 4)]
    [0.15, 0.85]
    """
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_interval(values, ci: float = 0.95, n_boot: int = 1000,
                       seed: int | None = 0) -> Interval:
    """Percentile bootstrap confidence interval of the mean of per-user ``values``.

    >>> bootstrap_interval([0.5, 0.5, 0.5])           # no spread, no uncertainty
    Interval(estimate=0.5, lo=0.5, hi=0.5)
    """
    _check_ci(ci)
    values = np.asarray(values, dtype=float).ravel()
    means = resampled_means(values, bootstrap_indices(len(values), n_boot, seed))
    lo, hi = _quantiles(means, ci)
    return Interval(float(values.mean()), float(lo), float(hi))


def paired_difference(a, b, ci: float = 0.95, n_boot: int = 1000,
                      seed: int | None = 0) -> Interval:
    """Bootstrap interval of ``mean(a) - mean(b)`` for two models scored on the same users.

    Each resample draws users, then takes both models' values *of those users*: the
    difference is computed user by user, so the user-to-user spread that both models share
    (easy users are easy for everyone) cancels out. Two models are distinguishable on these
    users when the interval excludes 0 (``result.excludes_zero``).

    Parameters
    ----------
    a, b : per-user values (e.g. NDCG@10) of two models
        Arrays in the same user order, or Series indexed by user id (aligned on it; both must
        hold the same users). ``per_user.pivot(index="user_id", columns="model",
        values="ndcg@10")`` from ``evaluate(..., return_per_user=True)`` gives one column per
        model.
    ci, n_boot, seed
        Confidence level, number of resamples, random seed (the same seed as ``evaluate``
        draws the same resamples of the same users).

    Returns
    -------
    Interval(estimate, lo, hi)

    >>> paired_difference([0.2, 0.4, 0.9], [0.2, 0.4, 0.9])   # a model against itself
    Interval(estimate=0.0, lo=0.0, hi=0.0)
    >>> paired_difference([1.0, 1.0], [0.0, 0.5], seed=1).estimate
    0.75
    """
    _check_ci(ci)
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if a.index.has_duplicates or b.index.has_duplicates:
            raise ValueError("a user id appears twice: pass one value per user")
        if set(a.index) != set(b.index):
            only = a.index.symmetric_difference(b.index)
            raise ValueError(f"the two models were scored on different users ({len(only)} "
                             f"differ, e.g. {only[:5].tolist()}): a paired comparison needs "
                             "the same users")
        b = b.reindex(a.index)
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b hold {len(a)} and {len(b)} users: a paired comparison "
                         "needs one value per user for both models, in the same order")
    return bootstrap_interval(a - b, ci=ci, n_boot=n_boot, seed=seed)


# ----------------------------------------------------------------------------- scoring
def evaluate_recommendations(recs: pd.DataFrame, split: Split, k: int = 10, users=None,
                             by: str | pd.Series | None = None, min_rating: float | None = None,
                             model: str = "model", ci: float | None = None, n_boot: int = 1000,
                             seed: int | None = 0, return_per_user: bool = False):
    """Score a ready-made recommendation frame (from any source) with the standard protocol.

    The same code :func:`evaluate` uses after calling ``recommend``; handy for lists produced
    outside a :class:`~perso_kit.recommenders.base.Recommender` (say, re-ranked by an LLM).
    ``ci``, ``n_boot``, ``seed`` and ``return_per_user`` work as in :func:`evaluate`.
    """
    k = check_k(k)
    if ci is not None:
        _check_ci(ci)
    users = _eval_users(split, users, min_rating)
    rec_idx = recommendation_matrix(recs, users, split, k)
    per_user = score_lists(rec_idx, users, split, min_rating)
    metric_cols = list(per_user.columns[2:])
    ild_col = f"ild@{k}"
    per_user[ild_col] = genre_diversity(rec_idx, split)
    segments = _segments(split, by, users)
    rows = []
    for seg_name, mask in segments:
        if not mask.any():
            continue
        row = {"model": model, "segment": seg_name, "users": int(mask.sum())}
        values = per_user.loc[mask, metric_cols].to_numpy(dtype=float)
        means = values.mean(axis=0)
        if ci is None:
            row.update(zip(metric_cols, means))
        else:
            boot = resampled_means(values, bootstrap_indices(len(values), n_boot, seed))
            lo, hi = _quantiles(boot, ci)
            for j, name in enumerate(metric_cols):
                row.update({name: means[j], f"{name}_lo": lo[j], f"{name}_hi": hi[j]})
        row.update(_beyond_accuracy(rec_idx[mask], split))
        row.update(_diversity_columns(per_user.loc[mask, ild_col].to_numpy(dtype=float),
                                      ild_col, ci, n_boot, seed))
        rows.append(row)
    table = pd.DataFrame(rows)
    if return_per_user:
        return table, per_user.assign(model=model)[["model", *per_user.columns]]
    return table


def _eval_users(split: Split, users, min_rating) -> np.ndarray:
    test = split.test.interactions
    if min_rating is not None:
        test = test[test["rating"] >= min_rating]
    with_test = np.sort(test["user_id"].unique())
    if users is None:
        return with_test
    users = np.asarray(list(users))
    split.train.user_index(users)  # unknown users fail here, with their ids
    return users[np.isin(users, with_test)]


def _segments(split: Split, by, users: np.ndarray):
    yield "all", np.ones(len(users), dtype=bool)
    if by is None:
        return
    labels = activity_segments(split) if isinstance(by, str) and by == "activity" else by
    if not isinstance(labels, pd.Series):
        raise ValueError("by must be 'activity' or a Series mapping user_id to a segment label")
    lab = labels.reindex(users)
    categories = (lab.cat.categories if isinstance(lab.dtype, pd.CategoricalDtype)
                  else pd.unique(lab.dropna()))
    for c in categories:
        yield str(c), (lab == c).to_numpy()


def evaluate(recommenders: Mapping[str, Recommender] | Recommender, split: Split, k: int = 10,
             users=None, by: str | pd.Series | None = None, min_rating: float | None = None,
             fit: bool = True, items=None, progress: bool | None = None,
             ci: float | None = None, n_boot: int = 1000, seed: int | None = 0,
             return_per_user: bool = False):
    """Fit and score recommenders on one split with the protocol in the module docstring.

    Parameters
    ----------
    recommenders : dict of name -> Recommender, or one Recommender
    split : Split
    k : int
        List length (at least 1).
    users : ids, optional
        Evaluate only these users (those without test interactions are skipped).
    by : "activity" or Series user_id -> label, optional
        Add one row per segment (``"activity"``: training-interaction buckets <=5, 6-20,
        21-50, >50) below the ``"all"`` row of each model.
    min_rating : float, optional
        Count a test interaction as relevant only with this rating or more.
    fit : bool
        Fit each model on ``split.train`` first (set False for models already fitted on it).
    items : ids, optional
        Recommend only among these items (e.g. the new releases of a cold-start split).
    progress : bool, optional
        Show a progress bar over models (default: when there is more than one).
    ci : float, optional
        Confidence level (e.g. 0.95) of a bootstrap interval over users for every accuracy
        metric: adds ``<metric>_lo`` and ``<metric>_hi`` after each of them (see the module
        docstring). Default: no interval, and the table is exactly as without these options.
    n_boot : int
        Number of bootstrap resamples (with ``ci``).
    seed : int, optional
        Seed of the resamples; every model (and every segment of a given size) is resampled
        with the same draws of users.
    return_per_user : bool
        Also return the per-user accuracy table (one row per model and user: ``model``,
        ``user_id``, ``n_relevant`` and the metrics), the input of :func:`paired_difference`.

    Returns
    -------
    DataFrame, one row per (model, segment): ``users``, the accuracy metrics at ``k``
    (precision, recall, ndcg, map, mrr, hit_rate; with ``ci``, each followed by its ``_lo`` and
    ``_hi`` bounds), the beyond-accuracy metrics (coverage, avg_popularity, long_tail_share,
    exposure_gini, novelty), the intra-list diversity ``ild@k`` (mean Jaccard distance between
    the genre sets of the items of each list, averaged over users; with ``ci``, followed by
    ``ild@k_lo`` and ``ild@k_hi``), and ``fit_s``/``recommend_s`` seconds. With
    ``return_per_user=True``, the pair ``(table, per_user)``; ``per_user`` holds ``ild@k``
    too.
    """
    k = check_k(k)
    if ci is not None:
        _check_ci(ci)
    if isinstance(recommenders, Recommender):
        recommenders = {recommenders.name: recommenders}
    eval_users = _eval_users(split, users, min_rating)
    if len(eval_users) == 0:
        raise ValueError("no user to evaluate: none of the requested users has a relevant "
                         "test interaction in this split")
    show = len(recommenders) > 1 if progress is None else progress
    tables, per_users = [], []
    for name, model in tqdm(recommenders.items(), desc="evaluate", disable=not show):
        t0 = time.perf_counter()
        if fit:
            model.fit(split.train)
        t1 = time.perf_counter()
        recs = model.recommend(users=eval_users, k=k, items=items)
        t2 = time.perf_counter()
        table, per_user = evaluate_recommendations(
            recs, split, k=k, users=eval_users, by=by, min_rating=min_rating, model=name,
            ci=ci, n_boot=n_boot, seed=seed, return_per_user=True)
        table["fit_s"] = t1 - t0
        table["recommend_s"] = t2 - t1
        tables.append(table)
        per_users.append(per_user)
    table = pd.concat(tables, ignore_index=True)
    if return_per_user:
        return table, pd.concat(per_users, ignore_index=True)
    return table
