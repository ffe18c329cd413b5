"""The LLM as explainer: a sentence on why an item fits a user, checked against the data.

Chen et al. (2023) count natural, personalized explanations among what LLMs bring to
recommendation. An explanation is only useful when it is *faithful*: the history items it cites
are really in the user's history, and the attributes it names are really true of the item. This
module writes explanations two ways and checks both the same way:

* :func:`template_explanation` -- the baseline: "Because you watched X, and it is also Sci-Fi."
  (X: the history item sharing most genres with the recommended item, the most recent on ties).
* :func:`explain_recommendations` with an LLM -- a JSON answer with the text, the history titles
  it cites and the item attributes it names (schema :data:`EXPLANATION_SCHEMA`).

:func:`check_explanation` grounds every cited title to the catalog
(:func:`~perso_kit.llm.grounding.ground_titles`) and tests: each cited item is in the user's
training history; each cited attribute is among the item's genres, mood and themes per the
catalog (or an ``extra_attributes`` mapping, e.g. the knowledge-augmentation output). It also
measures agreement with what drove the classic score: :func:`knn_drivers` gives each history
item's contribution to the item-kNN score (its similarity to the recommended item).

>>> catalog = pd.DataFrame({"item_id": [1, 2], "title": ["Alien (1979)", "Heat (1995)"],
...                         "year": [1979, 1995]})
>>> check_explanation(["Alien (1979)"], ["horror"], "", {1}, {"horror", "sci-fi"},
...                   catalog).faithful
True
>>> c = check_explanation(["Heat (1995)"], ["Comedy"], "", {1}, {"horror"}, catalog)
>>> c.bad_citations, c.bad_attributes
(['Heat (1995)'], ['Comedy'])
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.dataset import Dataset
from ..llm import heuristics as H
from ..llm.grounding import TitleIndex, ground_titles
from ..llm.offline import register_handler

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
                      catalog: pd.DataFrame | TitleIndex, item_id=None) -> Check:
    """Check one explanation against the data.

    Parameters
    ----------
    cited_history : titles the explanation says it relies on
    cited_attributes : attributes it names
    text : the explanation (``Title (year)`` strings in it count as citations too; a lead-in
        such as "like" before a title is dropped, see :func:`~perso_kit.llm.heuristics.find_titles`)
    history_ids : item ids of the user's training history
    attributes : the recommended item's true attributes (lowercase), see
        :func:`item_attributes`
    catalog : the items table (or a prebuilt :class:`TitleIndex`) to ground titles against
    item_id : the recommended item (a mention of it in the text is not a citation)

    Returns
    -------
    Check with ``cited_ids``, ``bad_citations`` (titles not in the catalog or not in the
    history), ``bad_attributes``, ``history_ok``, ``attributes_ok``, ``cites_history``
    (at least one citation) and ``faithful`` (both checks pass).
    """
    if isinstance(catalog, TitleIndex):
        ids, names = catalog.ids, catalog.titles
    else:
        ids, names = catalog["item_id"].to_numpy(), catalog["title"].to_numpy()
        catalog = TitleIndex(catalog)
    # an exact title of a history item (or of the recommended item) wins (near-duplicate titles such as "Island" and
    # "Island, The" would otherwise ground to whichever comes first); else ground to the catalog
    seen = {str(n).strip().lower(): i for i, n in zip(ids, names)
            if i in history_ids or (item_id is not None and i == item_id)}
    resolved = [_resolve(t, seen, catalog, exact=True)
                for t in cited_history if isinstance(t, str) and t.strip()]
    resolved += [_resolve(t, seen, catalog, exact=False) for t in H.find_titles(text or "")]
    cited_ids, bad = [], []
    for t, iid in resolved:
        if iid is not None and item_id is not None and iid == item_id:
            continue
        if iid is None or iid not in history_ids:
            if t not in bad:
                bad.append(t)
        elif iid not in cited_ids:
            cited_ids.append(iid)
    attrs = [a for a in cited_attributes if isinstance(a, str) and a.strip()]
    bad_attrs = [a for a in attrs if a.strip().lower() not in attributes]
    return Check(cited_ids=cited_ids, bad_citations=bad, bad_attributes=bad_attrs,
                 history_ok=not bad, attributes_ok=not bad_attrs,
                 cites_history=bool(cited_ids), faithful=not bad and not bad_attrs)


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
                 "json_schema": EXPLANATION_SCHEMA} for u, i in pairs]
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
                                    ans.get("explanation", ""), hist_ids, attrs, index, i)
            row.update(explanation=ans.get("explanation", ""),
                       cited_history=list(ans.get("cited_history", [])),
                       cited_attributes=list(ans.get("cited_attributes", [])), **chk)
            if not row["call_ok"]:
                row.update(history_ok=False, attributes_ok=False, faithful=False)
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
    history, whose attributes are all true, that pass both (``faithful``), that cite some
    history item, and agreement with the item-kNN drivers when measured."""
    cols = ["call_ok", "history_ok", "attributes_ok", "faithful", "cites_history"]
    cols += [c for c in ("cites_top_driver", "driver_precision") if c in table]
    out = table.groupby("source", sort=False)[cols].mean()
    out.insert(0, "n", table.groupby("source", sort=False).size())
    out["tokens_per_explanation"] = table.groupby("source", sort=False)["tokens"].mean()
    return out


# ------------------------------------------------------------------------------ stand-in
_REC = re.compile(r"^Recommended movie:\s*(.+?)\s+—\s+(.*)$", re.M)


def _stand_in_explanation(req):
    """Offline stand-in (not an LLM): cite the two history lines sharing most words with the
    recommended movie's line, and the genres of that movie those lines also list."""
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
