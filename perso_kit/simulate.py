"""Simulated users of the demo world, and the feedback loop between them and a recommender.

The demo world (:mod:`perso_kit.data.demo`) knows how much every user truly likes every item.
A recommender never sees that; :class:`SimulatedUsers` is the one door to it. Simulations and
later lessons ask it questions -- would this user accept these recommendations? does she like
this film? which of these does he prefer? which genre, era or mood? -- and it answers from the
ground truth.

**The choice model** (how a simulated user reacts to a list of ``k`` recommendations). For the
item at rank ``r`` with true utility ``z`` (a z-score: 0 is the user's average item):

1. the user *looks at* it with probability ``1 / log2(r + 1)`` (position bias: rank 1 is always
   seen, rank 10 about 29% of the time; the same discount as NDCG);
2. having looked, she *accepts* it with probability ``sigmoid((z - threshold) / temperature)``
   (defaults ``threshold=1.0``, ``temperature=0.3``: an item at utility 1.0 is accepted half of
   the time, at 2.0 almost always, an average item (0.0) 3% of the time).

Each decision is an independent draw from a seeded generator. An accepted item is watched: it
joins the user's history with the star rating the world's truth gives it.

**The feedback loop** (:func:`feedback_loop`): each round, fit the recommender on the data so
far, recommend ``k`` items to every simulated user, let the users accept by the choice model,
and add the accepted items to the data (timestamped one day later per round). Per round it
measures what the lists concentrate on (exposure Gini, catalog coverage), how happy users truly
are (mean true utility of what was recommended and of what was accepted, against the best
possible), and what the data becomes (Gini of item popularity, items with no data reached).

**A mitigation** (:class:`Exploration`): a wrapper recommender that gives a share of each list
to random unseen items, so that items the model never shows get a chance to collect data.

Example
-------
>>> from perso_kit.data.demo import make_world
>>> from perso_kit.recommenders import Popularity
>>> world = make_world(seed=42)
>>> users = SimulatedUsers(world)
>>> bool(users.likes(1, users.top_items(1, k=1)[0]))     # a user likes her favourite item
True
>>> result = feedback_loop(Popularity(), users, rounds=2, progress=False)
>>> result.metrics["round"].tolist()
[1, 2]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import config
from . import metrics as M
from .data.dataset import Dataset
from .data.demo import DemoWorld, utility_to_rating
from .recommenders.base import Recommender

#: attributes a simulated user can state preferences about (see ``attribute_preferences``)
ATTRIBUTES = ("genre", "era", "mood", "theme")
DAY = 86_400


class SimulatedUsers:
    """The users of a demo world, answering from its private ground truth.

    Parameters
    ----------
    world : DemoWorld
        From :func:`perso_kit.data.demo.make_world`. Kept private: this object answers
        questions about it, it never hands it out.
    threshold, temperature : float
        The acceptance curve of the choice model (module docstring).
    position_bias : bool
        Whether users look at lower ranks less often (``1 / log2(rank + 1)``); if False they
        look at every item of the list.
    answer_noise : float
        Standard deviation of Gaussian noise added to the utility before answering
        :meth:`likes` / :meth:`prefers` / :meth:`attribute_preferences` (0: always truthful,
        consistent answers; > 0: users who are unsure, drawn from the seeded generator).
    seed : int, optional
        Seeds every random draw (default :func:`perso_kit.config.seed`).

    Example
    -------
    >>> from perso_kit.data.demo import make_world
    >>> users = SimulatedUsers(make_world(seed=42))
    >>> users.attribute_preferences(1, "mood").index[0] in users.attribute_values("mood")
    True
    """

    def __init__(self, world: DemoWorld, threshold: float = 1.0, temperature: float = 0.3,
                 position_bias: bool = True, answer_noise: float = 0.0,
                 seed: int | None = None):
        if not isinstance(world, DemoWorld):
            raise TypeError("SimulatedUsers needs the DemoWorld from make_world(), not "
                            f"{type(world).__name__}: only the demo world has a ground truth")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if answer_noise < 0:
            raise ValueError(f"answer_noise must be >= 0, got {answer_noise}")
        self.__world = world          # name-mangled: not part of the public surface
        self.threshold = float(threshold)
        self.temperature = float(temperature)
        self.position_bias = bool(position_bias)
        self.answer_noise = float(answer_noise)
        self.seed = config.seed() if seed is None else int(seed)
        self._rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        return (f"SimulatedUsers({self.dataset.n_users:,} users of {self.dataset.name!r}, "
                f"threshold={self.threshold}, temperature={self.temperature})")

    # ------------------------------------------------------------------ what anyone may see
    @property
    def dataset(self) -> Dataset:
        """The observable dataset of the world (what a recommender may be given)."""
        return self.__world.dataset

    @property
    def user_ids(self) -> np.ndarray:
        return self.dataset.user_ids

    # ------------------------------------------------------------------ ground truth, read only
    def utility(self, user_ids, item_ids) -> np.ndarray:
        """True utility of each (user, item) *pair* (two equal-length id arrays -> one array).

        Used to score what a recommender did; never give it to one.
        """
        user_ids = np.atleast_1d(np.asarray(user_ids))
        item_ids = np.atleast_1d(np.asarray(item_ids))
        if len(user_ids) != len(item_ids):
            raise ValueError(f"utility() takes pairs: got {len(user_ids)} users and "
                             f"{len(item_ids)} items")
        # one users x items block over the distinct ids, then pick the pairs from it
        uu, u_pos = np.unique(user_ids, return_inverse=True)
        ii, i_pos = np.unique(item_ids, return_inverse=True)
        return self.__world.true_utility(uu, ii)[u_pos, i_pos]

    def top_items(self, user_id, k: int = 10, exclude: Dataset | None = None,
                  candidates=None) -> np.ndarray:
        """The ``k`` items ``user_id`` would truly like most (among ``candidates`` if given),
        leaving out items the user already has in ``exclude`` (a Dataset, e.g. the training
        data)."""
        items = self.dataset.item_ids if candidates is None else np.asarray(candidates)
        if exclude is not None:
            seen = exclude.interactions.loc[exclude.interactions["user_id"] == user_id,
                                            "item_id"]
            items = items[~np.isin(items, seen.to_numpy())]
        return self.__world.true_top_items(user_id, k=k, candidates=items)

    def ideal_utility(self, user_ids, k: int = 10, exclude: Dataset | None = None) -> np.ndarray:
        """Per user: the mean true utility of her ``k`` best items not in ``exclude`` -- the
        satisfaction a perfect list would give (a ceiling to compare recommenders against)."""
        ds = self.dataset
        user_ids = np.asarray(list(user_ids))
        z = np.array(self.__world.true_utility(user_ids, ds.item_ids), dtype=np.float64)
        if exclude is not None:
            seen = exclude.matrix()[exclude.user_index(user_ids)]
            z[np.repeat(np.arange(len(user_ids)), np.diff(seen.indptr)), seen.indices] = -np.inf
        k = min(k, ds.n_items)
        top = -np.partition(-z, k - 1, axis=1)[:, :k]
        top[~np.isfinite(top)] = np.nan
        return np.nanmean(top, axis=1)

    # ------------------------------------------------------------------ the choice model
    def acceptance_probability(self, recs: pd.DataFrame) -> np.ndarray:
        """Probability that each row of a recommendation frame (``user_id, item_id, rank``)
        is accepted: look-at probability times the acceptance curve (module docstring)."""
        z = self.utility(recs["user_id"].to_numpy(), recs["item_id"].to_numpy())
        accept = 1.0 / (1.0 + np.exp(-(z - self.threshold) / self.temperature))
        if self.position_bias:
            if "rank" not in recs.columns:
                raise ValueError("position bias needs the 'rank' column of the recommendations")
            accept = accept / np.log2(recs["rank"].to_numpy(dtype=float) + 1)
        return accept

    def react(self, recs: pd.DataFrame, rng: np.random.Generator | None = None) -> pd.DataFrame:
        """Let each user react to her list: the frame ``recs`` plus ``utility`` (true),
        ``accepted`` (bool, drawn by the choice model) and ``rating`` (1-5 stars, true)."""
        rng = self._rng if rng is None else rng
        out = recs[["user_id", "item_id", "rank"]].copy()
        out["utility"] = self.utility(out["user_id"].to_numpy(), out["item_id"].to_numpy())
        out["accepted"] = rng.random(len(out)) < self.acceptance_probability(out)
        out["rating"] = utility_to_rating(out["utility"].to_numpy())
        return out

    # ------------------------------------------------------------------ answering questions
    def _noisy(self, z: np.ndarray) -> np.ndarray:
        if self.answer_noise == 0:
            return z
        return z + self._rng.normal(0, self.answer_noise, np.shape(z))

    def likes(self, user_id, item_id) -> bool:
        """Would ``user_id`` rate ``item_id`` 4 stars or more? ("Do you like Alien?")"""
        z = self._noisy(self.utility([user_id], [item_id]))
        return bool(utility_to_rating(z)[0] >= 4)

    def prefers(self, user_id, item_ids) -> object:
        """Which of ``item_ids`` does ``user_id`` prefer? Returns that item id."""
        item_ids = np.asarray(list(item_ids))
        if len(item_ids) == 0:
            raise ValueError("prefers() needs at least one item to choose from")
        z = self._noisy(self.utility(np.repeat(user_id, len(item_ids)), item_ids))
        return item_ids[int(np.argmax(z))]

    def prefers_value(self, user_id, attribute: str, options) -> str:
        """Which of ``options`` (values of ``attribute``) does ``user_id`` prefer?
        ("Comedy or drama?" -> "Comedy"; see :meth:`attribute_preferences`.)"""
        return self.attribute_preferences(user_id, attribute, values=options).index[0]

    def attribute_values(self, attribute: str) -> list[str]:
        """The values ``attribute`` takes in the catalog ("genre": Action, Comedy, ...)."""
        return sorted(set(self._item_values(attribute).explode().dropna()))

    def attribute_preferences(self, user_id, attribute: str, values=None) -> pd.Series:
        """How much ``user_id`` likes each value of ``attribute`` ("genre", "era", "mood" or
        "theme"), best first: the user's mean true utility over the catalog's items with that
        value (among ``values`` if given). ("Which do you prefer: comedy or drama?")"""
        per_item = self._item_values(attribute)
        z = self._noisy(self.utility(np.repeat(user_id, self.dataset.n_items),
                                     self.dataset.item_ids))
        table = pd.DataFrame({"value": per_item.to_numpy(), "utility": z}).explode("value")
        prefs = table.groupby("value")["utility"].mean()
        if values is not None:
            values = list(values)
            unknown = sorted(set(values) - set(prefs.index))
            if unknown:
                raise ValueError(f"no item has {attribute} {unknown}; choose among "
                                 f"{self.attribute_values(attribute)}")
            prefs = prefs.loc[values]
        return prefs.sort_values(ascending=False, kind="stable").rename(f"{attribute} preference")

    def _item_values(self, attribute: str) -> pd.Series:
        items = self.dataset.items
        if attribute == "genre":
            return items["genres"].map(list)
        if attribute == "era":
            return items["year"].map(lambda y: None if pd.isna(y) else f"{int(y) // 10 * 10}s")
        if attribute == "mood":
            return items["mood"]
        if attribute == "theme":
            return items["themes"].map(list)
        raise ValueError(f"unknown attribute {attribute!r}; choose one of {ATTRIBUTES}")


# ---------------------------------------------------------------------------- the mitigation
class Exploration(Recommender):
    """Wrap a recommender so that each list slot goes, with probability ``epsilon``, to a
    random item the user has not seen (epsilon-greedy exploration).

    The wrapped model fills the other slots in its own order. Random items come uniformly from
    the whole catalog -- including items with no data at all, which is how they get a chance.
    The draws are seeded from ``seed`` and the size of the training data, so a run repeats.

    Parameters
    ----------
    base : Recommender
        The model whose lists are explored around.
    epsilon : float
        Share of slots given to random items (0: the base model unchanged).
    seed : int, optional
        Default :func:`perso_kit.config.seed`.

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> from perso_kit.recommenders import Popularity
    >>> model = Exploration(Popularity(), epsilon=0.2).fit(load_dataset("demo"))
    >>> len(model.recommend(users=[1, 2], k=10))
    20
    """

    def __init__(self, base: Recommender, epsilon: float = 0.2, seed: int | None = None):
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon is a probability, between 0 and 1; got {epsilon}")
        self.base = base
        self.epsilon = float(epsilon)
        self.seed = seed
        self._name = f"{base.name} + exploration"

    def fit(self, train: Dataset) -> "Exploration":
        super().fit(train)
        self.base.fit(train)
        seed = config.seed() if self.seed is None else self.seed
        self.rng_ = np.random.default_rng([seed, train.n_interactions])
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.base._score(user_idx)

    def recommend(self, users: Iterable | None = None, k: int = 10, exclude_seen: bool = True,
                  items: Iterable | None = None) -> pd.DataFrame:
        train = self._check_fitted()
        recs = self.base.recommend(users=users, k=k, exclude_seen=exclude_seen, items=items)
        if self.epsilon == 0 or recs.empty:
            return recs
        return self._explore(recs.reset_index(drop=True), train, exclude_seen, items)

    def _explore(self, recs: pd.DataFrame, train: Dataset, exclude_seen: bool,
                 items) -> pd.DataFrame:
        pool = np.arange(train.n_items) if items is None else train.item_index(items)
        list_users, row = np.unique(recs["user_id"].to_numpy(), return_inverse=True)
        original = train.item_index(recs["item_id"].to_numpy())
        item_col = original.copy()
        # blocked[r, i]: item i is already in user r's list (or seen): a random pick must avoid it
        blocked = np.zeros((len(list_users), train.n_items), dtype=bool)
        blocked[row, item_col] = True
        if exclude_seen:
            seen = train.matrix()[train.user_index(list_users)]
            blocked[np.repeat(np.arange(len(list_users)), np.diff(seen.indptr)),
                    seen.indices] = True
        pending = np.flatnonzero(self.rng_.random(len(recs)) < self.epsilon)
        for _ in range(50):  # rejection sampling: a few passes suffice on a real catalog
            if len(pending) == 0:
                break
            pick = self.rng_.choice(pool, len(pending))
            ok = ~blocked[row[pending], pick]
            # two slots of one user drawing the same item: keep the first
            _, first = np.unique(row[pending] * train.n_items + pick, return_index=True)
            once = np.zeros(len(pending), dtype=bool)
            once[first] = True
            ok &= once
            item_col[pending[ok]] = pick[ok]
            blocked[row[pending[ok]], pick[ok]] = True
            pending = pending[~ok]
        recs["item_id"] = train.item_ids[item_col]
        recs["score"] = np.where(item_col != original, np.nan, recs["score"].to_numpy(float))
        return recs


# ---------------------------------------------------------------------------- the feedback loop
@dataclass
class LoopResult:
    """What a feedback-loop run produced.

    Attributes
    ----------
    metrics : DataFrame
        One row per round (see :func:`feedback_loop`).
    reactions : DataFrame
        Every recommended (round, user, item, rank) with its true utility and whether it was
        accepted.
    data : Dataset
        The data after the last round (start data plus every accepted item).
    """

    metrics: pd.DataFrame
    reactions: pd.DataFrame
    data: Dataset


def feedback_loop(recommender: Recommender, users: SimulatedUsers, start: Dataset | None = None,
                  rounds: int = 10, k: int = 10, simulated=None, name: str | None = None,
                  seed: int | None = None, blas_threads: int | None = 1,
                  progress: bool = True) -> LoopResult:
    """Run the recommend -> accept -> retrain loop for ``rounds`` rounds.

    Parameters
    ----------
    recommender : Recommender
        Refitted on the growing data at the start of every round. It is given Datasets only.
    users : SimulatedUsers
        Who reacts (the choice model in the module docstring).
    start : Dataset, optional
        The data before round 1 (default ``users.dataset``, the world's whole log). Must share
        the world's catalog and users.
    rounds, k : int
        Number of rounds and list length.
    simulated : user ids, optional
        Users who receive lists each round (default: every user). Everybody's data is used for
        training.
    name : str, optional
        Label of the run in the ``model`` column (default ``recommender.name``).
    seed : int, optional
        Seeds the users' draws (default ``users.seed``): two runs with the same seed and model
        give the same numbers.
    blas_threads : int or None
        BLAS threads while fitting (None: the library default). The loop refits every round;
        on a shared machine one thread is steadier and often faster (measured on 2 busy cores:
        an EASE fit on the demo world took 0.25 s with one thread, 1.5-9 s with two).
    progress : bool
        Show a progress bar over rounds.

    Returns
    -------
    LoopResult
        ``metrics`` has one row per round: ``model``, ``round``, ``exposure_gini`` and
        ``coverage`` of that round's lists (over the whole catalog), ``utility_recommended``
        (mean true utility of the recommended items: the satisfaction a list offers),
        ``utility_accepted`` (mean true utility of what users took), ``utility_ideal`` (mean
        true utility of each user's best ``k`` unseen items: the most any list could offer
        that round), ``accepted_per_user``, ``data_gini`` (Gini of item popularity in the data
        *after* the round's accepted items were added), ``cold_items_reached`` (share of the
        items with no data at the start that have some now; NaN if there were none) and
        ``fit_s`` and ``seconds`` (time spent fitting, and on the whole round).
    """
    import time

    start = users.dataset if start is None else start
    if not np.array_equal(start.item_ids, users.dataset.item_ids) or \
            not np.array_equal(start.user_ids, users.dataset.user_ids):
        raise ValueError("start must be a view of the world's dataset (same catalog and users); "
                         "build it with split functions or dataset.with_interactions()")
    if rounds < 1 or k < 1:
        raise ValueError(f"rounds and k must be at least 1, got rounds={rounds}, k={k}")
    who = start.user_ids if simulated is None else np.asarray(list(simulated))
    start.user_index(who)
    rng = np.random.default_rng(users.seed if seed is None else seed)
    name = name or recommender.name
    frames = [start.interactions]
    t_now = int(start.interactions["timestamp"].max()) if start.n_interactions else 0
    cold_at_start = start.item_popularity().to_numpy() == 0
    data = start.with_interactions(start.interactions, "round 1")
    rows, reactions = [], []
    for r in tqdm(range(1, rounds + 1), desc=f"feedback loop: {name}", disable=not progress,
                  leave=False):
        t0 = time.perf_counter()
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            recommender.fit(data)
        fit_s = time.perf_counter() - t0
        recs = recommender.recommend(users=who, k=k)
        reaction = users.react(recs, rng)
        best = users.ideal_utility(who, k=k, exclude=data).mean()
        took = reaction[reaction["accepted"]]
        t_now += DAY
        frames.append(pd.DataFrame({"user_id": took["user_id"].to_numpy(),
                                    "item_id": took["item_id"].to_numpy(),
                                    "rating": took["rating"].to_numpy(np.float32),
                                    "timestamp": np.full(len(took), t_now, np.int64)}))
        # the data after this round: what the next round trains on
        data = start.with_interactions(pd.concat(frames, ignore_index=True), f"round {r + 1}")
        pop = data.item_popularity().to_numpy()
        rec_idx = start.item_index(recs["item_id"].to_numpy())
        rows.append({
            "model": name, "round": r,
            "exposure_gini": M.gini(M.exposure(rec_idx, start.n_items)),
            "coverage": M.catalog_coverage(rec_idx, start.n_items),
            "utility_recommended": float(reaction["utility"].mean()),
            "utility_accepted": float(took["utility"].mean()) if len(took) else np.nan,
            "utility_ideal": float(best),
            "accepted_per_user": len(took) / len(who),
            "data_gini": M.gini(pop),
            "cold_items_reached": (float((pop[cold_at_start] > 0).mean())
                                   if cold_at_start.any() else np.nan),
            "fit_s": fit_s,
            "seconds": time.perf_counter() - t0,
        })
        reactions.append(reaction.assign(model=name, round=r))
    final = start.with_interactions(data.interactions, f"after {rounds} rounds")
    return LoopResult(pd.DataFrame(rows), pd.concat(reactions, ignore_index=True), final)


def compare_feedback_loops(recommenders: Mapping[str, Recommender], users: SimulatedUsers,
                           start: Dataset | None = None, rounds: int = 10, k: int = 10,
                           simulated=None, seed: int | None = None,
                           blas_threads: int | None = 1, progress: bool = True) -> pd.DataFrame:
    """Run :func:`feedback_loop` for each named recommender with the same users, start data and
    seed; returns all the per-round metrics in one table (column ``model``)."""
    tables = []
    for label, model in tqdm(recommenders.items(), desc="feedback loops", disable=not progress):
        result = feedback_loop(model, users, start=start, rounds=rounds, k=k,
                               simulated=simulated, name=label, seed=seed,
                               blas_threads=blas_threads, progress=progress)
        tables.append(result.metrics)
    return pd.concat(tables, ignore_index=True)
