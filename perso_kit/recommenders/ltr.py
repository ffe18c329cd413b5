"""Two-stage recommendation: retrieve candidates, then re-rank them with LightGBM LambdaRank.

This is the shape of most industrial recommenders:

1. **Retrieval** -- one or more cheap models (here ALS and EASE) each propose their top
   ``n_candidates`` items per user; the union is the candidate set. Whatever they miss, the
   ranker can never recommend, so the *candidate recall* caps the whole pipeline.
2. **Ranking** -- every (user, candidate) pair gets features: the score and rank that every
   retriever, and every extra *scorer* model (item-kNN, popularity, ...), gives it; item
   popularity and age; user activity; the user's affinity to the item's genres; ... (see
   :mod:`perso_kit.recommenders.features`). A gradient-boosted tree model trained with the
   LambdaRank objective then orders each user's candidates.

**The leakage trap.** The ranker learns from labelled candidates: "did the user interact with
this item?". Those labels must come from interactions that neither the retrievers nor the
features saw, or the ranker learns to trust signals that will not exist at serving time. And
they must never come from the test part: a ranker fitted on test labels is evaluated on the
answers it was shown. :meth:`TwoStageRanker.fit` therefore carves a validation share out of the
*training* data (``validation_fraction`` of each user's training interactions): retrievers and
features see the rest, and the ranker learns to predict the validation share. Stage one is
fitted once per carve (``n_rounds`` carves, each with its own stage-one fit, give the ranker
more examples), then once more on all the training data to serve. Optionally a share of the
labelled users (``early_stopping_fraction``) is kept out of LightGBM's training rows: LightGBM
stops adding trees when their NDCG@10 has not improved for ``early_stopping_rounds`` trees.

A named preset, :meth:`TwoStageRanker.lean` (pointwise ``binary`` objective on a tenth of the
negative pairs, early stopping, ALS fitted on one thread), was chosen on a validation split of
MovieLens-100K and checked on fresh split seeds: over eight of them, NDCG@10 0.479 against the
defaults' 0.475 (higher on six) in 0.49x their CPU time (see ``benchmarks/RESULTS.md``,
"Two-stage ranker fit time"). The defaults are unchanged.

>>> from perso_kit import load_dataset
>>> from perso_kit.split import random_per_user
>>> split = random_per_user(load_dataset("demo"), seed=42)
>>> ranker = TwoStageRanker(n_candidates=50).fit(split.train)
>>> ranker.recommend(users=[1], k=3)["rank"].tolist()
[1, 2, 3]
"""
from __future__ import annotations

import copy
import inspect
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import config
from ..data.dataset import Dataset
from ..split import random_per_user
from .base import RECOMMENDATION_COLUMNS, Recommender
from .ease import EASE
from .features import DEFAULT_FEATURES, FeatureFunction, build_features
from .itemknn import ItemKNN
from .mf import ALS
from .popularity import Popularity


def retrieve_candidates(retrievers: Mapping[str, Recommender], users: Iterable, n: int,
                        exclude_seen: bool = True, items: Iterable | None = None) -> pd.DataFrame:
    """The union of each fitted retriever's top-``n`` items per user, with their scores and ranks.

    Returns
    -------
    DataFrame with ``user_id, item_id``, then ``<name>_score`` and ``<name>_rank`` for each
    retriever (rank ``n + 1`` and score NaN where that retriever did not propose the item) and
    ``n_retrievers`` (how many proposed it); sorted by user, then by best rank.

    >>> from perso_kit import load_dataset
    >>> ds = load_dataset("demo")
    >>> cands = retrieve_candidates({"EASE": EASE().fit(ds)}, users=[1], n=5)
    >>> cands.columns.tolist()
    ['user_id', 'item_id', 'EASE_score', 'EASE_rank', 'n_retrievers']
    """
    users = list(users)
    merged = None
    for name, model in retrievers.items():
        recs = model.recommend(users=users, k=n, exclude_seen=exclude_seen, items=items)
        recs = recs[["user_id", "item_id", "score", "rank"]].rename(
            columns={"score": f"{name}_score", "rank": f"{name}_rank"})
        merged = recs if merged is None else merged.merge(recs, on=["user_id", "item_id"],
                                                          how="outer")
    if merged is None:
        raise ValueError("give at least one retriever")
    rank_cols = [f"{name}_rank" for name in retrievers]
    found = merged[rank_cols].notna()
    merged[rank_cols] = merged[rank_cols].fillna(n + 1).astype(np.int64)
    merged["n_retrievers"] = found.sum(axis=1).astype(np.int64)
    merged["_best"] = merged[rank_cols].min(axis=1)
    merged = merged.sort_values(["user_id", "_best", "item_id"], kind="stable")
    return merged.drop(columns="_best").reset_index(drop=True)


def scores_everything(model: Recommender) -> bool:
    """Whether ``model`` scores the whole catalog (implements ``_score``), so that it can give
    a score and an exact rank to any (user, item) pair."""
    return type(model)._score is not Recommender._score


def model_scores(models: Mapping[str, Recommender], pairs: pd.DataFrame,
                 exclude_seen: bool = True) -> dict[str, np.ndarray]:
    """Score and exact rank of each (user, item) pair under each fitted model that scores the
    whole catalog (others are skipped).

    The rank is the item's position in the user's full list (1 is best; items the user saw in
    the model's training data are ranked last when ``exclude_seen``). Returns columns
    ``<name>_score`` and ``<name>_rank``.
    """
    users = pairs["user_id"].to_numpy()
    items = pairs["item_id"].to_numpy()
    out: dict[str, np.ndarray] = {}
    for name, model in models.items():
        if not scores_everything(model):
            continue
        train = model._check_fitted()
        u, i = train.user_index(users), train.item_index(items)
        uniq, inv = np.unique(u, return_inverse=True)
        seen = train.matrix()
        score = np.empty(len(pairs))
        rank = np.empty(len(pairs), dtype=np.int64)
        for start in range(0, len(uniq), model.batch_size):
            rows = uniq[start:start + model.batch_size]
            S = np.array(model._score(rows), dtype=np.float64, copy=True)
            if exclude_seen:
                s = seen[rows]
                S[np.repeat(np.arange(len(rows)), np.diff(s.indptr)), s.indices] = -np.inf
            order = np.argsort(-S, axis=1, kind="stable")
            R = np.empty_like(order)
            np.put_along_axis(R, order, np.arange(1, S.shape[1] + 1)[None, :].repeat(len(rows), 0),
                              axis=1)
            sel = (inv >= start) & (inv < start + len(rows))
            r = inv[sel] - start
            score[sel] = S[r, i[sel]]
            rank[sel] = R[r, i[sel]]
        out[f"{name}_score"] = score
        out[f"{name}_rank"] = rank
    return out


def candidate_recall(candidates: pd.DataFrame, truth: Dataset) -> float:
    """Share of each user's ``truth`` interactions found among their candidates, averaged over
    the users that have candidates and at least one ``truth`` interaction.

    The ceiling of the second stage: a ranker can only reorder what retrieval proposed.

    >>> from perso_kit.data.dataset import make_dataset
    >>> catalog = pd.DataFrame({"item_id": [5, 6, 7], "title": list("abc"), "genres": [()] * 3})
    >>> truth = make_dataset("t", pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6]}), catalog)
    >>> candidate_recall(pd.DataFrame({"user_id": [1, 1], "item_id": [5, 7]}), truth)
    0.5
    """
    t = truth.interactions[["user_id", "item_id"]].drop_duplicates()
    t = t[t["user_id"].isin(candidates["user_id"].unique())]
    if t.empty:
        raise ValueError("no user of the candidates has an interaction in the truth data")
    hit = t.merge(candidates[["user_id", "item_id"]].drop_duplicates(), how="left",
                  on=["user_id", "item_id"], indicator=True)["_merge"].eq("both")
    per_user = hit.groupby(t["user_id"].to_numpy()).mean()
    return float(per_user.mean())


OBJECTIVES = ("lambdarank", "rank_xendcg", "binary")


class TwoStageRanker(Recommender):
    """Candidates from retrievers, re-ranked by LightGBM LambdaRank (see the module docstring).

    Parameters
    ----------
    retrievers : dict of name -> Recommender, optional
        Unfitted models that propose candidates (default ``{"ALS": ALS(), "EASE": EASE()}``);
        copies are fitted.
    scorers : dict of name -> Recommender, optional
        Unfitted models that only score the candidates, as features (default
        ``{"ItemKNN": ItemKNN(), "Popularity": Popularity()}``; ``{}`` for none).
    n_candidates : int
        How many items each retriever proposes per user.
    features : sequence of feature functions
        Per-pair features (default :data:`~perso_kit.recommenders.features.DEFAULT_FEATURES`).
    extra_features : sequence of feature functions
        Appended to ``features`` (e.g. ``item_columns(table)`` with attributes from elsewhere).
    validation_fraction : float
        Share of each user's training interactions held out, in each carve, to label the
        ranker's training candidates.
    n_rounds : int
        How many random validation carves label training candidates; stage one is fitted once
        per carve (more carves, more examples for the ranker, more stage-one fits).
    objective : {"lambdarank", "rank_xendcg", "binary"}
        LightGBM objective: LambdaRank (pairwise, weighted by the NDCG change), the listwise
        cross-entropy ``rank_xendcg``, or plain pointwise ``binary`` classification.
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM settings
        Trees (the most; early stopping may keep fewer), shrinkage, leaves per tree, fewest
        pairs per leaf.
    early_stopping_fraction : float
        Share of the labelled users whose candidates LightGBM does not train on but watches:
        their NDCG@10 decides when to stop adding trees (0, the default: no early stopping,
        every tree, every labelled user trained on).
    early_stopping_rounds : int
        Stop when the watched NDCG@10 has not improved for this many trees; the best number
        of trees is kept (``best_iteration_``).
    negative_fraction : float
        Share of the negative training pairs (label 0) LightGBM trains on, a seeded random
        choice; every positive pair is kept, and the watched users' lists stay whole (1, the
        default: every pair). Most candidates are negatives, so a smaller share trains
        faster. A pointwise model's scores then overstate the odds of a positive (by about
        ``1 / negative_fraction``); serving uses only their order within each user's list.
    lgbm_params : dict, optional
        Any other ``lightgbm.LGBMRanker`` argument (e.g. ``lambdarank_truncation_level``).
    seed : int, optional
        Seeds the validation carves and LightGBM (default :func:`perso_kit.config.seed`).
    num_threads : int
        LightGBM threads (0: all cores). One thread is the default: on a small shared machine
        it is often the fastest, and results are deterministic for a given number of threads.
    show_progress : bool
        Show a progress bar over the validation rounds while fitting.

    Attributes
    ----------
    retrievers_, scorers_ : dict
        The models fitted on all the training data (they serve).
    model_ : lightgbm.LGBMRanker
    feature_names_ : list of str
    training_pairs_ : DataFrame
        ``round, user_id, item_id, label`` of the candidates the ranker learned from.
    validation_recall_ : float
        Candidate recall on the validation shares (what the ranker could reach while learning).
    best_iteration_ : int
        Trees the ranker uses (fewer than ``n_estimators`` when early stopping cut them).
    early_stopping_users_ : ndarray
        The users watched for early stopping (not trained on).
    """

    def __init__(self, retrievers: Mapping[str, Recommender] | None = None,
                 scorers: Mapping[str, Recommender] | None = None,
                 n_candidates: int = 100,
                 features: Sequence[FeatureFunction] = DEFAULT_FEATURES,
                 extra_features: Sequence[FeatureFunction] = (),
                 validation_fraction: float = 0.1, n_rounds: int = 3,
                 objective: str = "lambdarank", n_estimators: int = 150,
                 learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 100, early_stopping_fraction: float = 0.0,
                 early_stopping_rounds: int = 20, negative_fraction: float = 1.0,
                 lgbm_params: dict | None = None,
                 seed: int | None = None, num_threads: int = 1, show_progress: bool = True):
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
        if n_rounds < 1:
            raise ValueError(f"n_rounds must be at least 1, got {n_rounds}")
        if not 0 <= early_stopping_fraction < 1:
            raise ValueError("early_stopping_fraction must be in [0, 1), got "
                             f"{early_stopping_fraction}")
        if early_stopping_rounds < 1:
            raise ValueError(f"early_stopping_rounds must be at least 1, got "
                             f"{early_stopping_rounds}")
        if not 0 < negative_fraction <= 1:
            raise ValueError(f"negative_fraction must be in (0, 1], got {negative_fraction}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.retrievers = (dict(retrievers) if retrievers is not None
                           else {"ALS": ALS(), "EASE": EASE()})
        if not self.retrievers:
            raise ValueError("give at least one retriever")
        self.scorers = (dict(scorers) if scorers is not None
                        else {"ItemKNN": ItemKNN(), "Popularity": Popularity()})
        clash = set(self.retrievers) & set(self.scorers)
        if clash:
            raise ValueError(f"names {sorted(clash)} are both retrievers and scorers; rename one")
        self.n_candidates = int(n_candidates)
        self.features = tuple(features)
        self.extra_features = tuple(extra_features)
        self.validation_fraction = float(validation_fraction)
        self.n_rounds = int(n_rounds)
        self.objective = objective
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.num_leaves = int(num_leaves)
        self.min_child_samples = int(min_child_samples)
        self.early_stopping_fraction = float(early_stopping_fraction)
        self.early_stopping_rounds = int(early_stopping_rounds)
        self.negative_fraction = float(negative_fraction)
        self.lgbm_params = dict(lgbm_params or {})
        self.seed = seed
        self.num_threads = int(num_threads)
        self.show_progress = show_progress

    #: The settings of :meth:`lean` (chosen on validation data, see the method).
    LEAN_SETTINGS = dict(n_rounds=3, validation_fraction=0.1, early_stopping_fraction=0.2,
                         early_stopping_rounds=50, objective="binary", negative_fraction=0.1)

    @classmethod
    def lean(cls, retrievers: Mapping[str, Recommender] | None = None,
             **overrides) -> "TwoStageRanker":
        """A ranker that fits in about half the defaults' CPU time (a named preset).

        It trains a pointwise ``binary`` objective on every positive pair and a tenth of the
        negatives, and lets early stopping decide how many trees to keep: 20% of the labelled
        users are watched, not trained on, and LightGBM stops 50 trees after their NDCG@10 last
        improved (:attr:`LEAN_SETTINGS`; any setting can be overridden by keyword). The default
        retrievers get ``ALS(num_threads=1)``: on a small shared machine one thread fits ALS in
        less CPU time, with the same factors.

        These settings were chosen on a validation split of MovieLens-100K only, by a rule
        written before the runs, then run once on the test parts of three split seeds never used
        before (``benchmarks/RESULTS.md``, "Two-stage ranker fit time"): NDCG@10 0.4780 against
        0.4720 for the defaults, in 0.45x their CPU seconds on the idle machine. Over five more
        fresh seeds, run afterwards, 0.51x; over all eight, 0.49x at NDCG@10 0.4791 against
        0.4745. The time depends on how many trees early stopping keeps (0.38x to 0.60x per
        seed), and early stopping is the weak spot: on one seed it kept 8 trees and scored 0.013
        below the defaults. The defaults of :class:`TwoStageRanker` are unchanged.

        >>> ranker = TwoStageRanker.lean(n_candidates=50)
        >>> ranker.objective, ranker.negative_fraction, ranker.early_stopping_fraction > 0
        ('binary', 0.1, True)
        """
        if retrievers is None:
            retrievers = {"ALS": ALS(num_threads=1), "EASE": EASE()}
        return cls(retrievers=retrievers, **{**cls.LEAN_SETTINGS, **overrides})

    # ------------------------------------------------------------------ fitting
    def _seed(self) -> int:
        return config.seed() if self.seed is None else int(self.seed)

    def _fit_stage_one(self, history: Dataset) -> None:
        """Fit copies of the retrievers and scorers on ``history``; they serve until refitted."""
        self.retrievers_ = {name: copy.deepcopy(m).fit(history)
                            for name, m in self.retrievers.items()}
        self.scorers_ = {name: copy.deepcopy(m).fit(history) for name, m in self.scorers.items()}

    def _featurize(self, users, history: Dataset, exclude_seen: bool = True,
                   items=None) -> pd.DataFrame:
        """Candidates of ``users`` from the fitted retrievers, with every feature column."""
        cands = retrieve_candidates(self.retrievers_, users, self.n_candidates, exclude_seen,
                                    items)
        cands = cands.assign(**model_scores({**self.retrievers_, **self.scorers_}, cands,
                                            exclude_seen))
        return build_features(cands, history, self.features + self.extra_features)

    def _labelled_candidates(self, history: Dataset, targets: Dataset) -> pd.DataFrame:
        """Fit stage one on ``history``, then label its candidates for ``targets``' users:
        1 when the user interacted with the item in ``targets``."""
        self._fit_stage_one(history)
        users = np.sort(targets.interactions["user_id"].unique())
        X = self._featurize(users, history)
        positives = targets.interactions[["user_id", "item_id"]].drop_duplicates()
        X = X.merge(positives.assign(label=1), on=["user_id", "item_id"], how="left")
        X["label"] = X["label"].fillna(0).astype(np.int64)
        self._recalls.append(candidate_recall(X, targets))
        # users whose candidates hold no positive (or nothing else) teach nothing
        stats = X.groupby("user_id")["label"].agg(["sum", "size"])
        useful = stats.index[(stats["sum"] > 0) & (stats["sum"] < stats["size"])]
        return X[X["user_id"].isin(useful)].reset_index(drop=True)

    def _early_stopping_users(self, users: np.ndarray) -> np.ndarray:
        """The share of ``users`` watched for early stopping (a seeded random choice)."""
        n = int(round(self.early_stopping_fraction * len(users)))
        if n < 1 or n >= len(users):
            return users[:0]
        rng = np.random.default_rng(self._seed())
        return np.sort(rng.choice(users, size=n, replace=False))

    def _fit_ranker(self, frames: list[pd.DataFrame]) -> None:
        import lightgbm as lgb

        X = pd.concat([f.assign(round=r) for r, f in enumerate(frames)], ignore_index=True)
        if X.empty:
            raise ValueError("no candidate list holds a target item: the retrievers miss every "
                             "held-out interaction; raise n_candidates or check the data")
        self.feature_names_ = [c for c in X.columns
                               if c not in ("user_id", "item_id", "label", "round")]
        watched = self._early_stopping_users(np.unique(X["user_id"].to_numpy()))
        is_watched = X["user_id"].isin(watched).to_numpy()
        fit_rows, stop_rows = X[~is_watched], X[is_watched]
        # LightGBM's NDCG breaks ties by row order; serving breaks them by item id (see
        # `recommend`), so the watched lists are put in item order: early stopping then scores
        # the lists that serving would show (in candidate order, a young model's tied scores
        # would inherit the retrievers' ranking and look better than they serve).
        stop_rows = stop_rows.sort_values(["round", "user_id", "item_id"], kind="stable")
        if self.negative_fraction < 1:
            rng = np.random.default_rng([self._seed(), 1])
            keep = (fit_rows["label"].to_numpy() > 0) | (rng.random(len(fit_rows))
                                                         < self.negative_fraction)
            fit_rows = fit_rows[keep]

        def groups(rows):
            return rows.groupby(["round", "user_id"], sort=False).size().to_numpy()

        params = dict(objective=self.objective, n_estimators=self.n_estimators,
                      learning_rate=self.learning_rate, num_leaves=self.num_leaves,
                      min_child_samples=self.min_child_samples, random_state=self._seed(),
                      deterministic=True, force_row_wise=True, verbose=-1,
                      n_jobs=self.num_threads if self.num_threads > 0 else None)
        params.update(self.lgbm_params)
        self.model_ = lgb.LGBMRanker(**params)
        extra = {}
        if len(stop_rows):
            watched_X, watched_y = stop_rows[self.feature_names_], stop_rows["label"]
            if "eval_X" in inspect.signature(lgb.LGBMRanker.fit).parameters:  # LightGBM >= 4.7
                extra = dict(eval_X=(watched_X,), eval_y=(watched_y,))
            else:
                extra = dict(eval_set=[(watched_X, watched_y)])
            extra.update(eval_group=[groups(stop_rows)], eval_at=[10], eval_metric="ndcg",
                         callbacks=[lgb.early_stopping(self.early_stopping_rounds,
                                                       first_metric_only=True, verbose=False)])
        self.model_.fit(fit_rows[self.feature_names_], fit_rows["label"],
                        group=groups(fit_rows), **extra)
        self.best_iteration_ = int(self.model_.best_iteration_ or self.model_.n_estimators)
        self.early_stopping_users_ = watched
        self.training_pairs_ = fit_rows[["round", "user_id", "item_id", "label"]]
        self.validation_recall_ = float(np.mean(self._recalls))

    def fit(self, train: Dataset) -> "TwoStageRanker":
        """Learn the ranker on validation shares carved from ``train`` (never from any test
        data; stage one fitted once per carve), then fit the retrievers and scorers on all of
        ``train`` to serve."""
        self._recalls: list[float] = []
        frames = []
        steps = tqdm(total=self.n_rounds + 1, desc="ranker", leave=False,
                     disable=not self.show_progress)
        for r in range(self.n_rounds):
            steps.set_postfix_str(f"validation round {r + 1}")
            inner = random_per_user(train, test_fraction=self.validation_fraction,
                                    seed=self._seed() + r)
            frames.append(self._labelled_candidates(inner.train, inner.test))
            steps.update()
        steps.set_postfix_str("LightGBM, then refit to serve")
        self._fit_ranker(frames)
        self._fit_stage_one(train)
        steps.update()
        steps.close()
        self.train_ = train
        return self

    def fit_from(self, history: Dataset, targets: Dataset) -> "TwoStageRanker":
        """One learning round with the data roles explicit.

        Retrievers, scorers and features see ``history``; a candidate is labelled 1 when the
        user interacted with it in ``targets``; the model then serves with stage one fitted on
        ``history``. :meth:`fit` does this with validation shares of the training data as
        ``targets``. Calling it with *test* data as ``targets`` is the leakage trap (notebook
        03 shows what it does to the numbers).
        """
        self._recalls = []
        self._fit_ranker([self._labelled_candidates(history, targets)])
        self.train_ = history
        return self

    # ------------------------------------------------------------------ serving
    def candidates(self, users: Iterable | None = None, exclude_seen: bool = True,
                   items: Iterable | None = None) -> pd.DataFrame:
        """The serving candidates of ``users`` with all their features (one row per pair)."""
        train = self._check_fitted()
        users = train.user_ids if users is None else users
        return self._featurize(users, train, exclude_seen, items)

    def rank_candidates(self, candidates: pd.DataFrame) -> np.ndarray:
        """The ranker's score of each row of a :meth:`candidates` frame (higher is better)."""
        self._check_fitted()
        return self.model_.predict(candidates[self.feature_names_])

    def recommend(self, users: Iterable | None = None, k: int = 10, exclude_seen: bool = True,
                  items: Iterable | None = None) -> pd.DataFrame:
        """Top-``k`` of each user's candidates by the ranker's score (see
        :meth:`Recommender.recommend` for the arguments and the returned frame)."""
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        users = None if users is None else np.asarray(list(users))
        cands = self.candidates(users, exclude_seen, items)
        if cands.empty:
            return pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
        cands["score"] = self.rank_candidates(cands)
        cands = cands.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True],
                                  kind="stable")
        cands["rank"] = cands.groupby("user_id", sort=False).cumcount() + 1
        out = cands.loc[cands["rank"] <= k, RECOMMENDATION_COLUMNS]
        if users is not None:  # keep the caller's user order
            order = pd.Index(pd.unique(users))
            out = out.iloc[np.argsort(order.get_indexer(out["user_id"]), kind="stable")]
        return out.reset_index(drop=True)

    def feature_importances(self) -> pd.DataFrame:
        """Total gain and number of splits of each feature, largest gain first."""
        self._check_fitted()
        booster = self.model_.booster_
        return pd.DataFrame({
            "feature": self.feature_names_,
            "gain": booster.feature_importance("gain"),
            "splits": booster.feature_importance("split"),
        }).sort_values("gain", ascending=False, ignore_index=True)
