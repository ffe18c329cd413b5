"""The demo world: a synthetic, MovieLens-like data set the kit generates itself.

**Everything here is made up.** The demo world exists so that every notebook runs offline, in
seconds, and so that lessons can compare what a recommender does with what users *truly* want,
which no real log can tell. How it is made (all seeded, about a second):

1. **Items** get 1-3 genres (drawn with MovieLens-like frequencies), a release year (mostly the
   1990s), a mood that fits the genre, two themes, a runtime, a latent *quality* and a *buzz*
   (marketing reach, log-normal with a wide spread). Titles are drawn from word lists
   (``data/demo_vocabulary.json``), descriptions are three to four sentences whose words carry the
   genre, era, mood and themes, so text methods have something real to read.
2. **Users** get a taste: weights over genres, moods, themes and eras, and a mainstreamness.
3. **Ground truth**: each user's *true utility* for every item is
   ``taste . attributes + 0.5 * quality + noise`` (standardized per user). This matrix is the
   world's private ground truth: it lives on :class:`DemoWorld`, never on the
   :class:`~perso_kit.data.Dataset` that recommenders see.
4. **Interactions**: a user with activity ``n`` (log-normal, median about 55) watches ``n`` items,
   drawn without replacement with probability proportional to
   ``exp(utility / 0.6) * buzz`` -- people watch what they like *and* what they hear about, which
   produces a popularity long tail close to MovieLens-100K's. Ratings follow the utility (1-5).
5. **New releases**: 4% of items come out after the training period (``meta["cutoff"]``); all
   their interactions are later than the cutoff, so a temporal split at the cutoff leaves them
   with no training data -- the item cold-start problem (see :func:`perso_kit.split.new_items`).
6. **Order within a user**: each user's interest moves over time. A user gets a direction in
   attribute space (their *current interest*, drawn like a taste), and their watches are put in
   time order so that those pointing that way tend to come later (``drift``; ``drift=0`` gives a
   random order within a user). Only the order changes: who watched what, the ratings and each
   user's set of timestamps stay the same, and the most recent watches say more about the next
   one than the whole history does (:func:`perso_kit.recency.recency_check` measures it). The
   ground truth (``true_utility``) is the user's whole taste, not the current interest.

Example
-------
>>> world = make_world(seed=42)
>>> world.dataset                                     # what recommenders may see
Dataset('demo': 1,000 users, 1,800 items, ...)
>>> world.true_utility([1, 2], [10, 11]).shape        # only the simulation API sees this
(2, 2)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .. import config
from .dataset import Dataset, make_dataset

#: first and last second of the demo world's log (the same period as MovieLens-100K)
START = 874_724_710  # 1997-09-20
CUTOFF = 886_291_200  # 1998-02-01: new releases come out after this
END = 893_286_638  # 1998-04-23
BUZZ_SIGMA = 2.2  # spread of log-buzz: sets how long the popularity tail is
MAX_CELLS = 60_000_000  # up to this many users x items cells, the world is built densely
CHUNK_CELLS = 4_000_000  # above MAX_CELLS, users are generated in chunks of this many cells
DRIFT = 1.0  # how strongly a user's current interest orders their watches in time (0: random)
ERAS = ["1930s", "1940s", "1950s", "1960s", "1970s", "1980s", "1990s"]


@lru_cache(maxsize=1)
def vocabulary() -> dict:
    """The word lists of the demo world (``data/demo_vocabulary.json``)."""
    with open(config.SHIPPED_DATA_DIR / "demo_vocabulary.json", encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True, eq=False)
class DemoWorld:
    """The demo world: the observable :attr:`dataset` and the private ground truth.

    Recommenders are given ``world.dataset`` (or a split of it) and nothing else. Simulations
    (:mod:`perso_kit.simulate`) ask the world what users truly think through
    :meth:`true_utility` and :meth:`true_rating`.
    """

    dataset: Dataset
    _utility: "np.ndarray | _ChunkedUtility"  # users x items, z-scores per user; private
    seed: int

    def true_utility(self, user_ids, item_ids) -> np.ndarray:
        """How much each user truly likes each item (a users x items array, z-scores per user).

        0 is the user's average item; 1.5 and above is an item the user would love.
        """
        u = self.dataset.user_index(np.atleast_1d(user_ids))
        i = self.dataset.item_index(np.atleast_1d(item_ids))
        if isinstance(self._utility, _ChunkedUtility):
            return self._utility.take(u, i)
        return self._utility[np.ix_(u, i)]

    def true_rating(self, user_ids, item_ids) -> np.ndarray:
        """The 1-5 star rating each user would give each item, from the true utility."""
        return utility_to_rating(self.true_utility(user_ids, item_ids))

    def true_top_items(self, user_id, k: int = 10, candidates=None) -> np.ndarray:
        """The ``k`` items ``user_id`` would like most (among ``candidates`` if given)."""
        items = self.dataset.item_ids if candidates is None else np.asarray(candidates)
        scores = self.true_utility([user_id], items)[0]
        return items[np.argsort(-scores, kind="stable")[:k]]


def utility_to_rating(z: np.ndarray) -> np.ndarray:
    """Map standardized utilities to 1-5 stars (thresholds chosen to give MovieLens-like means)."""
    return np.digitize(z, [-0.55, 0.0, 0.95, 2.1]).astype(np.float32) + 1


def _zipped_choice(rng, names, weights, size):
    p = np.asarray(weights, float)
    return rng.choice(len(names), size=size, p=p / p.sum())


def _make_items(rng: np.random.Generator, n_items: int, new_share: float) -> tuple[pd.DataFrame,
                                                                                    dict]:
    voc = vocabulary()
    genres = list(voc["genres"])
    moods = list(voc["moods"])
    themes = list(voc["themes"])
    g_freq = np.array([voc["genres"][g] for g in genres])

    # genres: a primary genre, then up to two more, drawn by frequency
    n_gen = rng.choice([1, 2, 3], size=n_items, p=[0.45, 0.38, 0.17])
    genre_sets = []
    for n in n_gen:
        picks = rng.choice(len(genres), size=n, replace=False, p=g_freq / g_freq.sum())
        genre_sets.append(tuple(genres[j] for j in picks))

    # mood fits the primary genre
    mood_idx = np.empty(n_items, dtype=int)
    for r, gs in enumerate(genre_sets):
        table = voc["genre_moods"][gs[0]]
        mood_idx[r] = moods.index(list(table)[_zipped_choice(rng, list(table),
                                                             list(table.values()), 1)[0]])
    theme_idx = np.array([rng.choice(len(themes), 2, replace=False) for _ in range(n_items)])

    # years: mostly the 1990s, like MovieLens-100K; new releases come out in 1998
    n_new = int(round(new_share * n_items))
    old_years = np.where(rng.random(n_items) < 0.62, rng.integers(1990, 1998, n_items),
                         np.clip(np.round(1998 - rng.exponential(14, n_items)), 1930, 1989))
    years = old_years.astype(int)
    is_new = np.zeros(n_items, bool)
    is_new[rng.choice(n_items, n_new, replace=False)] = True
    years[is_new] = 1998

    runtime = np.clip(rng.normal(112, 18, n_items), 72, 195)
    short = np.array([bool({"Comedy", "Children's", "Animation"} & set(gs)) for gs in genre_sets])
    runtime = np.round(np.where(short, runtime - 14, runtime)).astype(int)

    quality = rng.normal(0, 1, n_items)
    buzz = np.exp(rng.normal(0, BUZZ_SIGMA, n_items) + 0.35 * quality)

    titles = _make_titles(rng, n_items, voc)
    descriptions = [
        _describe(rng, voc, titles[r], genre_sets[r], moods[mood_idx[r]],
                  [themes[t] for t in theme_idx[r]], years[r], runtime[r])
        for r in range(n_items)
    ]
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items + 1),
        "title": [f"{t} ({y})" for t, y in zip(titles, years)],
        "year": years,
        "genres": genre_sets,
        "description": descriptions,
        "mood": [moods[m] for m in mood_idx],
        "themes": [tuple(themes[t] for t in row) for row in theme_idx],
        "runtime": runtime,
    })
    latent = {"mood": mood_idx, "themes": theme_idx, "quality": quality, "buzz": buzz,
              "is_new": is_new}
    return items, latent


def _make_titles(rng, n, voc) -> list[str]:
    """``n`` distinct titles drawn from the word lists; once the lists run out (200 draws in a
    row give only titles already taken: about 3,000 titles), the rest are numbered sequels of
    the titles drawn so far ("Silent Harbor, The: Part 2", then Part 3, ...), made without
    further draws, so any number of titles comes out in one pass."""
    adjs, nouns, names = voc["title_adjectives"], voc["title_nouns"], voc["title_names"]
    seen, out, misses = set(), [], 0
    while len(out) < n:
        form = rng.integers(0, 4)
        a, b, c = rng.choice(adjs), rng.choice(nouns), rng.choice(nouns)
        if form == 0:
            t = f"{a} {b}, The"          # MovieLens style: "Silent Harbor, The"
        elif form == 1:
            t = f"{a} {b}"
        elif form == 2:
            t = f"{rng.choice(names)}'s {b}"
        else:
            if b == c:
                continue
            t = f"{b} of the {c}"
        if t in seen:
            misses += 1
            if misses < 200:
                continue
            break                         # the word lists have run out: sequels from here
        misses = 0
        seen.add(t)
        out.append(t)
    first = list(out)
    for k in range(n - len(out)):        # no base title has ": Part", so these are all new
        out.append(f"{first[k % len(first)]}: Part {k // len(first) + 2}")
    return out


def _describe(rng, voc, title, genres, mood, themes, year, runtime) -> str:
    name = f"The {title[:-5]}" if title.endswith(", The") else title
    genre_word = rng.choice(voc["genre_words"][genres[0]])
    mood_word = rng.choice(voc["moods"][mood])
    t1, t2 = (rng.choice(voc["themes"][t]) for t in themes)
    s = [f"{name} is a {mood_word} {genre_word} from {year}, a {year // 10 * 10}s film."]
    s.append(f"Set in {rng.choice(voc['settings'])}, it follows {rng.choice(voc['protagonists'])} "
             f"through {t1} and {t2}.")
    if len(genres) > 1:
        others = " and ".join(rng.choice(voc["genre_words"][g]) for g in genres[1:])
        s.append(f"Part {others}.")
    s.append(rng.choice(voc["mood_sentences"][mood]))
    s.append(f"Running time: {runtime} minutes.")
    return " ".join(s)


def _item_attributes(items: pd.DataFrame, latent: dict) -> np.ndarray:
    """Items x attributes matrix: genres, mood, themes, era (one block each)."""
    voc = vocabulary()
    genres, moods, themes = list(voc["genres"]), list(voc["moods"]), list(voc["themes"])
    n = len(items)
    g = np.zeros((n, len(genres)))
    for r, gs in enumerate(items["genres"]):
        g[r, [genres.index(x) for x in gs]] = 1 / np.sqrt(len(gs))
    m = np.zeros((n, len(moods)))
    m[np.arange(n), latent["mood"]] = 1
    t = np.zeros((n, len(themes)))
    t[np.arange(n)[:, None], latent["themes"]] = 1 / np.sqrt(2)
    era = np.zeros((n, len(ERAS)))
    era[np.arange(n), np.clip(items["year"].to_numpy(int) // 10 - 193, 0, len(ERAS) - 1)] = 1
    return np.hstack([1.6 * g, 1.0 * m, 0.9 * t, 0.7 * era])


def _draw_tastes(rng: np.random.Generator, n_users: int) -> np.ndarray:
    """Users x attributes weights: sparse (Dirichlet) over each attribute block, centred so that
    a below-average weight is a dislike."""
    voc = vocabulary()
    blocks = [len(voc["genres"]), len(voc["moods"]), len(voc["themes"]), len(ERAS)]
    return np.hstack([rng.dirichlet(np.full(size, conc), size=n_users) * size - 1.0
                      for size, conc in zip(blocks, [0.35, 0.5, 0.3, 0.8])])


def _standardize(a: np.ndarray, axis: int) -> np.ndarray:
    """``(a - mean) / std`` along ``axis``, computed in ``a`` itself and returned.

    The same numbers as the plain expression (``tests/test_demo_world.py`` checks it) without
    its full-size temporaries: at ML-1M's size a users x items array is 180 MB, and on a small
    virtual machine writing fresh memory can cost more than the arithmetic.
    """
    a -= a.mean(axis, keepdims=True)
    # the standard deviation as np.std computes it (mean of the squared deviations, then the
    # square root), squaring blocks of about a million cells instead of the whole array
    std = np.empty([n if d != axis else 1 for d, n in enumerate(a.shape)])
    lines = a.shape[1 - axis]
    step = max(1, 2**20 // a.shape[axis])
    for start in range(0, lines, step):
        part = slice(start, start + step)
        block = a[part] if axis == 1 else a[:, part]
        np.add.reduce(block * block, axis=axis, keepdims=True,
                      out=std[part] if axis == 1 else std[:, part])
    std /= a.shape[axis]
    a /= np.sqrt(std, out=std)
    return a


def _user_utility(rng: np.random.Generator, n_users: int, attrs: np.ndarray,
                  quality: np.ndarray) -> np.ndarray:
    """True utility of ``n_users`` new users for every item, as z-scores per user: tastes
    (sparse weights over each attribute block, plus a dislike or two) times the items'
    attributes, plus half the item's quality and personal noise."""
    utility = _draw_tastes(rng, n_users) @ attrs.T
    utility += 0.5 * quality[None, :]
    utility += rng.normal(0, 0.6, (n_users, len(attrs)))
    return _standardize(utility, axis=1)


def _log_exposure(latent: dict) -> np.ndarray:
    """Log of how visible each item is (its buzz; new items are out for a few weeks only),
    as a 1 x items row."""
    exposure = latent["buzz"].copy()
    exposure[latent["is_new"]] *= 0.6
    return np.log(exposure)[None, :]


def _watch_keys(rng: np.random.Generator, utility: np.ndarray,
                log_exposure: np.ndarray) -> np.ndarray:
    """Gumbel keys of each user x item: a user's top-k keys are a draw of k items without
    replacement, with odds ``exp(utility / 0.6) * exposure`` (a new array; ``utility`` is kept)."""
    keys = utility / 0.6
    keys += log_exposure
    keys += rng.gumbel(size=keys.shape)
    return keys


def _order_by_drift(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray,
                    new: np.ndarray, ts: np.ndarray, attrs: np.ndarray,
                    drift: float) -> np.ndarray:
    """Give each user's watches an order that means something: the user's *current interest*.

    Each user gets a direction in attribute space (drawn like a taste); watches that point that
    way come later. Each user keeps the same set of timestamps (so weekly volumes and the
    release cut-off do not move); only which watch gets which timestamp changes: within a user
    (and separately before and after the cut-off), timestamps are handed out in the order of
    ``drift * alignment + noise``, where ``alignment`` is the item's attributes projected on the
    user's direction, standardized over the catalog. ``drift = 0`` gives a random order.
    """
    n_users = rows.max() + 1
    direction = _draw_tastes(rng, n_users)
    align = _standardize(attrs @ direction.T, axis=0)                 # items x users
    key = drift * align[cols, rows] + rng.normal(0, 1, len(rows))
    return _deal_timestamps(key, rows, new, ts)


def _deal_timestamps(key: np.ndarray, rows: np.ndarray, new: np.ndarray,
                     ts: np.ndarray) -> np.ndarray:
    """Within each user (and separately before and after the cut-off), hand the user's
    timestamps out in the order of ``key``."""
    by_key = np.lexsort((key, new, rows))
    by_time = np.lexsort((ts, new, rows))
    out = np.empty_like(ts)
    out[by_key] = ts[by_time]          # the k-th watch by key gets the group's k-th timestamp
    return out


def make_world(seed: int | None = None, n_users: int = 1000, n_items: int = 1800,
               mean_activity: float = 100.0, new_share: float = 0.04,
               drift: float = DRIFT) -> DemoWorld:
    """Generate the demo world (about a second; the same world for the same arguments).

    Parameters
    ----------
    seed : int, optional
        Seed of every random choice (default :func:`perso_kit.config.seed`, 42).
    n_users, n_items : int
        Sizes; the defaults give about 1,000 x 1,800 and 100,000 interactions.
    mean_activity : float
        Average number of interactions per user.
    new_share : float
        Share of items released after the training cutoff (the cold-start items).

    drift : float
        How strongly each user's *current interest* orders their watches in time (see
        :func:`_order_by_drift`); 0 gives a random order within a user.

    Returns
    -------
    DemoWorld
        ``world.dataset`` is the observable :class:`~perso_kit.data.Dataset` named ``"demo"``;
        ``world.true_utility(users, items)`` is the ground truth for simulations.

    Size: up to :data:`MAX_CELLS` users x items cells (60 million: 2.0 GB at the peak), the
    world is built as dense users x items arrays, as it always was. Above that, users are
    generated in chunks of about :data:`CHUNK_CELLS` cells (:func:`_make_world_chunked`), so
    memory grows with the interactions, not with users x items; such a world draws its own
    random numbers per chunk (a different world from what the dense path would give), and
    its ground truth is recomputed, chunk by chunk, when asked for. Beyond about 3,000 items,
    titles are numbered sequels ("Part 2") of the titles the word lists give.
    """
    if n_users < 1 or n_items < 2:
        raise ValueError(f"a demo world needs at least 1 user and 2 items, got {n_users} users "
                         f"and {n_items} items")
    if not 0 <= new_share < 1:
        raise ValueError(f"new_share must be in [0, 1), got {new_share}")
    seed = config.seed() if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    items, latent = _make_items(rng, n_items, new_share)
    attrs = _item_attributes(items, latent)
    if n_users * n_items > MAX_CELLS:
        return _make_world_chunked(seed, n_users, items, latent, attrs, mean_activity, drift)

    utility = _user_utility(rng, n_users, attrs, latent["quality"])

    # who watches what: Gumbel top-k = sampling without replacement, vectorized over users
    activity = np.clip(np.round(rng.lognormal(np.log(mean_activity) - 0.6, 1.1, n_users)),
                       3, int(0.4 * n_items)).astype(int)
    keys = _watch_keys(rng, utility, _log_exposure(latent))
    order = np.argsort(np.negative(keys, out=keys), axis=1)
    rows = np.repeat(np.arange(n_users), activity)
    cols = np.concatenate([order[u, :activity[u]] for u in range(n_users)])

    z = utility[rows, cols]
    ratings = utility_to_rating(z + rng.normal(0, 0.35, len(z)))
    new = latent["is_new"][cols]
    ts = np.where(new, rng.integers(CUTOFF, END, len(cols)), rng.integers(START, CUTOFF,
                                                                          len(cols)))
    # rows in the order of the drawn times; drift then re-deals each user's times among their
    # watches (rows keep their place, so splits that shuffle rows draw the same interactions)
    by_drawn_time = np.lexsort((rows, ts))
    rows, cols, new, ts, ratings = (a[by_drawn_time] for a in (rows, cols, new, ts, ratings))
    if drift:
        ts = _order_by_drift(np.random.default_rng([seed, 1]), rows, cols, new, ts, attrs, drift)
    return _world(seed, n_users, items, latent, rows, cols, ratings, ts,
                  utility.astype(np.float32))


def _world(seed, n_users, items, latent, rows, cols, ratings, ts, utility) -> DemoWorld:
    """Wrap the generated log and the ground truth as a :class:`DemoWorld`."""
    interactions = pd.DataFrame({"user_id": rows + 1, "item_id": items["item_id"].to_numpy()[cols],
                                 "rating": ratings, "timestamp": ts})
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1)})
    new_ids = items.loc[latent["is_new"], "item_id"].to_numpy()
    ds = make_dataset(
        "demo", interactions, items, users,
        description=("Synthetic MovieLens-like world generated by perso-kit (seed "
                     f"{seed}); not real data. Items released after the cutoff have no "
                     "interactions before it."),
        meta={"synthetic": True, "seed": seed, "cutoff": CUTOFF, "new_item_ids": new_ids})
    return DemoWorld(dataset=ds, _utility=utility, seed=seed)


def _chunk_utility(seed: int, chunk: int, n: int, attrs: np.ndarray,
                   quality: np.ndarray) -> tuple[np.ndarray, np.random.Generator]:
    """True utility of the ``n`` users of user chunk ``chunk`` (z-scores per user), and the
    chunk's random generator, ready for the chunk's next draws. The same arguments give the
    same numbers, so the ground truth can be recomputed instead of kept."""
    rng = np.random.default_rng([seed, 2, chunk])
    return _user_utility(rng, n, attrs, quality), rng


class _ChunkedUtility:
    """The ground truth of a world built in user chunks: recomputed for the chunks asked for
    (:func:`_chunk_utility`), never held whole."""

    def __init__(self, seed: int, n_users: int, chunk_users: int, attrs: np.ndarray,
                 quality: np.ndarray):
        self.seed, self.n_users, self.chunk_users = seed, n_users, chunk_users
        self.attrs, self.quality = attrs, quality
        self.shape = (n_users, len(attrs))

    def take(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The users ``u`` x items ``i`` block (row and column indices)."""
        out = np.empty((len(u), len(i)), np.float32)
        for chunk in np.unique(u // self.chunk_users):
            first = chunk * self.chunk_users
            n = min(self.chunk_users, self.n_users - first)
            block, _ = _chunk_utility(self.seed, int(chunk), n, self.attrs, self.quality)
            here = np.flatnonzero(u // self.chunk_users == chunk)
            out[here] = block[np.ix_(u[here] - first, i)]
        return out


def _make_world_chunked(seed, n_users, items, latent, attrs, mean_activity,
                        drift) -> DemoWorld:
    """:func:`make_world` above :data:`MAX_CELLS`: the same recipe, one chunk of users at a
    time (each chunk with its own random generator), keeping only the interactions."""
    n_items = len(items)
    chunk_users = max(1, CHUNK_CELLS // n_items)
    log_exposure = _log_exposure(latent)
    direction_rng = np.random.default_rng([seed, 1])
    parts = []
    for chunk, first in enumerate(range(0, n_users, chunk_users)):
        n = min(chunk_users, n_users - first)
        utility, rng = _chunk_utility(seed, chunk, n, attrs, latent["quality"])
        activity = np.clip(np.round(rng.lognormal(np.log(mean_activity) - 0.6, 1.1, n)),
                           3, int(0.4 * n_items)).astype(int)
        keys = _watch_keys(rng, utility, log_exposure)
        top = int(activity.max())
        best = np.argpartition(-keys, top - 1, axis=1)[:, :top]      # Gumbel top-k, as above
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(keys, best, 1), 1), 1)
        rows = np.repeat(np.arange(n), activity)
        cols = best[np.arange(top)[None, :] < activity[:, None]]
        z = utility[rows, cols]
        ratings = utility_to_rating(z + rng.normal(0, 0.35, len(z)))
        new = latent["is_new"][cols]
        ts = np.where(new, rng.integers(CUTOFF, END, len(cols)),
                      rng.integers(START, CUTOFF, len(cols)))
        align = np.zeros(len(rows))
        if drift:   # how far each watch points along the user's current interest
            d = _standardize(attrs @ _draw_tastes(direction_rng, n).T, axis=0)  # items x users
            align = d[cols, rows]
        parts.append((rows + first, cols, ratings, ts, new, align))
    rows, cols, ratings, ts, new, align = (np.concatenate(a) for a in zip(*parts))
    by_drawn_time = np.lexsort((rows, ts))
    rows, cols, new, ts, ratings, align = (a[by_drawn_time] for a in
                                           (rows, cols, new, ts, ratings, align))
    if drift:
        key = drift * align + direction_rng.normal(0, 1, len(rows))
        ts = _deal_timestamps(key, rows, new, ts)
    truth = _ChunkedUtility(seed, n_users, chunk_users, attrs, latent["quality"])
    return _world(seed, n_users, items, latent, rows, cols, ratings, ts, truth)
