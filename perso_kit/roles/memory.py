"""A candidate memory (a small "candidate bus"): tools pass candidate sets by *handle*.

An agent that copies a list of 200 items from one tool result into its next prompt pays for
those tokens at every step, and a small model loses track of them. Systems such as
InteRecAgent / RecAI keep the candidates *outside* the prompt instead: a tool writes its result
into a shared memory under a short handle (``"c1"``), the model sees the handle and a short
summary, and the next tool reads the set back by its handle.

:class:`CandidateMemory` is that memory (ordered item ids per handle, with a note saying where
they came from); :func:`bus_tools` are the catalog tools of :mod:`perso_kit.roles.tools` rewired
over it, plus three tools that only move sets around:

========================  ======================================================================
tool                      what it writes (a new handle) or returns
========================  ======================================================================
``search_catalog``        items matching words, after filters (optionally inside a set)
``recommend_for_user``    a recommender's top items for one user (optionally inside a set)
``similar_items``         the items closest to one movie
``filter_candidates``     the items of a set that pass filters
``rank_candidates``       a set re-ordered (popularity, newest, oldest, shortest), cut to ``k``
``combine_candidates``    two sets intersected, joined, or one minus the other
``item_details``          the catalog facts of some items or of the first items of a set
``explain``               the items of a user's history that share most with an item
========================  ======================================================================

Every set-writing tool returns ``{"handle", "count", "note", "top"}``: ``top`` lists the first
few titles (with years), never the whole set.

Example
-------
>>> from perso_kit.data.demo import make_world
>>> ds = make_world(seed=42).dataset
>>> memory = CandidateMemory(ds)
>>> tools = {t.name: t for t in bus_tools(ds, memory=memory)}
>>> out = tools["search_catalog"](query="heist", k=200)
>>> out["handle"], out["count"], len(out["top"])
('c1', 200, 5)
>>> tools["filter_candidates"](candidates="c1", filters={"genres": ["Comedy"]})["handle"]
'c2'
>>> memory.note("c2")
'c1 filtered by {"genres": ["Comedy"]}'
"""
from __future__ import annotations

import json
import re

from ..data.dataset import Dataset
from .tools import FILTERS, Tool, catalog_tools, filter_mask

#: titles shown with a handle (the summary a prompt carries instead of the whole set)
PREVIEW = 5
#: how a handle is written
HANDLE = re.compile(r"^c\d+$")


class CandidateMemory:
    """Candidate sets by handle (``"c1"``, ``"c2"``, ...), in the order they were written.

    Parameters
    ----------
    dataset : Dataset
        The catalog the ids belong to (titles for the summaries).
    preview : int
        Titles a summary shows.
    """

    def __init__(self, dataset: Dataset, preview: int = PREVIEW):
        self.dataset, self.preview = dataset, int(preview)
        self._titles = dataset.items.set_index("item_id")["title"]
        self._sets: dict[str, list[int]] = {}
        self._notes: dict[str, str] = {}

    def clear(self) -> None:
        """Forget every set (a new request starts from ``c1`` again)."""
        self._sets.clear()
        self._notes.clear()

    def put(self, ids, note: str = "") -> str:
        """Store ``ids`` (duplicates dropped, order kept) and return the new handle."""
        handle = f"c{len(self._sets) + 1}"
        self._sets[handle] = [int(i) for i in dict.fromkeys(int(i) for i in ids)]
        self._notes[handle] = note
        return handle

    def get(self, handle: str) -> list[int]:
        """The ids of ``handle``; a clear error naming the handles that exist."""
        if handle not in self._sets:
            known = ", ".join(self._sets) or "none yet"
            raise ValueError(f"no candidate set {handle!r} (sets so far: {known})")
        return list(self._sets[handle])

    def note(self, handle: str) -> str:
        """Where the set came from (the tool and its arguments, in a few words)."""
        self.get(handle)
        return self._notes[handle]

    def summary(self, handle: str) -> dict:
        """What a prompt carries for a set: handle, size, note and the first few titles."""
        ids = self.get(handle)
        return {"handle": handle, "count": len(ids), "note": self._notes[handle],
                "top": [str(self._titles.get(i, i)) for i in ids[: self.preview]]}

    @property
    def handles(self) -> list[str]:
        return list(self._sets)

    def __len__(self) -> int:
        return len(self._sets)


def _args_note(args: dict) -> str:
    return json.dumps({k: v for k, v in args.items() if v not in (None, {}, [])})


def bus_tools(dataset: Dataset, recommenders: dict | None = None,
              default_model: str | None = None,
              memory: CandidateMemory | None = None) -> list[Tool]:
    """The catalog tools over a :class:`CandidateMemory` (see the module docstring).

    Parameters
    ----------
    dataset, recommenders, default_model
        As for :func:`perso_kit.roles.tools.catalog_tools` (which does the work).
    memory : CandidateMemory, optional
        Where the sets go (a new one when omitted); every tool carries it as ``tool.memory``.
    """
    memory = memory if memory is not None else CandidateMemory(dataset)
    base = {t.name: t for t in catalog_tools(dataset, recommenders, default_model)}
    items = dataset.items
    pop = dataset.item_popularity().reindex(items["item_id"]).fillna(0)
    year = items.set_index("item_id")["year"].fillna(0).astype(int)
    runtime = items.set_index("item_id")["runtime"]
    big = {"type": "integer", "minimum": 1, "maximum": 500}
    handle = {"type": "string", "description": "a candidate set handle such as c1"}

    def inside(rows: list, candidates: str | None) -> list[int]:
        ids = [int(r["item_id"]) for r in rows]
        if candidates is None:
            return ids
        keep = set(memory.get(candidates))
        return [i for i in ids if i in keep]

    def pool_filters(filters: dict | None, candidates: str | None, k: int) -> tuple[dict, int]:
        # inside a set: ask the base tool for every item that passes, then keep the set's
        return (filters or {}), (len(items) if candidates else int(k))

    def search_catalog(query: str, filters: dict | None = None, k: int = 50,
                       candidates: str | None = None) -> dict:
        f, n = pool_filters(filters, candidates, k)
        ids = inside(base["search_catalog"](query=query, filters=f, k=n), candidates)[: int(k)]
        return memory.summary(memory.put(ids, "search " + _args_note(
            {"query": query, "filters": filters, "in": candidates})))

    def recommend_for_user(user: int, k: int = 50, model: str | None = None,
                           filters: dict | None = None, candidates: str | None = None) -> dict:
        f, n = pool_filters(filters, candidates, k)
        rows = base["recommend_for_user"](user=user, k=min(n, 500), model=model, filters=f)
        ids = inside(rows, candidates)[: int(k)]
        return memory.summary(memory.put(ids, f"recommendations for user {user} " + _args_note(
            {"filters": filters, "in": candidates})))

    def similar_items(item, k: int = 50) -> dict:
        ids = [int(r["item_id"]) for r in base["similar_items"](item=item, k=int(k))]
        return memory.summary(memory.put(ids, f"similar to {item}"))

    def filter_candidates(candidates: str, filters: dict) -> dict:
        ok = set(items["item_id"].to_numpy()[filter_mask(dataset, filters)])
        ids = [i for i in memory.get(candidates) if i in ok]
        return memory.summary(memory.put(ids, f"{candidates} filtered by {_args_note(filters)}"))

    def rank_candidates(candidates: str, by: str = "popularity", k: int = 10) -> dict:
        ids = memory.get(candidates)
        key = {"popularity": lambda i: -pop.get(i, 0), "newest": lambda i: -year.get(i, 0),
               "oldest": lambda i: year.get(i, 0), "shortest": lambda i: runtime.get(i, 0)}
        ids = sorted(ids, key=key[by])[: int(k)]        # stable: ties keep the set's order
        return memory.summary(memory.put(ids, f"{candidates} ranked by {by}"))

    def combine_candidates(a: str, b: str, how: str = "intersect") -> dict:
        left, right = memory.get(a), set(memory.get(b))
        ids = {"intersect": [i for i in left if i in right],
               "minus": [i for i in left if i not in right],
               "union": left + [i for i in memory.get(b) if i not in set(left)]}[how]
        return memory.summary(memory.put(ids, f"{a} {how} {b}"))

    def item_details(ids: list | None = None, candidates: str | None = None) -> list:
        wanted = list(ids or []) + (memory.get(candidates)[:10] if candidates else [])
        if not wanted:
            raise ValueError("give ids or a candidates handle")
        return base["item_details"](ids=wanted[:20])

    filters = FILTERS
    schema = base["search_catalog"].parameters
    tools = [
        Tool("search_catalog", base["search_catalog"].description + " Writes a candidate set; "
             "`candidates` searches inside one.",
             {"type": "object", "properties": {**schema["properties"], "k": big,
                                               "candidates": handle},
              "required": ["query"], "additionalProperties": False},
             search_catalog, ("filters",)),
        Tool("recommend_for_user", base["recommend_for_user"].description + " Writes a "
             "candidate set; `candidates` recommends inside one.",
             {"type": "object", "properties": {
                 **base["recommend_for_user"].parameters["properties"], "k": big,
                 "candidates": handle},
              "required": ["user"], "additionalProperties": False},
             recommend_for_user, ("user", "filters")),
        Tool("similar_items", base["similar_items"].description + " Writes a candidate set.",
             {"type": "object", "properties": {"item": {"type": ["integer", "string"]},
                                               "k": big},
              "required": ["item"], "additionalProperties": False}, similar_items),
        Tool("filter_candidates", "Keep the items of a candidate set that pass filters. Writes "
             "a new candidate set.",
             {"type": "object", "properties": {"candidates": handle, "filters": filters},
              "required": ["candidates", "filters"], "additionalProperties": False},
             filter_candidates, ("filters",)),
        Tool("rank_candidates", "Re-order a candidate set (by popularity, newest, oldest or "
             "shortest) and keep the first k. Writes a new candidate set.",
             {"type": "object", "properties": {
                 "candidates": handle, "k": big,
                 "by": {"type": "string", "enum": ["popularity", "newest", "oldest",
                                                   "shortest"]}},
              "required": ["candidates"], "additionalProperties": False}, rank_candidates),
        Tool("combine_candidates", "Combine two candidate sets: intersect, union, or a minus "
             "b. Writes a new candidate set.",
             {"type": "object", "properties": {
                 "a": handle, "b": handle,
                 "how": {"type": "string", "enum": ["intersect", "union", "minus"]}},
              "required": ["a", "b"], "additionalProperties": False}, combine_candidates),
        Tool("item_details", base["item_details"].description + " Or the first 10 items of a "
             "candidate set.",
             {"type": "object", "properties": {
                 "ids": {"type": "array", "items": {"type": ["integer", "string"]},
                         "minItems": 1, "maxItems": 20},
                 "candidates": handle}, "additionalProperties": False}, item_details),
        base["explain"],
    ]
    for t in tools:
        t.memory = memory          # the agents clear it at the start of each request
    return tools


def handles_in(args) -> list[str]:
    """The handles an argument dict refers to (values such as ``"c2"``, at any depth).

    >>> handles_in({"candidates": "c2", "filters": {"genres": ["Comedy"]}, "b": "c1"})
    ['c2', 'c1']
    """
    out: list[str] = []
    if isinstance(args, dict):
        for v in args.values():
            out += [h for h in handles_in(v) if h not in out]
    elif isinstance(args, list):
        for v in args:
            out += [h for h in handles_in(v) if h not in out]
    elif isinstance(args, str) and HANDLE.match(args.strip()):
        out.append(args.strip())
    return out


def memory_of(tools) -> CandidateMemory | None:
    """The memory a tool set writes to (``None`` for plain catalog tools)."""
    for t in (tools.values() if isinstance(tools, dict) else tools):
        if isinstance(getattr(t, "memory", None), CandidateMemory):
            return t.memory
    return None
