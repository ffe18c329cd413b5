"""The agent's tools: plain Python functions over the catalog and the recommenders, each with a
JSON schema for OpenAI function calling.

=======================  ==================================================================
tool                     what it returns
=======================  ==================================================================
``search_catalog``       items whose text matches a query, after filters
``recommend_for_user``   a recommender's top items for one user, after filters
``similar_items``        the items a model finds closest to one item (id or title)
``item_details``         the catalog facts of some items (description included)
``explain``              the items of a user's history that share most with an item
=======================  ==================================================================

Every tool is **read-only** (it returns new lists of dicts, never changes the data) and declares
which of its arguments name a user (``user_args``), so the agent can refuse calls about users
the request did not mention. Text in results (descriptions, titles) is data, not instructions.

Example
-------
>>> from perso_kit.data.demo import make_world
>>> tools = {t.name: t for t in catalog_tools(make_world(seed=42).dataset)}
>>> rows = tools["search_catalog"](query="heist", filters={"genres": ["Comedy"]}, k=2)
>>> all("Comedy" in r["genres"] for r in rows)
True
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..llm import grounding

FILTERS = {
    "type": "object",
    "description": "optional constraints on the items",
    "properties": {
        "genres": {"type": "array", "items": {"type": "string"},
                   "description": "keep items with at least one of these genres"},
        "exclude_genres": {"type": "array", "items": {"type": "string"}},
        "moods": {"type": "array", "items": {"type": "string"}},
        "decades": {"type": "array", "items": {"type": "string"},
                    "description": "release decades such as 1990s"},
        "max_runtime": {"type": "integer", "description": "longest runtime in minutes"},
        "not_seen_by": {"type": "array", "items": {"type": "integer"},
                        "description": "user ids: leave out items any of them has seen"},
        "exclude_moods": {"type": "array", "items": {"type": "string"}},
        "min_year": {"type": "integer", "description": "earliest release year"},
        "max_year": {"type": "integer", "description": "latest release year"},
        "newer_than": {"type": ["integer", "string"],
                       "description": "a movie (id or title): keep items released after it"},
    },
    "additionalProperties": False,
}


@dataclass
class Tool:
    """A tool: ``name``, ``description``, JSON-schema ``parameters``, the function ``fn`` and
    the names of arguments that hold user ids (``user_args``)."""

    name: str
    description: str
    parameters: dict
    fn: Callable
    user_args: tuple = field(default_factory=tuple)

    def spec(self) -> dict:
        """The OpenAI-format tool definition."""
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}

    def users_named(self, args: dict) -> set:
        """The user ids a call's arguments refer to."""
        out = set()
        for key in self.user_args:
            value = args.get(key)
            if key == "filters" and isinstance(value, dict):
                value = value.get("not_seen_by")
            for v in (value if isinstance(value, list) else [value]):
                if v is not None:
                    out.add(int(v))
        return out

    def __call__(self, **args):
        return self.fn(**args)


def _rows(items: pd.DataFrame, extra: dict | None = None, description: bool = False) -> list:
    cols = ["item_id", "title", "year", "genres", "mood", "runtime"]
    if description:
        cols += ["themes", "description"]
    out = []
    for rec in items[cols].to_dict("records"):
        rec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.items()}
        rec = {k: (int(v) if isinstance(v, (np.integer,)) else v) for k, v in rec.items()}
        out.append(rec)
    for key, values in (extra or {}).items():
        for rec, v in zip(out, values):
            rec[key] = round(float(v), 4)
    return out


def resolve_item(dataset: Dataset, item, index: grounding.TitleIndex | None = None) -> int:
    """The catalog id of ``item``, given as an id or a title; a clear error when none matches.

    >>> from perso_kit.data.demo import make_world
    >>> ds = make_world(seed=42).dataset
    >>> resolve_item(ds, "Velvet Horizon, The (1993)"), resolve_item(ds, 1)
    (1, 1)
    """
    if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.strip().isdigit()):
        if int(item) not in set(dataset.items["item_id"]):
            raise ValueError(f"no item with id {item}")
        return int(item)
    g = grounding.ground_titles([str(item)], index if index is not None else dataset.items)
    if bool(g["hallucinated"].iloc[0]):
        raise ValueError(f"no catalog title matches {item!r}; use search_catalog first")
    return int(g["item_id"].iloc[0])


def filter_mask(dataset: Dataset, filters: dict | None) -> np.ndarray:
    """Boolean mask over ``dataset.items`` rows for a ``filters`` dict (schema ``FILTERS``)."""
    items, f = dataset.items, filters or {}
    mask = np.ones(len(items), dtype=bool)
    genres = items["genres"].map(set)
    if f.get("genres"):
        wanted = {g.lower() for g in f["genres"]}
        mask &= genres.map(lambda g: bool({x.lower() for x in g} & wanted)).to_numpy()
    if f.get("exclude_genres"):
        drop = {g.lower() for g in f["exclude_genres"]}
        mask &= ~genres.map(lambda g: bool({x.lower() for x in g} & drop)).to_numpy()
    if f.get("moods"):
        mask &= items["mood"].str.lower().isin([m.lower() for m in f["moods"]]).to_numpy()
    if f.get("decades"):
        decade = items["year"].map(lambda y: "" if pd.isna(y) else f"{int(y) // 10 * 10}s")
        mask &= decade.isin(f["decades"]).to_numpy()
    if f.get("max_runtime"):
        mask &= (items["runtime"] <= int(f["max_runtime"])).to_numpy()
    if f.get("exclude_moods"):
        mask &= ~items["mood"].str.lower().isin([m.lower() for m in f["exclude_moods"]]).to_numpy()
    if f.get("min_year") is not None:
        mask &= (items["year"].fillna(-1) >= int(f["min_year"])).to_numpy()
    if f.get("max_year") is not None:
        mask &= (items["year"].fillna(10**4) <= int(f["max_year"])).to_numpy()
    if f.get("newer_than") is not None:
        year = items.loc[items["item_id"] == resolve_item(dataset, f["newer_than"]), "year"]
        mask &= (items["year"].fillna(-1) > int(year.iloc[0])).to_numpy()
    if f.get("not_seen_by"):
        inter = dataset.interactions
        seen = inter.loc[inter["user_id"].isin(f["not_seen_by"]), "item_id"]
        mask &= ~items["item_id"].isin(seen).to_numpy()
    return mask


def catalog_tools(dataset: Dataset, recommenders: dict | None = None,
                  default_model: str | None = None) -> list[Tool]:
    """The five tools over ``dataset`` (see the module docstring).

    Parameters
    ----------
    dataset : Dataset
        Catalog and interactions (the histories ``explain`` and ``not_seen_by`` read).
    recommenders : dict of name -> fitted Recommender, optional
        What ``recommend_for_user`` and ``similar_items`` can use (popularity if empty).
    default_model : str, optional
        The recommender used when a call names none (default: the first one).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    recommenders = dict(recommenders or {})
    default_model = default_model or next(iter(recommenders), "popularity")
    items = dataset.items.reset_index(drop=True)
    text = (items["title"] + " " + items["genres"].map(" ".join) + " " + items["mood"] + " "
            + items["themes"].map(" ".join) + " " + items["description"].fillna(""))
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    X = vectorizer.fit_transform(text)
    index = grounding.TitleIndex(items)
    pop = dataset.item_popularity().reindex(items["item_id"]).fillna(0).to_numpy(float)
    all_ids = items["item_id"].to_numpy()

    def resolve(item) -> int:
        return resolve_item(dataset, item, index)

    def search_catalog(query: str, filters: dict | None = None, k: int = 10) -> list:
        mask = filter_mask(dataset, filters)
        scores = (X @ vectorizer.transform([query]).T).toarray().ravel()
        scores = scores + 1e-6 * np.log1p(pop)  # ties: the better known item first
        scores[~mask] = -np.inf
        top = np.argsort(-scores, kind="stable")[: int(k)]
        top = top[np.isfinite(scores[top])]
        return _rows(items.iloc[top], {"match": scores[top]})

    def recommend_for_user(user: int, k: int = 10, model: str | None = None,
                           filters: dict | None = None) -> list:
        model = model or default_model
        mask = filter_mask(dataset, filters)
        if model == "popularity" or not recommenders:
            scores = pop.copy()
            seen = dataset.interactions.loc[dataset.interactions["user_id"] == user, "item_id"]
            scores[np.isin(all_ids, seen)] = -np.inf
            scores[~mask] = -np.inf
            top = np.argsort(-scores, kind="stable")[: int(k)]
            return _rows(items.iloc[top[np.isfinite(scores[top])]])
        if model not in recommenders:
            raise ValueError(f"unknown model {model!r}; choose one of {sorted(recommenders)}")
        if not mask.any():
            return []
        recs = recommenders[model].recommend([user], k=int(k), items=all_ids[mask])
        rows = items.set_index("item_id").loc[recs["item_id"]].reset_index()
        return _rows(rows, {"score": recs["score"].to_numpy()})

    def similar_items(item, k: int = 10) -> list:
        i = resolve(item)
        model = recommenders.get(default_model)
        if model is not None and hasattr(model, "similar_items"):
            sim = model.similar_items(i, k=int(k))
            rows = items.set_index("item_id").loc[sim["item_id"]].reset_index()
            return _rows(rows, {"similarity": sim["similarity"].to_numpy()})
        pos = int(np.flatnonzero(all_ids == i)[0])
        s = (X @ X[pos].T).toarray().ravel()
        s[pos] = -np.inf
        top = np.argsort(-s, kind="stable")[: int(k)]
        return _rows(items.iloc[top], {"similarity": s[top]})

    def item_details(ids: list) -> list:
        wanted = [resolve(i) for i in ids][:20]
        rows = items.set_index("item_id").loc[wanted].reset_index()
        return _rows(rows, description=True)

    def explain(user: int, item) -> dict:
        i = resolve(item)
        row = items.loc[items["item_id"] == i].iloc[0]
        attrs = set(row["genres"]) | set(row["themes"]) | {row["mood"]}
        hist = dataset.history(user)
        hist = items.set_index("item_id").loc[hist["item_id"]].reset_index()
        shared = hist.apply(lambda r: sorted(attrs & (set(r["genres"]) | set(r["themes"])
                                                      | {r["mood"]})), axis=1)
        order = np.argsort(-shared.map(len).to_numpy(), kind="stable")[:3]
        return {"item": row["title"], "because_you_watched": [
            {"title": hist["title"].iloc[j], "shared": shared.iloc[j]} for j in order
            if shared.iloc[j]]}

    num = {"type": "integer", "minimum": 1, "maximum": 50}
    return [
        Tool("search_catalog", "Search the movie catalog by words (title, genre, mood, themes, "
             "description), with optional filters.",
             {"type": "object", "properties": {"query": {"type": "string"}, "filters": FILTERS,
                                               "k": num},
              "required": ["query"], "additionalProperties": False},
             search_catalog, ("filters",)),
        Tool("recommend_for_user", "Recommend movies for one user id from their history with a "
             f"recommender model ({', '.join(recommenders) or 'popularity'}), with optional "
             "filters. Never returns movies the user has seen.",
             {"type": "object", "properties": {
                 "user": {"type": "integer"}, "k": num,
                 "model": {"type": "string", "enum": list(recommenders) or ["popularity"]},
                 "filters": FILTERS},
              "required": ["user"], "additionalProperties": False},
             recommend_for_user, ("user", "filters")),
        Tool("similar_items", "Movies similar to one movie, given by id or by title.",
             {"type": "object", "properties": {"item": {"type": ["integer", "string"]},
                                               "k": num},
              "required": ["item"], "additionalProperties": False}, similar_items),
        Tool("item_details", "Catalog details (year, genres, mood, runtime, description) of "
             "movies given by ids or titles.",
             {"type": "object", "properties": {"ids": {"type": "array", "items": {
                 "type": ["integer", "string"]}, "minItems": 1, "maxItems": 20}},
              "required": ["ids"], "additionalProperties": False}, item_details),
        Tool("explain", "Why a movie suits a user: the movies of their history that share "
             "genres, mood or themes with it.",
             {"type": "object", "properties": {"user": {"type": "integer"},
                                               "item": {"type": ["integer", "string"]}},
              "required": ["user", "item"], "additionalProperties": False},
             explain, ("user",)),
    ]


def plant_injection(dataset: Dataset, item_id, text: str) -> Dataset:
    """A copy of ``dataset`` whose item ``item_id`` has ``text`` appended to its description
    (to test that text coming from items is treated as data)."""
    items = dataset.items.copy()
    pos = items["item_id"] == item_id
    if not pos.any():
        raise ValueError(f"no item with id {item_id}")
    items.loc[pos, "description"] = items.loc[pos, "description"] + " " + text
    return dataclasses.replace(dataset, items=items)
