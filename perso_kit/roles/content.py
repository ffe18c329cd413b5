"""The LLM as personalized content writer: a weekly digest for one viewer, checked.

Chen et al. (2023) see LLMs moving personalization from *filtering* information to *providing*
personalized services, such as text written for one person. This module writes a short weekly
digest for each user: the user's recommended picks, presented with their catalog facts and
linked to what the user watched. It writes it two ways and measures both the same way:

* :func:`template_digest` -- the baseline, no LLM: "Your picks this week, after A and B:
  X (1993, Drama, Romance); Y (1987, Comedy)."
* :func:`write_digests` with an LLM -- a JSON answer ``{"digest": "..."}`` (schema
  :data:`DIGEST_SCHEMA`) to the prompt of :func:`digest_messages`, which lists the user's
  recent history and the picks with their catalog facts (title, year, genres, and on the demo
  world mood and themes). Nothing else about the person is sent.

Four measures, each a function a test can prove (tests/test_roles_content.py plants a failure
of each kind and checks the template stays clean):

(a) **grounding** (:func:`check_facts`): every title, year and attribute the text states is
    checked against the catalog; invented facts are listed per text.
(b) **personalization** (:func:`swap_test`): does user A's text fit A's profile better than
    another user's text does? Scored by :func:`profile_fit` (the share of the attributes and
    history titles a text names that are the user's), over every pair of users,
    with a paired bootstrap interval (:func:`~perso_kit.evaluate.paired_difference`).
(c) **leakage** (:func:`check_leakage`): the text must not name a held-out item of the user,
    nor an item of another user's inputs that is not in this user's inputs.
(d) **cost per user** (:func:`digest_summary`): tokens, price and seconds per digest.

>>> catalog = pd.DataFrame({"item_id": [1, 2, 3],
...                         "title": ["Alien (1979)", "Heat (1995)", "Saw (2004)"],
...                         "year": [1979, 1995, 2004],
...                         "genres": [("Horror", "Sci-Fi"), ("Crime",), ("Horror",)]})
>>> names = CatalogNames(catalog)
>>> [(m.item_id, m.stated_year) for m in names.find("Try Saw (2004), after Alien.")]
[(3, 2004), (1, None)]
>>> f = check_facts("Try Saw (2005), a horror film, or Zorblax Returns (1987).", names,
...                 inputs={1, 3})
>>> f.invented
[('year', 'Saw (2005)'), ('title', 'Zorblax Returns (1987)')]
>>> check_facts("Saw (2004) is crime.", names, inputs={3}).invented
[('attribute', 'crime (of Saw (2004))')]
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.dataset import Dataset
from ..evaluate import paired_difference, wilson_interval
from ..llm import heuristics as H
from ..llm.grounding import TitleIndex, ground_titles
from ..llm.offline import register_handler

#: the longest answer a digest may take (tokens): a short paragraph
DIGEST_MAX_TOKENS = 260

DIGEST_SCHEMA = {
    "title": "personal_digest", "type": "object", "required": ["digest"],
    "additionalProperties": False,
    "properties": {"digest": {"type": "string",
                              "description": "three to five sentences to the viewer"}}}

SYSTEM = ("You write a short personalized weekly movie digest for one viewer. Mention only "
          "the movies listed, with the facts given. Answer in JSON.")

ATTRIBUTE_COLUMNS = ("genres", "mood", "themes")
_YEAR = re.compile(r"\b(1[89]\d{2}|20\d{2})\b")
_PAREN_YEAR = re.compile(r"^\s*\((1[89]\d{2}|20\d{2})\b\)?")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_ARTICLE_END = re.compile(r"^(.*), (The|A|An)$")


# ------------------------------------------------------------------------------ catalog facts
def _values(v) -> list[str]:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    return [v] if isinstance(v, str) else [str(x) for x in v]


def item_facts(items: pd.DataFrame, item_id) -> dict:
    """The catalog facts of one item: ``title``, ``year`` and its ``attributes`` (lowercase
    genres, mood and themes, the columns the catalog has). ``items`` is indexed by item id."""
    row = items.loc[item_id]
    attrs = [a.strip().lower() for c in ATTRIBUTE_COLUMNS if c in row.index
             for a in _values(row[c]) if a.strip()]
    year = row["year"] if "year" in row.index else None
    return {"title": row["title"], "year": None if pd.isna(year) else int(year),
            "attributes": attrs}


def _bare(title: str) -> str:
    return re.sub(r"\s*\((1[89]\d{2}|20\d{2})\)\s*$", "", str(title)).strip()


def _forms(title: str) -> list[str]:
    """Ways a title is written: "Velvet Horizon, The (1993)" -> "Velvet Horizon, The",
    "The Velvet Horizon"."""
    bare = _bare(title)
    out = [bare]
    m = _ARTICLE_END.match(bare)
    if m:
        out.append(f"{m.group(2)} {m.group(1)}")
    return [f for f in out if len(f) >= 3]


@dataclass(frozen=True)
class Mention:
    """One catalog title found in a text: where, which item, and the year written after it in
    parentheses (None when no year follows)."""

    start: int
    end: int
    item_id: object
    text: str
    stated_year: int | None


class CatalogNames:
    """Finds catalog titles written in a text, with or without their year, and the catalog's
    attribute words.

    A title matches as written in the catalog or with a trailing article moved to the front
    ("Velvet Horizon, The" or "The Velvet Horizon"), as whole words, ignoring case for titles
    of two or more words (a one-word title must keep its capital, so "island" in prose is not
    the film "Island"). Longer titles win over titles inside them. When two items share a
    title, the year written after it decides, else an item of ``prefer`` (e.g. the user's
    inputs), else the first in the catalog.

    >>> names = CatalogNames(pd.DataFrame({"item_id": [1, 2], "title": ["Island (1990)",
    ...                      "Velvet Horizon, The (1993)"], "year": [1990, 1993],
    ...                      "genres": [("Drama",), ("Romance",)]}))
    >>> [m.item_id for m in names.find("The Velvet Horizon, then Island, not the island.")]
    [2, 1]
    """

    def __init__(self, items: pd.DataFrame):
        if not {"item_id", "title"} <= set(items.columns):
            raise ValueError("the catalog needs item_id and title columns")
        self.items = items.drop_duplicates("item_id").set_index("item_id", drop=False)
        self.index = TitleIndex(items)
        by_form: dict[str, list] = {}
        for iid, title in zip(self.items["item_id"], self.items["title"]):
            for f in _forms(title):
                by_form.setdefault(f.lower(), []).append(iid)
        self.by_form = by_form
        multi = sorted((f for f in by_form if len(f.split()) > 1), key=len, reverse=True)
        single = sorted({f for iid, t in zip(self.items["item_id"], self.items["title"])
                         for f in _forms(t) if len(f.split()) == 1}, key=len, reverse=True)
        alt = lambda forms: "|".join(re.escape(f) for f in forms) or r"(?!x)x"
        self._multi = re.compile(rf"(?<![\w-])(?:{alt(multi)})(?![\w-])", re.I)
        self._single = re.compile(rf"(?<![\w-])(?:{alt(single)})(?![\w-])")
        vocab = set()
        for col in ATTRIBUTE_COLUMNS:
            if col in self.items:
                vocab.update(a.strip().lower() for v in self.items[col] for a in _values(v)
                             if a.strip())
        self.vocabulary = sorted(vocab, key=len, reverse=True)
        words_ = [(re.escape(a[:-1]) + "(?:y|ies)") if a.endswith("y") else
                  re.escape(a) + "(?:e?s)?" for a in self.vocabulary]
        self._attr = re.compile(rf"(?<![\w-])(?:{'|'.join(words_) or '(?!x)x'})(?![\w-])", re.I)

    def facts(self, item_id) -> dict:
        """:func:`item_facts` of one item."""
        return item_facts(self.items, item_id)

    def find(self, text: str, prefer: Iterable = ()) -> list[Mention]:
        """The catalog titles in ``text``, in order (see the class docstring)."""
        text = text or ""
        prefer = set(prefer)
        spans = [m for m in self._multi.finditer(text)]
        taken = [(m.start(), m.end()) for m in spans]
        for m in self._single.finditer(text):
            if not any(a < m.end() and m.start() < b for a, b in taken):
                spans.append(m)
        out = []
        for m in sorted(spans, key=lambda m: m.start()):
            after = _PAREN_YEAR.match(text[m.end():])
            year = int(after.group(1)) if after else None
            ids = self.by_form.get(m.group(0).lower(), [])
            if not ids:
                continue
            years = {i: self.facts(i)["year"] for i in ids}
            pick = ([i for i in ids if year is not None and years[i] == year]
                    or [i for i in ids if i in prefer] or ids)[0]
            end = m.end() + (after.end() if after else 0)
            out.append(Mention(m.start(), end, pick, text[m.start():end], year))
        return out

    def attributes(self, text: str) -> list[tuple[int, str]]:
        """``(position, attribute)`` of each catalog attribute word in ``text`` (a plural
        allowed: "dramas" is "drama")."""
        out = []
        for m in self._attr.finditer(text or ""):
            w = m.group(0).lower()
            hit = next((a for a in self.vocabulary if w == a or re.fullmatch(
                (re.escape(a[:-1]) + "(?:y|ies)") if a.endswith("y") else
                re.escape(a) + "(?:e?s)?", w)), w)
            out.append((m.start(), hit))
        return out


def _names(catalog) -> CatalogNames:
    return catalog if isinstance(catalog, CatalogNames) else CatalogNames(catalog)


# ------------------------------------------------------------------------------ (a) grounding
class Facts(dict):
    """The outcome of :func:`check_facts` (a dict with attribute access)."""

    __getattr__ = dict.get


def check_facts(text: str, catalog, inputs: Iterable = ()) -> Facts:
    """Check every fact a text states against the catalog.

    Three kinds of fact are read, one sentence at a time:

    * **titles**: a catalog title (:class:`CatalogNames`) is a true title; a title-shaped
      string ``Name (year)`` that no catalog title matches (:func:`~perso_kit.llm.grounding.
      ground_titles`, also trying the words before the year one by one) is an invented
      ``title``;
    * **years**: a year in parentheses after a catalog title must be that item's year; a bare
      year ("from 1993") must be the year of an item the sentence names (of an item of
      ``inputs`` when it names none); else an invented ``year``;
    * **attributes**: a catalog attribute word (genre, mood, theme) is read as said of the
      nearest title before it in the sentence (the first after it when none comes before), and
      must be an attribute of that item; in a sentence with no title, of some item of
      ``inputs``; else an invented ``attribute``.

    It is a reading by patterns, not a parser: a negation ("not a comedy") is still read as a
    claim, and an attribute said in other words ("funny" for Comedy) is not read at all.

    Parameters
    ----------
    text : the text to check
    catalog : the items table (or a prebuilt :class:`CatalogNames`, faster for many texts)
    inputs : item ids the writer was given (history shown and picks)

    Returns
    -------
    Facts with ``named`` (item ids of the catalog titles, in order), ``n_facts`` (titles,
    years and attributes read), ``invented`` (``(kind, what)`` pairs), ``n_invented`` and
    ``grounded`` (nothing invented).
    """
    names = _names(catalog)
    text = text or ""
    inputs = set(inputs)
    input_years = {names.facts(i)["year"] for i in inputs if i in names.items.index}
    input_attrs = {a for i in inputs if i in names.items.index
                   for a in names.facts(i)["attributes"]}
    named, invented, n_facts = [], [], 0
    for sentence in _SENTENCE.split(text):
        mentions = names.find(sentence, prefer=inputs)
        blank = list(sentence)
        for m in mentions:
            blank[m.start:m.end] = [" "] * (m.end - m.start)
            named.append(m.item_id)
            n_facts += 1
            true_year = names.facts(m.item_id)["year"]
            if m.stated_year is not None:
                n_facts += 1
                if true_year is not None and m.stated_year != true_year:
                    invented.append(("year", m.text))
        rest = "".join(blank)
        # title-shaped strings no catalog title matched
        for t in H.find_titles(rest):
            tail = _capital_tail(t)
            if not tail:
                continue
            n_facts += 1
            iid = _ground(tail, names)
            where = re.search(r"\s+".join(map(re.escape, tail.split())), rest)
            pos = where.start() if where else 0
            if where:
                rest = rest[:where.start()] + " " * (where.end() - where.start()) \
                    + rest[where.end():]
            if iid is None:
                invented.append(("title", tail))
            else:
                named.append(iid)
                mentions.append(Mention(pos, pos + len(tail), iid, tail, None))
        mentions.sort(key=lambda m: m.start)
        sentence_years = {names.facts(m.item_id)["year"] for m in mentions}
        for y in _YEAR.finditer(rest):
            n_facts += 1
            ok = int(y.group(1)) in (sentence_years if mentions else input_years)
            if not ok:
                invented.append(("year", y.group(1)))
        for pos, attr in names.attributes(rest):
            n_facts += 1
            before = [m for m in mentions if m.start < pos]
            owner = before[-1] if before else (mentions[0] if mentions else None)
            if owner is None:
                if attr not in input_attrs:
                    invented.append(("attribute", attr))
            elif attr not in names.facts(owner.item_id)["attributes"]:
                invented.append(("attribute",
                                 f"{attr} (of {names.facts(owner.item_id)['title']})"))
    return Facts(named=named, n_facts=n_facts, invented=invented, n_invented=len(invented),
                 grounded=not invented)


def _capital_tail(title: str) -> str:
    """The capitalized run of words before the year: "try Zorblax Returns (1987)" ->
    "Zorblax Returns (1987)" ("" when no capitalized word precedes the year)."""
    m = re.match(r"^(.*?)\s*(\((?:18|19|20)\d{2}\))\s*$", title.strip())
    if not m:
        return ""
    toks = m.group(1).split()
    start = len(toks)
    small = {"of", "the", "a", "an", "and", "in", "on", "to", "for", "at"}
    for k in range(len(toks) - 1, -1, -1):
        w = toks[k].strip(",.;:!?\"'“”")
        if w[:1].isupper() or w[:1].isdigit() or (w.lower() in small and k > 0):
            start = k
        else:
            break
    while start < len(toks) and toks[start].lower() in small - {"the", "a", "an"}:
        start += 1
    if start == len(toks):
        return ""
    return " ".join(toks[start:] + [m.group(2)])


def _ground(title: str, names: CatalogNames):
    """The item a title-shaped string names (trying the words before the year one by one), or
    None."""
    m = re.match(r"^(.*?)\s*(\(\d{4}\))$", title)
    toks = (m.group(1) if m else title).split()
    year = f" {m.group(2)}" if m else ""
    tries = [" ".join(toks[i:]) + year for i in range(len(toks))]
    if not tries:
        return None
    g = ground_titles(tries, names.index, year_tolerance=0)
    hit = g[~g["hallucinated"]]
    return None if hit.empty else hit["item_id"].iloc[0]


# ------------------------------------------------------------------------------ (b) personalization
def user_profile(train: Dataset, user_id, history_len: int = 10, catalog=None) -> Counter:
    """What a text fitting this user should name: a count of the attributes (genres, mood,
    themes) of the user's last ``history_len`` items, plus ``item:<id>`` once per item."""
    names = _names(catalog if catalog is not None else train.items)
    hist = train.history(user_id, n=history_len)
    out: Counter = Counter()
    for iid in hist["item_id"]:
        out[f"item:{iid}"] += 1
        out.update(names.facts(iid)["attributes"])
    return out


def text_terms(text: str, catalog) -> Counter:
    """What a text names: its catalog attribute words and ``item:<id>`` for each catalog title
    (counted)."""
    names = _names(catalog)
    out: Counter = Counter(f"item:{m.item_id}" for m in names.find(text or ""))
    out.update(a for _, a in names.attributes(text or ""))
    return out


def profile_fit(text: str, profile: Mapping, catalog) -> float:
    """The share of what a text names that belongs to a user's ``profile``
    (:func:`user_profile`): of the distinct :func:`text_terms` of ``text`` (attribute words and
    titles), those the profile holds. 0 when the text names nothing of the profile, or nothing
    at all; 1 when everything it names is the user's.

    >>> cat = pd.DataFrame({"item_id": [1, 2], "title": ["Alien (1979)", "Heat (1995)"],
    ...                     "year": [1979, 1995], "genres": [("Horror",), ("Crime",)]})
    >>> profile_fit("More horror, like Alien.", {"horror": 1, "item:1": 1}, cat)
    1.0
    >>> profile_fit("Alien, then Heat: crime.", {"horror": 1, "item:1": 1}, cat)
    0.3333333333333333
    >>> profile_fit("Nothing named here.", {"horror": 1}, cat)
    0.0
    """
    terms = set(text_terms(text, catalog))
    if not terms:
        return 0.0
    return len(terms & {k for k, v in profile.items() if v}) / len(terms)


def swap_test(texts: Mapping, profiles: Mapping, catalog, ci: float = 0.95,
              n_boot: int = 1000, seed: int = 0) -> dict:
    """Is each text written for its own user? The swap test over every pair of users.

    For each user A: ``own`` = :func:`profile_fit` of A's text with A's profile, ``other`` =
    the mean fit of every other user's text with A's profile. Personalization is present when
    ``own - other`` is above 0 with a paired bootstrap interval over users
    (:func:`~perso_kit.evaluate.paired_difference`) that excludes 0. A writer that gives
    everyone the same text has ``own == other`` for every user: a gap of exactly 0.

    Parameters
    ----------
    texts : ``{user_id: text}`` (a user without a text, e.g. a failed call, is left out)
    profiles : ``{user_id: profile}`` (:func:`user_profile`)
    catalog : items table or :class:`CatalogNames`

    Returns
    -------
    dict with ``per_user`` (DataFrame: ``own``, ``other``, ``gap``), ``gap``, ``lo``, ``hi``
    (the interval), ``wins`` (share of ordered pairs (A, B) where A's own text fits A
    strictly better than B's text does), ``ties``, ``n_users`` and ``personalized`` (``lo >
    0``).
    """
    names = _names(catalog)
    users = [u for u in profiles if isinstance(texts.get(u), str) and texts.get(u).strip()]
    if len(users) < 2:
        raise ValueError(f"the swap test needs texts for at least 2 users, got {len(users)}")
    fit = np.array([[profile_fit(texts[b], profiles[a], names) for b in users] for a in users])
    own = np.diag(fit)
    mask = ~np.eye(len(users), dtype=bool)
    other = np.array([fit[i][mask[i]].mean() for i in range(len(users))])
    wins = float((own[:, None] > fit)[mask].mean())
    ties = float((own[:, None] == fit)[mask].mean())
    iv = paired_difference(own, other, ci=ci, n_boot=n_boot, seed=seed)
    per = pd.DataFrame({"own": own, "other": other, "gap": own - other},
                       index=pd.Index(users, name="user_id"))
    return {"per_user": per, "gap": iv.estimate, "lo": iv.lo, "hi": iv.hi, "wins": wins,
            "ties": ties, "n_users": len(users), "personalized": bool(iv.lo > 0)}


# ------------------------------------------------------------------------------ (c) leakage
def check_leakage(text: str, catalog, inputs: Iterable, held_out: Iterable = (),
                  others: Iterable = ()) -> Facts:
    """Does a text reveal what its writer was not given?

    ``held_out``: the user's held-out (test) items; ``others``: items of other users' inputs.
    A catalog title in the text that is not among ``inputs`` and is held out (``held_out``
    names) or another user's (``other_names``) is a leak. A held-out item that *is* among the
    inputs (the recommender found it) is no leak: the writer was given it.

    >>> cat = pd.DataFrame({"item_id": [1, 2, 3], "title": ["Alien (1979)", "Heat (1995)",
    ...                     "Saw (2004)"], "year": [1979, 1995, 2004]})
    >>> c = check_leakage("Alien, Heat and Saw.", cat, inputs={1}, held_out={2}, others={3})
    >>> c.held_out_names, c.other_names, c.leaks
    (['Heat (1995)'], ['Saw (2004)'], 2)
    """
    names = _names(catalog)
    inputs, held_out, others = set(inputs), set(held_out), set(others)
    found = list(dict.fromkeys(m.item_id for m in names.find(text or "", prefer=inputs)))
    outside = [i for i in found if i not in inputs]
    held = [names.facts(i)["title"] for i in outside if i in held_out]
    other = [names.facts(i)["title"] for i in outside if i in others and i not in held_out]
    return Facts(held_out_names=held, other_names=other, leaks=len(held) + len(other),
                 leak_free=not (held or other))


# ------------------------------------------------------------------------------ writing
def _fact_line(facts: dict, items: pd.DataFrame, item_id) -> str:
    row = items.loc[item_id]
    parts = [f"genres: {', '.join(_values(row['genres']))}"]
    for col in ATTRIBUTE_COLUMNS[1:]:
        if col in row.index and _values(row[col]):
            parts.append(f"{col}: {', '.join(_values(row[col]))}")
    return f"{facts['title']} — " + "; ".join(parts)


def digest_messages(train: Dataset, user_id, item_ids, history_len: int = 10) -> list[dict]:
    """Chat messages asking for ``user_id``'s digest of ``item_ids``: the user's last
    ``history_len`` titles with genres, and each pick's catalog facts. Nothing else."""
    items = train.items.set_index("item_id")
    hist = train.history(user_id, n=history_len)
    lines = [f"- {t} — {', '.join(_values(g))}" for t, g in zip(hist["title"], hist["genres"])]
    picks = [f"{k + 1}. " + _fact_line(item_facts(items, i), items, i)
             for k, i in enumerate(item_ids)]
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content":
             "The viewer watched, oldest first:\n" + ("\n".join(lines) or "(nothing yet)")
             + "\n\nThis week's picks for them:\n" + "\n".join(picks)
             + "\n\nWrite their weekly digest: three to five sentences to the viewer that "
             "present each pick with its facts and link it to what they watched. Reply as "
             "JSON with the digest."}]


def template_digest(train: Dataset, user_id, item_ids, history_len: int = 10) -> str:
    """The baseline (no LLM): "Your picks this week, after A and B: X (1993, Drama, Romance);
    Y (1987, Comedy)." A and B are the user's two most recent items; each pick carries its
    year and genres from the catalog, so every fact in it is true by construction."""
    items = train.items.set_index("item_id")
    hist = train.history(user_id, n=history_len)
    recent = list(hist["title"].iloc[::-1][:2])
    picks = []
    for i in item_ids:
        f = item_facts(items, i)
        genres = ", ".join(_values(items.loc[i, "genres"]))
        picks.append(f"{_bare(f['title'])} ({f['year']}, {genres})" if f["year"] else
                     f"{_bare(f['title'])} ({genres})")
    after = f", after {' and '.join(recent)}" if recent else ""
    return f"Your picks this week{after}: " + "; ".join(picks) + "."


def _inputs(train: Dataset, user_id, item_ids, history_len: int) -> set:
    return set(train.history(user_id, n=history_len)["item_id"].tolist()) | set(item_ids)


def write_digests(llm, train: Dataset, recs: pd.DataFrame, history_len: int = 10,
                  progress: bool = True, concurrency: int = 8) -> pd.DataFrame:
    """The template's and (with ``llm``) the LLM's digest of each user of ``recs``.

    ``recs`` has ``user_id, item_id`` (and ``rank``): the picks, in order. One LLM call per
    user. Returns one row per user and ``source`` ("template", "LLM"): ``text``, ``inputs``
    (the item ids the writer was given), ``call_ok`` (False when the call failed or the answer
    was not the JSON asked for: the text is then empty and the row counts as failed, it never
    stops the batch), ``error_kind``, ``prompt_tokens``, ``completion_tokens``, ``cost_usd``
    and ``seconds`` (the call's wall time; 0 for the template and for cache hits' replays).
    """
    if not {"user_id", "item_id"} <= set(recs.columns):
        raise ValueError("recs needs user_id and item_id columns (e.g. knn.recommend(users))")
    order = recs.sort_values(["user_id", "rank"]) if "rank" in recs else recs
    picks = {u: g["item_id"].tolist() for u, g in order.groupby("user_id", sort=True)}
    users = list(picks)
    replies = [None] * len(users)
    if llm is not None:
        requests = [{"messages": digest_messages(train, u, picks[u], history_len),
                     "json_schema": DIGEST_SCHEMA, "max_tokens": DIGEST_MAX_TOKENS}
                    for u in users]
        replies = llm.map(requests, concurrency=concurrency, desc="digests", progress=progress)
    rows = []
    for u, r in zip(users, replies):
        inputs = _inputs(train, u, picks[u], history_len)
        t0 = time.perf_counter()
        text = template_digest(train, u, picks[u], history_len)
        rows.append({"user_id": u, "source": "template", "text": text, "inputs": inputs,
                     "call_ok": True, "error_kind": None, "prompt_tokens": 0,
                     "completion_tokens": 0, "cost_usd": 0.0,
                     "seconds": time.perf_counter() - t0})
        if llm is not None:
            data = r.data if r.ok and isinstance(r.data, dict) else None
            text = data.get("digest") if data else None
            ok = isinstance(text, str) and bool(text.strip())
            rows.append({"user_id": u, "source": "LLM", "text": text if ok else "",
                         "inputs": inputs, "call_ok": ok,
                         "error_kind": None if ok else (r.error_kind or "empty"),
                         "prompt_tokens": r.usage.prompt_tokens,
                         "completion_tokens": r.usage.completion_tokens,
                         "cost_usd": r.cost_usd, "seconds": r.latency_s})
    return pd.DataFrame(rows)


def check_digests(table: pd.DataFrame, train: Dataset, held_out: Mapping | None = None,
                  history_len: int = 10, catalog=None, progress: bool = True) -> pd.DataFrame:
    """Add the grounding (:func:`check_facts`) and leakage (:func:`check_leakage`) columns to
    a table of :func:`write_digests` (or any table with ``user_id, source, text, inputs,
    call_ok``).

    ``held_out``: ``{user_id: item ids}`` of each user's test items (e.g. from the split's
    test part), read only here, never shown to a writer. "Other users' items" are the inputs of
    the other users of the table. A failed call (``call_ok`` False) has no text to check: its
    checks are NaN and it is counted apart.
    """
    names = _names(catalog if catalog is not None else train.items)
    held_out = held_out or {}
    inputs_of = table.drop_duplicates("user_id").set_index("user_id")["inputs"].to_dict()
    everyone = Counter(i for s in inputs_of.values() for i in s)
    rows = []
    for r in tqdm(list(table.itertuples(index=False)), desc="checking", disable=not progress):
        out = {"n_facts": np.nan, "n_invented": np.nan, "invented": [], "grounded": np.nan,
               "leaks": np.nan, "held_out_names": [], "other_names": [], "leak_free": np.nan}
        if r.call_ok:
            f = check_facts(r.text, names, r.inputs)
            others = set(everyone) - set(r.inputs)
            lk = check_leakage(r.text, names, r.inputs, held_out.get(r.user_id, ()), others)
            out.update(n_facts=f.n_facts, n_invented=f.n_invented, invented=f.invented,
                       grounded=f.grounded, leaks=lk.leaks, held_out_names=lk.held_out_names,
                       other_names=lk.other_names, leak_free=lk.leak_free)
        rows.append(out)
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def held_out_items(test: Dataset) -> dict:
    """``{user_id: set of item ids}`` of a split's test part (for :func:`check_digests`)."""
    return {u: set(g.tolist()) for u, g in test.interactions.groupby("user_id")["item_id"]}


def digest_summary(table: pd.DataFrame, train: Dataset, history_len: int = 10,
                   catalog=None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per ``source`` of a :func:`check_digests` table: the four measures.

    Columns: ``n`` (users), ``call_ok`` (share of answers usable), ``failed`` (count);
    (a) ``grounded`` (share of usable texts with no invented fact, Wilson ``grounded_lo``,
    ``grounded_hi``), ``invented`` (invented facts in all), ``invented_per_text``,
    ``facts_per_text``; (b) ``gap`` (swap-test gap, ``gap_lo``, ``gap_hi``), ``wins``,
    ``personalized``; (c) ``leak_free`` (share, Wilson interval), ``leaks`` (names in all);
    (d) ``prompt_tokens``, ``completion_tokens``, ``cost_usd`` and ``seconds`` per user.
    """
    names = _names(catalog if catalog is not None else train.items)
    profiles = {u: user_profile(train, u, history_len, names) for u in table["user_id"].unique()}
    rows = {}
    for src, g in table.groupby("source", sort=False):
        ok = g[g["call_ok"].astype(bool)]
        n = len(ok)
        k_g, k_l = int(ok["grounded"].astype(bool).sum()), int(ok["leak_free"].astype(bool).sum())
        (g_lo, g_hi), (l_lo, l_hi) = wilson_interval(k_g, n), wilson_interval(k_l, n)
        row = {"n": len(g), "call_ok": n / len(g) if len(g) else float("nan"),
               "failed": len(g) - n,
               "grounded": k_g / n if n else float("nan"), "grounded_lo": g_lo,
               "grounded_hi": g_hi, "invented": int(ok["n_invented"].sum()),
               "invented_per_text": float(ok["n_invented"].mean()) if n else float("nan"),
               "facts_per_text": float(ok["n_facts"].mean()) if n else float("nan"),
               "leak_free": k_l / n if n else float("nan"), "leak_free_lo": l_lo,
               "leak_free_hi": l_hi, "leaks": int(ok["leaks"].sum())}
        texts = dict(zip(ok["user_id"], ok["text"]))
        if len(texts) >= 2:
            s = swap_test(texts, {u: profiles[u] for u in texts}, names, n_boot=n_boot, seed=seed)
            row.update(gap=s["gap"], gap_lo=s["lo"], gap_hi=s["hi"], wins=s["wins"],
                       personalized=s["personalized"])
        else:
            row.update(gap=float("nan"), gap_lo=float("nan"), gap_hi=float("nan"),
                       wins=float("nan"), personalized=False)
        for col in ("prompt_tokens", "completion_tokens", "cost_usd", "seconds"):
            row[col] = float(g[col].sum() / len(g)) if len(g) else float("nan")
        rows[src] = row
    return pd.DataFrame.from_dict(rows, orient="index")


# ------------------------------------------------------------------------------ figure
def plot_content_checks(summary: pd.DataFrame, who=None, takeaway: str | None = None):
    """Three panels, one bar per source with its 95 % interval: share of texts with no
    invented fact, the swap-test gap (personalization), share of texts with no leak. ``who``
    (the LLM client) is stamped on the figure: who wrote the LLM texts."""
    import matplotlib.pyplot as plt

    from ..plots.style import stamp

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    panels = [("grounded", "grounded_lo", "grounded_hi", "no invented fact (share)"),
              ("gap", "gap_lo", "gap_hi", "own text fits better (gap)"),
              ("leak_free", "leak_free_lo", "leak_free_hi", "no leak (share)")]
    x = np.arange(len(summary))
    for ax, (col, lo, hi, title) in zip(axes, panels):
        v = summary[col].astype(float).to_numpy()
        err = np.vstack([np.clip(v - summary[lo].astype(float), 0, None),
                         np.clip(summary[hi].astype(float) - v, 0, None)])
        ax.bar(x, np.nan_to_num(v), yerr=np.nan_to_num(err), capsize=4,
               color=["#7f7f7f", "#1f77b4", "#d62728", "#2ca02c"][:len(x)])
        ax.set_xticks(x, summary.index, rotation=15)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylim(0, 1.05)
    axes[2].set_ylim(0, 1.05)
    fig.suptitle("Weekly digests: grounding, personalization, leakage", fontsize=11)
    if takeaway:
        fig.tight_layout(rect=(0, 0.07, 1, 0.92))
        fig.text(0.5, 0.01, takeaway, ha="center", va="bottom", fontsize=9, style="italic")
    else:
        fig.tight_layout(rect=(0, 0, 1, 0.92))
    if who is not None:
        stamp(fig, who)
    return fig


# ------------------------------------------------------------------------------ stand-in
_PICK = re.compile(r"^\d+\.\s+(.+?)\s+—\s+(.*)$", re.M)


def parse_digest_prompt(prompt: str) -> tuple[list[tuple[str, list[str]]], list[dict]]:
    """The history lines ``(title, genres)`` and the picks ``{title, genres, mood, themes}``
    of a :func:`digest_messages` prompt (what the stand-in and the planted writers read)."""
    hist = []
    for ln in prompt.splitlines():
        if ln.startswith("- ") and " — " in ln:
            t, g = ln[2:].split(" — ", 1)
            hist.append((t.strip(), [x.strip() for x in g.split(",") if x.strip()]))
    picks = []
    for m in _PICK.finditer(prompt):
        fields = {"title": m.group(1).strip()}
        for part in m.group(2).split(";"):
            if ":" in part:
                k, v = part.split(":", 1)
                fields[k.strip()] = [x.strip() for x in v.split(",") if x.strip()]
        picks.append(fields)
    return hist, picks


def extractive_digest(prompt: str) -> str | None:
    """A digest made only of the prompt's own facts: each pick with its genres (and first
    theme), tied to the history line sharing most words with it ("like X, it is Drama" only
    when X's line lists Drama too). What the offline stand-in answers (not an LLM)."""
    hist, picks = parse_digest_prompt(prompt)
    if not picks:
        return None
    parts = ["Your week in film."]
    lines = [f"{t} — {', '.join(g)}" for t, g in hist]
    for p in picks:
        genres = p.get("genres", [])
        s = f"{p['title']} is {' and '.join(g.lower() for g in genres[:2]) or 'new'}"
        if p.get("themes"):
            s += f", with {p['themes'][0]}"
        s += "."
        if lines:
            scores = H.overlap_scores(lines, p["title"] + " " + " ".join(genres),
                                      prompt_words=False)
            k = int(np.argmax(scores))
            shared = [g for g in genres if g in hist[k][1]]
            if scores[k] > 0 and shared:
                s += f" Like {hist[k][0]}, it is {shared[0].lower()}."
        parts.append(s)
    return " ".join(parts)


def _stand_in_digest(req):
    """Offline stand-in (not an LLM): :func:`extractive_digest` of the prompt."""
    text = extractive_digest(req.ctx.prompt)
    return None if text is None else {"digest": text}


register_handler("personal_digest", _stand_in_digest)
