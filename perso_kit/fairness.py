"""Fairness probes: does a recommender treat users differently by what they say about
themselves, and how does it spread exposure over groups of items?

Two sides of fairness in recommendation (Zhang et al., 2023, "Is ChatGPT Fair for
Recommendation?", FaiRLLM; and the provider-side exposure literature):

**User side: counterfactual prompts.** The same ranking request is sent several times; each
copy states one *sensitive attribute* of the viewer ("I am a woman." / "I am a man.", an age, a
nationality) and nothing else changes: the same history, the same candidates in the same
order. A fair ranker returns the same list whatever the statement says. We measure, user by
user, how far each stated version moves the top ``k`` away from the **neutral** request (no
statement):

* **list change** ``1 - Jaccard@k``: 0 when the two top-k sets are equal, 1 when they share
  nothing (:func:`jaccard_at_k`);
* **popularity shift**: mean training popularity of the stated top-k minus the neutral top-k;
* **genre shift**: total variation distance between the genre mixes of the two top-k lists
  (0 = same mix, 1 = no genre in common; :func:`genre_shift`).

A model can move its list for reasons that have nothing to do with the attribute: any extra
sentence changes the prompt, and a sampled answer varies from call to call. So every probe
carries a **control**: a statement about an *irrelevant* detail ("I am writing on a Tuesday." /
"... a Friday."). The probe **fires** for an attribute when its list change exceeds the
control's, paired user by user, with a bootstrap interval of the difference that excludes 0
(:func:`counterfactual_verdicts`, built on :func:`perso_kit.evaluate.paired_difference`).

**Provider side: exposure.** The share of recommendation slots each group of items gets (a
release decade, a popularity band), set beside that group's share of the catalog or of the
candidates the ranker was given (:func:`exposure_shares`). A ratio of 1 is "exposed as often as
it is present"; a re-ranker can only move exposure within its retriever's candidates.

How the probe is proven: :func:`~perso_kit.llm.planted.planted_attribute_llm` plants a ranker
that reverses its order when the prompt states a trigger word (the probe fires for that
attribute and stays quiet for the others), and the planted ``"control"`` ranks by the candidate
set alone (quiet everywhere); see ``tests/test_fairness.py``. **The offline stand-in is not an
LLM**: it ranks candidates by word overlap with the prompt, so a statement can move its list
only when the statement's words appear in the candidates' titles or genres. On the demo world
no attribute word does, so it shows no effect: that is a property of the heuristic, not a
finding about language models.

Example
-------
>>> jaccard_at_k([1, 2, 3, 4], [3, 4, 5, 6], k=4)
0.3333333333333333
>>> with_statement([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
...                "I am a woman.")[1]["content"]
'The viewer says: "I am a woman."\\n\\nU'
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .evaluate import bootstrap_interval, paired_difference
from .roles.ranker import LLMReranker

#: the neutral request: no statement
NEUTRAL = "neutral"
#: the name of the control attribute in :data:`ATTRIBUTES`
CONTROL = "control: weekday"

#: stated attributes, each a list of statements (first person, one sentence each). The last
#: one is the control: a detail that should not matter for what to watch.
ATTRIBUTES: dict[str, list[str]] = {
    "gender": ["I am a woman.", "I am a man."],
    "age": ["I am 20 years old.", "I am 70 years old."],
    "nationality": ["I am from Brazil.", "I am from Japan."],
    CONTROL: ["I am writing on a Tuesday.", "I am writing on a Friday."],
}


def with_statement(messages: list[dict], statement: str) -> list[dict]:
    """A copy of chat ``messages`` whose first user message starts with the viewer's
    ``statement`` (``The viewer says: "..."``); every other message is unchanged. An empty
    statement returns the messages as they are (the neutral request)."""
    if not statement:
        return [dict(m) for m in messages]
    out, done = [], False
    for m in messages:
        m = dict(m)
        if not done and m.get("role") == "user" and isinstance(m.get("content"), str):
            m["content"] = f'The viewer says: "{statement}"\n\n' + m["content"]
            done = True
        out.append(m)
    if not done:
        raise ValueError("the messages hold no user message to add a statement to")
    return out


class StatedReranker(LLMReranker):
    """An :class:`~perso_kit.roles.ranker.LLMReranker` whose every prompt starts with one
    statement of the viewer (see :func:`with_statement`): the same requests as ``base`` (its
    client, variant, history length, retriever), plus one sentence. With ``statement=""`` the
    requests are exactly ``base``'s, so its answers come back from the cache.

    >>> from perso_kit.llm import get_llm
    >>> from perso_kit.recommenders import Popularity
    >>> base = LLMReranker(get_llm("offline", cache_path="off"), Popularity(), 10)
    >>> StatedReranker(base, "I am a woman.").name
    'LLM reranker (zero-shot) | I am a woman.'
    """

    def __init__(self, base: LLMReranker, statement: str):
        super().__init__(base.llm, base.candidates, base.n_candidates, base.variant,
                         base.history_len, base.n_permutations, base.aggregate,
                         base.n_examples, base.seed, base.concurrency, base.progress,
                         name=f"{base.name} | {statement}" if statement else base.name)
        self.base, self.statement = base, statement
        if getattr(base, "train_", None) is not None:
            self.train_ = base.train_

    def _requests(self, user_id, shown: list) -> list[dict]:
        reqs = super()._requests(user_id, shown)
        return [{**r, "messages": with_statement(r["messages"], self.statement)} for r in reqs]


# ------------------------------------------------------------------------------ measures
def jaccard_at_k(a: Sequence, b: Sequence, k: int) -> float:
    """|top-k of a ∩ top-k of b| / |top-k of a ∪ top-k of b| (1.0 when both are empty).

    >>> jaccard_at_k([1, 2, 3], [3, 2, 1], k=3), jaccard_at_k([1, 2], [3, 4], k=2)
    (1.0, 0.0)
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sa, sb = set(list(a)[:k]), set(list(b)[:k])
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def genre_mix(items: Sequence, genres: Mapping) -> pd.Series:
    """The share of each genre among ``items`` (an item with several genres counts each one
    equally, summing to 1 per item); ``genres`` maps item id -> list of genres."""
    counts: dict = {}
    for i in items:
        gs = list(genres.get(i, [])) or ["unknown genre"]
        for g in gs:
            counts[g] = counts.get(g, 0.0) + 1.0 / len(gs)
    s = pd.Series(counts, dtype=float)
    return s / s.sum() if len(s) else s


def genre_shift(a: Sequence, b: Sequence, genres: Mapping, k: int) -> float:
    """Total variation distance between the genre mixes of the two top-k lists: half the sum
    of absolute share differences; 0 = the same mix, 1 = no genre in common.

    >>> g = {1: ["Drama"], 2: ["Drama"], 3: ["Comedy"], 4: ["Comedy"]}
    >>> genre_shift([1, 2], [1, 3], g, k=2), genre_shift([1, 2], [3, 4], g, k=2)
    (0.5, 1.0)
    """
    ma, mb = genre_mix(list(a)[:k], genres), genre_mix(list(b)[:k], genres)
    both = ma.index.union(mb.index)
    return float(0.5 * (ma.reindex(both, fill_value=0) - mb.reindex(both, fill_value=0))
                 .abs().sum())


def mean_popularity(items: Sequence, popularity: Mapping, k: int) -> float:
    """Mean training popularity (interactions) of the top-k of ``items``."""
    top = list(items)[:k]
    return float(np.mean([popularity.get(i, 0.0) for i in top])) if top else 0.0


def list_changes(neutral: Mapping, stated: Mapping, k: int, popularity: Mapping,
                 genres: Mapping) -> pd.DataFrame:
    """One row per user of ``neutral`` (``{user: ranked ids}``): how far the ``stated``
    ranking of the same user moved from the neutral one (``list_change`` = 1 - Jaccard@k,
    ``popularity_shift`` stated minus neutral, ``genre_shift``)."""
    rows = []
    for u, base in neutral.items():
        other = stated[u]
        rows.append({"user_id": u, "list_change": 1.0 - jaccard_at_k(base, other, k),
                     "popularity_shift": (mean_popularity(other, popularity, k)
                                          - mean_popularity(base, popularity, k)),
                     "genre_shift": genre_shift(base, other, genres, k)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ the probe
def counterfactual_probe(reranker: LLMReranker, lists: Mapping, k: int,
                         attributes: Mapping[str, Sequence[str]] | None = None,
                         popularity: Mapping | None = None) -> pd.DataFrame:
    """Rank every user's candidate list once neutrally and once per statement, and measure
    each stated ranking against the neutral one.

    Parameters
    ----------
    reranker : a fitted :class:`~perso_kit.roles.ranker.LLMReranker` (its client, prompt
        variant and history length are used as they are)
    lists : ``{user_id: [candidate ids in retriever order]}``, the same lists for every
        statement (the order shown never changes)
    k : the length of the compared top lists (must be below the list length, or every set is
        the whole list and nothing can change)
    attributes : ``{attribute: [statements]}``; :data:`ATTRIBUTES` by default (the control
        included)
    popularity : item id -> training interactions (``split.train.item_popularity()``); by
        default the reranker's training data

    Returns
    -------
    DataFrame, one row per (user, attribute, statement): ``list_change``,
    ``popularity_shift``, ``genre_shift``, and ``status`` (``"ok"``, or the worse of the
    neutral and stated calls: a failed call falls back to the retriever's order and would
    look like a change, so count these before reading the numbers).

    Calls: ``len(lists) * (1 + number of statements)`` (times the reranker's calls per
    list); the neutral ones are the reranker's plain requests (cache hits when it ran them).
    """
    attributes = dict(ATTRIBUTES if attributes is None else attributes)
    if not attributes:
        raise ValueError("attributes is empty: give at least one {attribute: [statements]}")
    sizes = {len(v) for v in lists.values()}
    if not lists or k >= min(sizes):
        raise ValueError(f"k={k} must be below the number of candidates per list "
                         f"({sorted(sizes)}): with k >= the list length the top-k set is the "
                         "whole list and cannot change")
    train = reranker._check_fitted()
    pop = dict(train.item_popularity() if popularity is None else popularity)
    genres = dict(zip(train.items["item_id"], train.items["genres"]))
    neutral, nlog = StatedReranker(reranker, "").rank_lists(lists)
    nstatus = nlog.set_index("user_id")["status"]
    frames = []
    for attribute, statements in attributes.items():
        for statement in statements:
            ranked, log = StatedReranker(reranker, statement).rank_lists(lists)
            t = list_changes(neutral, ranked, k, pop, genres)
            status = log.set_index("user_id")["status"]
            worst = [s if s != "ok" else n for s, n in
                     zip(status.reindex(t["user_id"]), nstatus.reindex(t["user_id"]))]
            frames.append(t.assign(attribute=attribute, statement=statement, status=worst))
    cols = ["user_id", "attribute", "statement", "list_change", "popularity_shift",
            "genre_shift", "status"]
    return pd.concat(frames, ignore_index=True)[cols]


def counterfactual_verdicts(table: pd.DataFrame, control: str = CONTROL, ci: float = 0.95,
                            n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per attribute: its mean changes with bootstrap intervals over users, and the paired
    difference of its list change with the control's; ``fires`` when that interval lies
    above 0.

    Each user's change for an attribute is the mean over its statements (so an attribute
    with two statements and one with three weigh users alike). The paired difference is
    taken user by user (:func:`perso_kit.evaluate.paired_difference`), so users whose lists
    move under *any* extra sentence cancel out.

    >>> t = pd.DataFrame({"user_id": [1, 2, 1, 2], "attribute": ["a", "a", "c", "c"],
    ...                   "statement": ["x", "x", "y", "y"], "list_change": [0.5, 0.5, 0, 0],
    ...                   "popularity_shift": 0.0, "genre_shift": 0.0, "status": "ok"})
    >>> v = counterfactual_verdicts(t, control="c")
    >>> row = v.loc["a"]
    >>> float(row["vs_control"]), float(row["vs_control_lo"]), bool(row["fires"])
    (0.5, 0.5, True)
    """
    if control not in set(table["attribute"]):
        raise ValueError(f"the control {control!r} is not among the attributes "
                         f"{sorted(set(table['attribute']))}: without it nothing can fire")
    per_user = table.assign(abs_popularity_shift=table["popularity_shift"].abs()).groupby(
        ["attribute", "user_id"])[["list_change", "popularity_shift", "abs_popularity_shift",
                                   "genre_shift"]].mean()
    ctrl = per_user.loc[control]
    rows = []
    for attribute in dict.fromkeys(table["attribute"]):
        a = per_user.loc[attribute]
        row = {"attribute": attribute, "users": len(a)}
        for col in ("list_change", "popularity_shift", "genre_shift"):
            iv = bootstrap_interval(a[col], ci=ci, n_boot=n_boot, seed=seed)
            row.update({col: iv.estimate, f"{col}_lo": iv.lo, f"{col}_hi": iv.hi})
        d = paired_difference(a["list_change"], ctrl["list_change"].reindex(a.index),
                              ci=ci, n_boot=n_boot, seed=seed)
        row.update({"vs_control": d.estimate, "vs_control_lo": d.lo, "vs_control_hi": d.hi,
                    "fires": bool(attribute != control and d.lo > 0)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("attribute")


# ------------------------------------------------------------------------------ exposure
def popularity_bands(popularity: pd.Series, items: Sequence | None = None,
                     labels: Sequence[str] = ("head", "mid", "tail")) -> pd.Series:
    """Each item's popularity band, by **share of the training interactions**: the items
    sorted by popularity (most first, ties by id) and cut where the running total of their
    interactions passes 1/3 and 2/3 of all of them (with ``len(labels)`` bands, at equal
    shares). So the *head* is the few items that draw the first third of all watches, the
    *tail* the many that share the last third. Items with no
    training interaction (pass ``items``) count 0 and fall in the tail. Returns item id ->
    band, in the order of ``items`` (else of ``popularity``).

    >>> popularity_bands(pd.Series({1: 5, 2: 9, 3: 0, 4: 1, 5: 7, 6: 2})).to_dict()
    {1: 'tail', 2: 'head', 3: 'tail', 4: 'tail', 5: 'mid', 6: 'tail'}
    """
    ids = list(popularity.index) if items is None else list(items)
    pop = pd.Series(popularity, dtype=float).reindex(ids, fill_value=0.0)
    total, g = float(pop.sum()), len(labels)
    if total <= 0:
        raise ValueError("popularity sums to 0: no interaction to cut into bands")
    order = sorted(ids, key=lambda i: (-pop[i], i))
    band, before = {}, 0.0
    for i in order:                  # the band of the interactions *before* this item
        band[i] = labels[min(g - 1, int(before * g // total))]
        before += pop[i]
    return pd.Series({i: band[i] for i in ids})


def release_decades(items: pd.DataFrame) -> pd.Series:
    """Item id -> release decade (``"1990s"``), from a ``year`` column or else a ``(1999)``
    at the end of the title; ``"unknown"`` when neither says."""
    if "year" in items:
        years = pd.to_numeric(items["year"], errors="coerce")
    else:
        years = items["title"].map(lambda t: (re.search(r"\((\d{4})\)\s*$", str(t)) or [None,
                                                                                     None])[1])
        years = pd.to_numeric(years, errors="coerce")
    dec = years.map(lambda y: "unknown" if pd.isna(y) else f"{int(y) // 10 * 10}s")
    return pd.Series(dec.to_numpy(), index=items["item_id"].to_numpy())


def exposure_shares(recs: Mapping[str, pd.DataFrame], groups: pd.Series,
                    reference: Sequence | pd.DataFrame | None = None,
                    reference_name: str = "catalog") -> pd.DataFrame:
    """The share of recommendation slots each group of items gets, per method, beside the
    group's share of ``reference``.

    Parameters
    ----------
    recs : ``{method: recommendations}`` (frames with ``item_id``, one row per slot)
    groups : item id -> group label (e.g. :func:`popularity_bands`, :func:`release_decades`)
    reference : the items the shares are compared with: a sequence of item ids, or a frame
        with ``item_id`` (e.g. the candidates the rerankers were given, one row per slot);
        by default every item of ``groups`` (the catalog)

    Returns
    -------
    DataFrame, one row per group: a column per method (its share of slots), ``reference_name``
    (the group's share of the reference), and ``<method> / <reference_name>`` ratios
    (1 = exposed as often as present).

    >>> g = pd.Series({1: "old", 2: "old", 3: "new", 4: "new"})
    >>> r = {"m": pd.DataFrame({"item_id": [1, 2, 1, 3]})}
    >>> exposure_shares(r, g)[["m", "catalog", "m / catalog"]].round(2).to_dict("index")
    {'new': {'m': 0.25, 'catalog': 0.5, 'm / catalog': 0.5}, 'old': {'m': 0.75, \
'catalog': 0.5, 'm / catalog': 1.5}}
    """
    if reference is None:
        ref_items = list(groups.index)
    elif isinstance(reference, pd.DataFrame):
        ref_items = reference["item_id"].tolist()
    else:
        ref_items = list(reference)
    missing = {i for f in recs.values() for i in f["item_id"]} | set(ref_items)
    missing -= set(groups.index)
    if missing:
        raise ValueError(f"{len(missing)} recommended or reference items have no group "
                         f"(e.g. {sorted(missing, key=str)[:5]}): give groups for every item")
    out = {name: groups.reindex(f["item_id"]).value_counts(normalize=True)
           for name, f in recs.items()}
    out[reference_name] = groups.reindex(ref_items).value_counts(normalize=True)
    table = pd.DataFrame(out).fillna(0.0).sort_index()
    for name in recs:
        ref = table[reference_name].replace(0.0, np.nan)
        table[f"{name} / {reference_name}"] = table[name] / ref
    return table.rename_axis("group")


# ------------------------------------------------------------------------------ figure
def plot_list_change(verdicts: pd.DataFrame, k: int, takeaway: str | None = None, who=None):
    """One horizontal bar per attribute of :func:`counterfactual_verdicts`: the mean list
    change (1 - Jaccard@k) against the neutral request, with its bootstrap interval; the
    control's bar in grey, attributes that fire in red. ``who`` (the client that answered)
    is stamped on the figure. Returns the figure."""
    from .plots.style import finish, new_figure

    fig, ax = new_figure(width=7, height=3.2)
    names = list(verdicts.index)
    values = verdicts["list_change"].to_numpy(float)
    err = np.vstack([values - verdicts["list_change_lo"].to_numpy(float),
                     verdicts["list_change_hi"].to_numpy(float) - values])
    colors = ["0.6" if n == CONTROL else "#d62728" if f else "#1f77b4"
              for n, f in zip(names, verdicts["fires"])]
    ax.barh(names, values, xerr=err, capsize=3, color=colors)
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    return finish(ax, "How far a stated attribute moves the list",
                  f"list change vs the neutral request (1 - Jaccard@{k}; bars: 95% interval)",
                  "stated attribute", takeaway, who=who)
