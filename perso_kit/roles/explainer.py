"""The LLM as explainer: a sentence on why an item fits a user, checked against the data.

Chen et al. (2023) count natural, personalized explanations among what LLMs bring to
recommendation. An explanation is only useful when it is *faithful*: the history items it cites
are really in the user's history, the attributes it names are really true of the item, and what
it says the cited items have in common with the item is really shared. This module writes
explanations two ways and checks both the same way:

* :func:`template_explanation` -- the baseline: "Because you watched X, and it is also Sci-Fi."
  (X: the history item sharing most genres with the recommended item, the most recent on ties).
* :func:`explain_recommendations` with an LLM -- a JSON answer with the text, the history titles
  it cites and the item attributes it names (schema :data:`EXPLANATION_SCHEMA`).

:func:`check_explanation` grounds every cited title to the catalog
(:func:`~perso_kit.llm.grounding.ground_titles`) and tests three things, reported separately:
each cited item is in the user's training history (``history_ok``); each cited attribute is
among the item's genres, mood and themes per the catalog, or an ``extra_attributes`` mapping,
e.g. the knowledge-augmentation output (``attributes_ok``); and when the text claims the cited
items share an attribute with the item ("X shares Thriller with A and B"), each of them has it
per the catalog (``relation_ok``). It also measures agreement with what drove the classic
score: :func:`knn_drivers` gives each history item's contribution to the item-kNN score (its
similarity to the recommended item).

>>> catalog = pd.DataFrame({"item_id": [1, 2, 3],
...                         "title": ["Alien (1979)", "Heat (1995)", "Saw (2004)"],
...                         "year": [1979, 1995, 2004],
...                         "genres": [("Horror", "Sci-Fi"), ("Crime",), ("Horror",)]})
>>> check_explanation(["Alien (1979)"], ["horror"], "", {1}, {"horror", "sci-fi"},
...                   catalog).faithful
True
>>> c = check_explanation(["Heat (1995)"], ["Comedy"], "", {1}, {"horror"}, catalog)
>>> c.bad_citations, c.bad_attributes
(['Heat (1995)'], ['Comedy'])
>>> c = check_explanation([], ["Horror"], "Saw (2004) shares Horror with Heat (1995).",
...                       {1, 2}, {"horror"}, catalog, item_id=3)
>>> c.history_ok, c.attributes_ok, c.relation_ok, c.bad_relations
(True, True, False, [('Heat (1995)', 'Horror')])
"""
from __future__ import annotations

import re
import weakref
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.dataset import Dataset
from ..evaluate import wilson_interval
from ..llm import heuristics as H
from ..llm.grounding import TitleIndex, ground_titles
from ..llm.offline import register_handler

#: the longest answer an explanation may take (tokens): two sentences and their citations
EXPLANATION_MAX_TOKENS = 200

EXPLANATION_SCHEMA = {
    "title": "llm_explanation", "type": "object",
    "required": ["explanation", "cited_history", "cited_attributes"],
    "additionalProperties": False,
    "properties": {
        "explanation": {"type": "string", "description": "one or two sentences to the viewer"},
        "cited_history": {"type": "array", "items": {"type": "string"},
                          "description": "titles from the viewer's history the text relies on"},
        "cited_attributes": {"type": "array", "items": {"type": "string"},
                             "description": "genres, mood or themes of the recommended movie "
                                            "the text names"}}}

SYSTEM = ("You explain movie recommendations to a viewer. Cite only titles from their history "
          "and only attributes of the recommended movie that are listed. Answer in JSON.")

ATTRIBUTE_COLUMNS = ("genres", "mood", "themes")


# ------------------------------------------------------------------------------ facts
def item_attributes(items: pd.DataFrame, item_id, extra: dict | None = None) -> set[str]:
    """Lowercase attributes of an item per the catalog: its genres, mood and themes (the
    columns present), plus ``extra[item_id]`` if given (e.g. LLM-extracted attributes)."""
    row = items.loc[item_id]
    out: set[str] = set()
    for col in ATTRIBUTE_COLUMNS:
        if col in row.index:
            v = row[col]
            vals = [v] if isinstance(v, str) else list(v) if v is not None else []
            out.update(str(x).strip().lower() for x in vals if str(x).strip())
    if extra and item_id in extra:
        out.update(str(x).strip().lower() for x in extra[item_id])
    return out


def knn_drivers(knn, train: Dataset, user_id, item_id, n: int = 3) -> pd.DataFrame:
    """What drove an item-kNN score: each history item's contribution to it.

    With :class:`~perso_kit.recommenders.ItemKNN`, ``score(u, j) = sum_i X[u, i] * S[i, j]``,
    so history item ``i`` contributes ``S[i, j]`` (read from the fitted ``similarity_``).
    Returns the top ``n`` contributors with ``item_id, title, contribution, share`` (share of
    the score), largest first; items contributing 0 are left out.
    """
    S = knn.similarity_
    u = train.user_index([user_id])[0]
    hist = knn.X_[u].indices
    j = train.item_index([item_id])[0]
    contrib = np.asarray(S[hist][:, j].todense()).ravel() if len(hist) else np.zeros(0)
    total = contrib.sum()
    order = np.argsort(-contrib, kind="stable")[:n]
    order = order[contrib[order] > 0]
    ids = train.item_ids[hist[order]]
    return pd.DataFrame({"item_id": ids, "title": train.titles(ids),
                         "contribution": contrib[order],
                         "share": contrib[order] / total if total > 0 else 0.0})


# ------------------------------------------------------------------------------ writing
def template_explanation(train: Dataset, user_id, item_id, history_len: int = 10) -> dict:
    """The baseline: "Because you watched X, and it is also G." X is the history item (of the
    last ``history_len``) sharing most genres with the recommended item, the most recent on
    ties; G the first shared genre (when none is shared: "Because you watched X; it is G."
    with the item's first genre)."""
    items = train.items.set_index("item_id")
    genres = list(items.loc[item_id, "genres"])
    hist = train.history(user_id, n=history_len)
    if hist.empty:
        return {"explanation": f"Popular with viewers, and it is {genres[0] if genres else ''}.",
                "cited_history": [], "cited_attributes": genres[:1]}
    shared = [len(set(g) & set(genres)) for g in hist["genres"]]
    best = max(range(len(hist)), key=lambda i: (shared[i], i))
    common = [g for g in genres if g in set(hist["genres"].iloc[best])]
    attr = (common or genres)[:1]
    title = hist["title"].iloc[best]
    tail = (f", and it is also {attr[0]}." if common else f"; it is {attr[0]}." if attr else ".")
    text = f"Because you watched {title}" + tail
    return {"explanation": text, "cited_history": [title], "cited_attributes": attr}


def explanation_messages(train: Dataset, user_id, item_id, history_len: int = 10) -> list[dict]:
    """Chat messages asking to explain ``item_id`` to ``user_id`` (titles and catalog
    attributes only)."""
    items = train.items.set_index("item_id")
    hist = train.history(user_id, n=history_len)
    lines = [f"- {t} — {', '.join(g)}" for t, g in zip(hist["title"], hist["genres"])]
    row = items.loc[item_id]
    attrs = [f"genres: {', '.join(row['genres'])}"]
    for col in ATTRIBUTE_COLUMNS[1:]:
        if col in row.index:
            v = row[col]
            attrs.append(f"{col}: {v if isinstance(v, str) else ', '.join(map(str, v))}")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content":
             "The viewer watched, oldest first:\n" + ("\n".join(lines) or "(nothing yet)")
             + f"\n\nRecommended movie: {row['title']} — " + "; ".join(attrs)
             + "\n\nIn one or two sentences, tell the viewer why they may like it. Reply as "
             "JSON with the explanation, the history titles you cite, and the attributes of "
             "the recommended movie you name."}]


# ------------------------------------------------------------------------------ checking
class Check(dict):
    """The outcome of :func:`check_explanation` (a dict with attribute access)."""

    __getattr__ = dict.get


def check_explanation(cited_history: Iterable[str], cited_attributes: Iterable[str],
                      text: str, history_ids: set, attributes: set[str],
                      catalog: pd.DataFrame | TitleIndex, item_id=None, *,
                      shared_attributes: Iterable[str] | None = None,
                      extra_attributes: dict | None = None) -> Check:
    """Check one explanation against the data.

    Three questions, each reported on its own:

    * ``history_ok``: every cited title is a film of the user's history;
    * ``attributes_ok``: every named attribute is true of the recommended item;
    * ``relation_ok``: when the text says the cited films *share* an attribute with the
      recommended one ("X shares Thriller with A and B", "Because you watched A, and it is
      also Drama", "Like A, it is tense"), each of those cited films really has it per the
      catalog (its genres, mood and themes, plus ``extra_attributes``).

    ``faithful`` requires all three.

    Parameters
    ----------
    cited_history : titles the explanation says it relies on
    cited_attributes : attributes it names
    text : the explanation (``Title (year)`` strings in it count as citations too; a lead-in
        such as "like" before a title is dropped, see :func:`~perso_kit.llm.heuristics.find_titles`)
    history_ids : item ids of the user's training history
    attributes : the recommended item's true attributes (lowercase), see
        :func:`item_attributes`
    catalog : the items table (or a prebuilt :class:`TitleIndex`) to ground titles against;
        its ``genres``, ``mood`` and ``themes`` columns are the truth the relation is checked on
    item_id : the recommended item (a mention of it in the text is not a citation)
    shared_attributes : attributes the explanation claims every cited film shares, when the
        caller knows the claim (they are added to the claims read from the text)
    extra_attributes : ``{item_id: [attribute, ...]}`` also true of an item (e.g. the
        knowledge-augmentation output), for the cited films as for ``attributes``

    Returns
    -------
    Check with ``cited_ids``; ``bad_citations`` (titles not in the catalog or not in the
    history), ``bad_attributes``, ``bad_relations`` (``(cited title, attribute)`` pairs
    claimed shared that the cited film does not have); ``claimed_shared`` (attributes the
    explanation says are shared); the three verdicts above, ``claims_shared`` (it claims a
    shared attribute), ``cites_history`` (at least one citation) and ``faithful``.

    Notes
    -----
    A claim of sharing is read from the text one sentence at a time: a sentence that holds a
    word of sharing ("share", "also", "too", "as well", "in common", "same", "both",
    "similar", "another", "just as", or "like" before a history film or "them/those/these",
    but not "you'll like <the recommended film>") claims every attribute it names (a catalog
    attribute or a cited one, whole words, a plural allowed) for the history films it names,
    or, when it names none, for every cited film.
    Titles are blanked first, so "Drama Queen (1990)" is no claim about Drama. A paraphrase
    without such a word ("after Heat, this thriller") is not read as a claim, and negation is
    not read either ("Heat is no Sci-Fi, but both are tense" claims Sci-Fi too): the reading
    is a heuristic, tested on planted and clean explanations, not a parser.
    """
    index, vocabulary = _catalog(catalog)
    ids, names = index.ids, index.titles
    frame = catalog.items if isinstance(catalog, TitleIndex) else catalog
    # an exact title of a history item (or of the recommended item) wins (near-duplicate titles such as "Island" and
    # "Island, The" would otherwise ground to whichever comes first); else ground to the catalog
    seen = {str(n).strip().lower(): i for i, n in zip(ids, names)
            if i in history_ids or (item_id is not None and i == item_id)}
    resolved = [_resolve(t, seen, index, exact=True)
                for t in cited_history if isinstance(t, str) and t.strip()]
    in_text = [_resolve(t, seen, index, exact=False) for t in H.find_titles(text or "")]
    cited_ids, bad = [], []
    for t, iid in resolved + in_text:
        if iid is not None and item_id is not None and iid == item_id:
            continue
        if iid is None or iid not in history_ids:
            if t not in bad:
                bad.append(t)
        elif iid not in cited_ids:
            cited_ids.append(iid)
    attrs = [a for a in cited_attributes if isinstance(a, str) and a.strip()]
    bad_attrs = [a for a in attrs if a.strip().lower() not in attributes]
    # the relation: what the text says the cited films share, against the catalog
    title_of = dict(zip(ids, names))
    named = {}
    for t, iid in resolved + in_text:
        named.setdefault(t, "recommended" if iid is not None and iid == item_id
                         else iid if iid in cited_ids else None)
    if item_id in title_of:
        named.setdefault(str(title_of[item_id]), "recommended")
    terms = list({a.strip().lower(): a.strip() for a in
                  [*sorted(attributes), *sorted(vocabulary), *attrs[::-1]]}.values())
    claims = _shared_claims(text or "", named, cited_ids, terms)
    claims += [(a, list(cited_ids)) for a in (shared_attributes or [])
               if isinstance(a, str) and a.strip()]
    truth = _attributes_of(frame, cited_ids, extra_attributes)
    claimed, bad_rel = [], []
    for a, who in claims:
        if a.strip().lower() not in {c.lower() for c in claimed}:
            claimed.append(a)
        for iid in who:
            pair = (str(title_of.get(iid, iid)), a)
            if a.strip().lower() not in truth.get(iid, set()) and pair not in bad_rel:
                bad_rel.append(pair)
    return Check(cited_ids=cited_ids, bad_citations=bad, bad_attributes=bad_attrs,
                 bad_relations=bad_rel, claimed_shared=claimed,
                 history_ok=not bad, attributes_ok=not bad_attrs, relation_ok=not bad_rel,
                 claims_shared=bool(claimed), cites_history=bool(cited_ids),
                 faithful=not bad and not bad_attrs and not bad_rel)


# words by which a sentence says the films it names have something in common with the
# recommended one ("shares Drama with X", "and it is also Drama", "Like X, it is ...")
_CUE = re.compile(r"\b(?:shar(?:e|es|ed|ing)|also|too|as well|in common|same|both|similar|"
                  r"similarly|another|just as)\b|\blike\s+(?:them|those|these)\b"
                  r"|^\W*like\b", re.I)
_LIKE = re.compile(r"\blike\s+\x00(\d+)\x00", re.I)   # "like <title>": a cue if a history film
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_SLOT = re.compile(r"\x00(\d+)\x00")


def _shared_claims(text: str, named: dict, cited_ids: list, terms: Iterable[str]
                   ) -> list[tuple[str, list]]:
    """``(attribute, [item ids])`` for each claim of sharing in ``text`` (see the notes of
    :func:`check_explanation`). ``named`` maps each title written in the text to its history
    item id, ``"recommended"`` or ``None`` (a title that is not a cited history film)."""
    masked, slots = text, []
    for t in sorted(named, key=len, reverse=True):
        # an unknown title found in prose may carry the words before it ("shares Drama with
        # Zorblax (1987)"): blank only its title-like tail
        pattern = re.compile(re.escape(_title_tail(t) if named[t] is None else t), re.I)
        if t.strip() and pattern.search(masked):
            masked = pattern.sub(f"\x00{len(slots)}\x00", masked)
            slots.append(named[t])
    terms = sorted({str(a).strip() for a in terms if str(a).strip()}, key=len, reverse=True)
    out: list[tuple[str, list]] = []
    for sentence in _SENTENCE.split(masked):
        if not (_CUE.search(sentence) or any(slots[int(k)] not in (None, "recommended")
                                             for k in _LIKE.findall(sentence))):
            continue
        marks = [slots[int(k)] for k in _SLOT.findall(sentence)]
        films = [m for m in marks if m is not None and m != "recommended"]
        if any(m is None for m in marks) and not films:
            continue                         # only titles that are not history films
        who = list(dict.fromkeys(films)) or list(cited_ids)
        rest = _SLOT.sub(" ", sentence)
        for a in terms:
            word = (re.escape(a[:-1]) + "(?:y|ies)" if a.lower().endswith("y")
                    else re.escape(a) + "(?:e?s)?")
            pattern = re.compile(r"(?<![\w-])" + word + r"(?![\w-])", re.I)
            if pattern.search(rest):
                rest = pattern.sub(" ", rest)
                if who:
                    out.append((a, who))
    return out


_SMALL_WORDS = {"of", "the", "a", "an", "and", "in", "on", "to", "for", "at", "de", "la", "le"}


def _title_tail(title: str) -> str:
    """The capitalized run of words before a title's year: "shares Drama with Zorblax Returns
    (1987)" -> "Zorblax Returns (1987)" (small words such as "of" are kept inside the run)."""
    m = _YEAR_END.match(title.strip())
    if not m:
        return title
    words_ = m.group(1).split()
    start = len(words_)
    for k in range(len(words_) - 1, -1, -1):
        w = words_[k]
        if w[:1].isupper() or w[:1].isdigit() or (w.lower() in _SMALL_WORDS and k > 0):
            start = k
        else:
            break
    while start < len(words_) and words_[start].lower() in _SMALL_WORDS - {"the", "a", "an"}:
        start += 1
    return " ".join(words_[start:] + [m.group(2)])


def _catalog(catalog: pd.DataFrame | TitleIndex) -> tuple[TitleIndex, set[str]]:
    """The title index of ``catalog`` and every attribute value it holds (genres, mood,
    themes, as written). Both are kept for the last catalog seen, as long as its titles are
    unchanged: checking many explanations reads the same catalog."""
    frame = catalog.items if isinstance(catalog, TitleIndex) else catalog
    stamp = int(pd.util.hash_pandas_object(frame["title"], index=False).sum())
    last = _LAST.get("catalog")
    if last is not None and last() is catalog and _LAST["stamp"] == stamp:
        return _LAST["index"], _LAST["vocabulary"]
    index = catalog if isinstance(catalog, TitleIndex) else TitleIndex(catalog)
    vocabulary: set[str] = set()
    for col in ATTRIBUTE_COLUMNS:
        if col in frame:
            vals = frame[col].explode().dropna().astype(str).str.strip()
            vocabulary.update(v for v in vals.unique() if v)
    _LAST.update(catalog=weakref.ref(catalog), stamp=stamp, index=index, vocabulary=vocabulary)
    return index, vocabulary


_LAST: dict = {}


def _attributes_of(frame: pd.DataFrame, item_ids: list, extra: dict | None) -> dict:
    """``{item_id: lowercase attributes}`` of ``item_ids`` per the catalog (and ``extra``)."""
    if not item_ids:
        return {}
    sub = frame[frame["item_id"].isin(item_ids)].drop_duplicates("item_id").set_index("item_id")
    return {i: item_attributes(sub, i, extra) if i in sub.index else
            {str(x).strip().lower() for x in (extra or {}).get(i, [])} for i in item_ids}


_YEAR_END = re.compile(r"^(.*?)\s*(\((?:18|19|20)\d{2}\))\s*$")


def _resolve(title: str, seen: dict, index: TitleIndex, exact: bool) -> tuple[str, object]:
    """``(title, item_id or None)`` of one citation. A title found in prose may carry words
    before it ("shares Drama with Alien (1979)"): a history title inside it wins, else the
    longest word-suffix that grounds to the catalog; ``None`` if nothing grounds."""
    key = title.strip().lower()
    if key in seen:
        return title, seen[key]
    if exact:
        g = ground_titles([title], index).iloc[0]
        return title, None if g["hallucinated"] else g["item_id"]
    inside = [h for h in seen if h in key]
    if inside:
        best = max(inside, key=len)
        return best, seen[best]
    m = _YEAR_END.match(title)
    words_ = (m.group(1) if m else title).split()
    year = f" {m.group(2)}" if m else ""
    suffixes = [" ".join(words_[i:]) + year for i in range(len(words_))]
    if not suffixes:
        return title, None
    g = ground_titles(suffixes, index)
    hit = g[~g["hallucinated"]]
    if len(hit):
        return hit["text"].iloc[0], hit["item_id"].iloc[0]
    return title, None


def explain_recommendations(llm, train: Dataset, recs: pd.DataFrame, knn=None,
                            history_len: int = 10, n_drivers: int = 3,
                            extra_attributes: dict | None = None, progress: bool = True,
                            concurrency: int = 8) -> pd.DataFrame:
    """Template and LLM explanations of each ``(user_id, item_id)`` of ``recs``, checked.

    Returns one row per pair and ``source`` ("template", "LLM"): ``explanation``,
    ``cited_history``, ``cited_attributes``, the :func:`check_explanation` fields, and -- with
    a fitted item-kNN ``knn`` -- ``drivers`` (top contributors' titles), ``cites_top_driver``
    and ``driver_precision`` (share of cited items among the top ``n_drivers``). LLM rows also
    carry ``call_ok`` (False: the call failed or the JSON was invalid; the row then counts as
    not faithful), tokens and cost.
    """
    pairs = recs[["user_id", "item_id"]].drop_duplicates().to_records(index=False).tolist()
    items = train.items.set_index("item_id")
    index = TitleIndex(train.items)
    requests = [{"messages": explanation_messages(train, u, i, history_len),
                 "json_schema": EXPLANATION_SCHEMA, "max_tokens": EXPLANATION_MAX_TOKENS}
                for u, i in pairs]
    replies = llm.map(requests, concurrency=concurrency, desc="explanations",
                      progress=progress) if llm is not None else [None] * len(pairs)
    X = train.matrix().tocsr()
    rows = []
    for (u, i), reply in tqdm(list(zip(pairs, replies)), desc="checking", disable=not progress):
        hist_ids = set(train.item_ids[X[train.user_index([u])[0]].indices].tolist())
        attrs = item_attributes(items, i, extra_attributes)
        drivers = knn_drivers(knn, train, u, i, n_drivers) if knn is not None else None
        answers = [("template", template_explanation(train, u, i, history_len), None)]
        if llm is not None:
            data = reply.data if reply.ok and isinstance(reply.data, dict) else None
            answers.append(("LLM", data, reply))
        for source, ans, r in answers:
            row = {"user_id": u, "item_id": i, "title": items.loc[i, "title"], "source": source,
                   "call_ok": ans is not None}
            ans = ans or {"explanation": "", "cited_history": [], "cited_attributes": []}
            chk = check_explanation(ans.get("cited_history", []), ans.get("cited_attributes", []),
                                    ans.get("explanation", ""), hist_ids, attrs, index, i,
                                    extra_attributes=extra_attributes)
            row.update(explanation=ans.get("explanation", ""),
                       cited_history=list(ans.get("cited_history", [])),
                       cited_attributes=list(ans.get("cited_attributes", [])), **chk)
            if not row["call_ok"]:
                row.update(history_ok=False, attributes_ok=False, relation_ok=False,
                           faithful=False)
            if drivers is not None:
                top = drivers["item_id"].tolist()
                row["drivers"] = drivers["title"].tolist()
                row["cites_top_driver"] = bool(top) and top[0] in chk["cited_ids"]
                row["driver_precision"] = (float(np.mean([c in top for c in chk["cited_ids"]]))
                                           if chk["cited_ids"] else 0.0)
            row["tokens"] = r.usage.total_tokens if r is not None else 0
            row["cost_usd"] = r.cost_usd if r is not None else 0.0
            rows.append(row)
    return pd.DataFrame(rows)


def faithfulness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Shares per ``source``: calls that answered, explanations whose citations are all in the
    history (``history_ok``), whose attributes are all true of the item (``attributes_ok``),
    whose claims of a shared attribute hold for the cited films (``relation_ok``), that pass
    all three (``faithful``), that claim a shared attribute at all (``claims_shared``), that
    cite some history item, and agreement with the item-kNN drivers when measured."""
    cols = ["call_ok", "history_ok", "attributes_ok", "relation_ok", "faithful",
            "claims_shared", "cites_history"]
    cols += [c for c in ("cites_top_driver", "driver_precision") if c in table]
    out = table.groupby("source", sort=False)[cols].mean()
    out.insert(0, "n", table.groupby("source", sort=False).size())
    out["tokens_per_explanation"] = table.groupby("source", sort=False)["tokens"].mean()
    return out


def relational_truth(table: pd.DataFrame, z: float = 1.96) -> pd.DataFrame:
    """How often a claim of sharing is true, per ``source``.

    Among the explanations that claim the cited films share an attribute with the
    recommended item (``claims_shared``), the share whose claim holds for every cited film
    (``relation_ok``), with a Wilson score interval (``z = 1.96``: 95 %).

    Returns
    -------
    DataFrame indexed by source: ``n`` (explanations), ``claims`` (those claiming a shared
    attribute), ``true`` (claims that hold), ``rate`` (``true / claims``), ``low``, ``high``.

    >>> t = pd.DataFrame({"source": ["a"] * 4, "claims_shared": [True, True, True, False],
    ...                   "relation_ok": [True, False, True, True]})
    >>> relational_truth(t)[["claims", "true"]].values.tolist()
    [[3, 2]]
    """
    rows = {}
    for src, g in table.groupby("source", sort=False):
        claims = g[g["claims_shared"].astype(bool)]
        n, k = len(claims), int(claims["relation_ok"].astype(bool).sum())
        low, high = wilson_interval(k, n, z)
        rows[src] = {"n": len(g), "claims": n, "true": k,
                     "rate": k / n if n else float("nan"), "low": low, "high": high}
    return pd.DataFrame.from_dict(rows, orient="index")


# ------------------------------------------------------------------------------ stand-in
_REC = re.compile(r"^Recommended movie:\s*(.+?)\s+—\s+(.*)$", re.M)


def _stand_in_explanation(req):
    """Offline stand-in (not an LLM): cite the two history lines sharing most words with the
    recommended movie's line, and say the movie "shares" with both of them its genres that
    *either* line mentions (or its first genre when neither does). The claim is not verified:
    it is false whenever a cited film lacks that genre, and :func:`check_explanation` catches
    it (``relation_ok``)."""
    prompt = req.ctx.prompt
    m = _REC.search(prompt)
    if not m:
        return None
    title, attr_text = m.group(1), m.group(2)
    hist = [ln[2:] for ln in prompt.splitlines() if ln.startswith("- ")]
    if not hist:
        return None
    scores = H.overlap_scores(hist, m.group(0), prompt_words=False)
    top = sorted(range(len(hist)), key=lambda k: (-scores[k], -k))[:2]
    cited = [hist[k].split(" — ")[0] for k in top]
    genres = re.search(r"genres:\s*([^;]*)", attr_text)
    genres = [g.strip() for g in (genres.group(1).split(",") if genres else []) if g.strip()]
    shared = [g for g in genres if any(g in hist[k] for k in top)] or genres[:1]
    text = (f"{title} shares {', '.join(shared[:2]) or 'a lot'} with "
            f"{' and '.join(cited)}, which you watched.")
    return {"explanation": text, "cited_history": cited, "cited_attributes": shared[:2]}


register_handler("llm_explanation", _stand_in_explanation)
