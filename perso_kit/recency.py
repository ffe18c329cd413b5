"""Does the order of a user's history carry signal? Warm and cold targets, and a recency check.

A leave-last-one-out test (:func:`perso_kit.split.leave_last_n`) holds out each user's *last*
interaction. Two things decide what such a test measures:

* **What is held out.** On the demo world a user's last watch is often a *new release* (an item
  that came out after the cut-off, ``ds.meta["new_item_ids"]``). :func:`target_kinds` labels
  each held-out target *cold* (a new release) or *warm* (an older item), so that every number
  can be read for each side apart (``evaluate(..., by=target_kinds(...))``).
* **Whether order matters.** A prompt that says "the most recent watches matter most" can only
  help if the most recent watches say more about the next one than the whole history does.
  :func:`recency_check` measures that with no LLM: the same content model re-ranks the same
  candidates twice, once from the whole history (recency-blind) and once from the last ``recent``
  watches only (recency-aware), and the paired difference, with its bootstrap interval, says
  whether the order carries signal on these users.

In the demo world, each user's watches are ordered by a moving *current interest* (see
:mod:`perso_kit.data.demo`, ``drift``): there the recency-aware model wins on warm targets. In a
world generated with ``make_world(drift=0)`` (random order within a user) it does not (fewer
watches only make a noisier profile): the test suite checks both, so this check is shown to fire
when the signal is there and to stay quiet when it is not.

Example
-------
>>> from perso_kit.data.demo import make_world
>>> from perso_kit.split import leave_last_n
>>> ds = make_world(seed=42).dataset
>>> split = leave_last_n(ds, n=1)
>>> kinds = target_kinds(split, ds.meta["new_item_ids"])
>>> sorted(kinds.unique())
['cold: new release', 'warm: older item']
>>> int(last_n(split.train, 10).user_activity().max())
10
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data.dataset import Dataset
from .evaluate import evaluate_recommendations, paired_difference

COLD, WARM = "cold: new release", "warm: older item"


def target_kinds(split, new_item_ids) -> pd.Series:
    """``user_id -> "cold: new release" | "warm: older item"`` for each user's held-out item.

    Meant for one held-out item per user (``leave_last_n(ds, n=1)``); with several, a user
    counts as cold when any held-out item is a new release. Pass the result as ``by=`` to
    :func:`perso_kit.evaluate` to score each side apart.
    """
    test = split.test.interactions
    new = test["item_id"].isin(set(np.asarray(new_item_ids).tolist()))
    cold = new.groupby(test["user_id"]).any()
    return cold.map({True: COLD, False: WARM}).rename("target")


def last_n(train: Dataset, n: int) -> Dataset:
    """The same catalog and users, with only each user's ``n`` most recent interactions."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    df = train.interactions.sort_values("timestamp", kind="stable")
    recent = df[df.groupby("user_id").cumcount(ascending=False) < n]
    return train.with_interactions(recent, f"last-{n}")


def attribute_vectors(items: pd.DataFrame) -> np.ndarray:
    """One row per catalog item: one-hot of its catalog attributes (genres, plus mood and themes
    where the catalog has them: the demo world does, MovieLens has genres only; read by
    :func:`perso_kit.roles.explainer.item_attributes`), each row of unit length. What a reader of
    the catalog, or of a prompt listing titles with genres, can see."""
    from .roles.explainer import item_attributes
    by_id = items.set_index("item_id")
    tokens = [item_attributes(by_id, i) for i in items["item_id"]]
    vocab = {t: j for j, t in enumerate(sorted(set().union(*tokens)))}
    V = np.zeros((len(items), len(vocab)))
    for r, ts in enumerate(tokens):
        V[r, [vocab[t] for t in ts]] = 1.0
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    return np.divide(V, norms, out=V, where=norms > 0)


def rerank(scorer, candidates: pd.DataFrame) -> pd.DataFrame:
    """Re-order each user's ``candidates`` (``user_id, item_id`` rows) by a fitted recommender
    that scores the whole catalog; returns the same rows with new ``score`` and ``rank`` (ties
    keep the given order). The scores come from
    :func:`perso_kit.recommenders.ltr.model_scores`."""
    from .recommenders.ltr import model_scores
    scores = model_scores({"scorer": scorer}, candidates, exclude_seen=False)
    if "scorer_score" not in scores:
        raise ValueError(f"{scorer.name} does not score the whole catalog; rerank needs one "
                         "that does (it implements _score)")
    out = candidates[["user_id", "item_id"]].assign(score=scores["scorer_score"])
    out = out.iloc[np.lexsort((-out["score"].to_numpy(), out["user_id"].to_numpy()))]
    out["rank"] = out.groupby("user_id").cumcount() + 1
    return out.reset_index(drop=True)


def recency_check(split, retriever, new_item_ids=(), n_candidates: int = 20, recent: int = 10,
                  k: int = 10, ci: float = 0.95, n_boot: int = 1000, seed: int = 0,
                  scorer_factory=None) -> pd.DataFrame:
    """Re-rank a retriever's candidates from the whole history and from the last ``recent``
    watches, and compare, for all held-out targets and for warm and cold ones apart.

    Parameters
    ----------
    split : Split
        A leave-last-one-out split; ``retriever`` is fitted on ``split.train`` here.
    retriever : Recommender
        Proposes ``n_candidates`` items per user (the same candidates for both re-rankers).
    new_item_ids : items released after the cut-off (``ds.meta["new_item_ids"]``), for the
        warm/cold labels; empty: every target is warm.
    recent : int
        Watches the recency-aware re-ranker keeps per user.
    scorer_factory : callable, optional
        Makes a fresh, unfitted scorer; default the content model of notebook 06
        (:class:`perso_kit.roles.interpreter.ContentRecommender`) on the catalog's attributes
        (:func:`attribute_vectors`: genres, mood, themes).

    Returns
    -------
    DataFrame indexed by ``(segment, model)``: ``users``, ``ndcg@k`` with its interval, and, on
    the recency-aware rows, ``gain`` (its NDCG minus the recency-blind one on the same users,
    paired bootstrap) with ``gain_lo``/``gain_hi``.
    """
    if scorer_factory is None:
        from .roles.interpreter import ContentRecommender
        vectors = attribute_vectors(split.train.items)
        scorer_factory = lambda: ContentRecommender(vectors=vectors)  # noqa: E731
    users = np.sort(split.test.interactions["user_id"].unique())
    candidates = retriever.fit(split.train).recommend(users, k=n_candidates)
    lists = {
        f"{retriever.name} (candidate order)": candidates,
        "content, whole history (recency-blind)": rerank(scorer_factory().fit(split.train),
                                                         candidates),
        f"content, last {recent} watches (recency-aware)": rerank(
            scorer_factory().fit(last_n(split.train, recent)), candidates),
    }
    kinds = target_kinds(split, new_item_ids)
    tables, per_user = [], {}
    for name, recs in lists.items():
        table, scores = evaluate_recommendations(recs, split, k, users=users, by=kinds,
                                                 model=name, ci=ci, n_boot=n_boot, seed=seed,
                                                 return_per_user=True)
        tables.append(table)
        per_user[name] = scores.set_index("user_id")[f"ndcg@{k}"]
    ndcg = f"ndcg@{k}"
    out = pd.concat(tables).set_index(["segment", "model"])[
        ["users", ndcg, f"{ndcg}_lo", f"{ndcg}_hi"]]
    blind, aware = list(lists)[1:]
    labels = kinds.reindex(users)
    for segment in out.index.get_level_values("segment").unique():
        mask = np.ones(len(users), bool) if segment == "all" else (labels == segment).to_numpy()
        d = paired_difference(per_user[aware][users[mask]], per_user[blind][users[mask]], ci,
                              n_boot, seed)
        out.loc[(segment, aware), ["gain", "gain_lo", "gain_hi"]] = [d.estimate, d.lo, d.hi]
    return out
