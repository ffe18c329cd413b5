"""Knowledge as relations: item-item links an LLM proposes, checked, then used by item-kNN.

A catalog lists items and their attributes; a *knowledge graph* also links items to each
other: this film is the sequel of that one, these two share a director, a theme. MovieLens
holds none of these links. A language model has read about films and can be asked for them,
among a given set of catalog titles (here: an item's neighbourhood in item-kNN). Before a
proposed link is used, it is checked against what the catalog *can* verify, and counted as

* ``confirmed``: the catalog supports it;
* ``unverifiable``: the catalog has nothing to check it against (MovieLens has no directors);
* ``contradicted``: the catalog says otherwise (a "sequel" released before its original);
* ``unknown title``: one of its titles is not in the catalog (matched with the kit's title
  grounding, :mod:`perso_kit.llm.grounding`).

**The rule per kind** (``A relation B``; years and titles from the catalog):

==================  ========================================================================
kind                rule
==================  ========================================================================
``sequel_of``       contradicted when A and B are the same item or A is older than B;
                    confirmed when A is not older, the two share a title stem
                    (:func:`title_stem`: "Alien 3" and "Alien: Resurrection" have
                    the stem of "Alien") and A's title is not B's title again (a number, a
                    subtitle or more words: the same title again is a remake as often as a
                    sequel); unverifiable otherwise ("Army of Darkness" continues "Evil Dead
                    II" with no word in common)
``same_franchise``  contradicted when A and B are the same item; confirmed when they share a
                    title stem and their titles differ; unverifiable otherwise
``same_director``   the catalog's ``director`` column when it has one (equal: confirmed,
                    different: contradicted); without one (MovieLens, the demo world)
                    unverifiable
``shared_theme``    the theme named in ``detail``: a catalog genre, or a value of the
                    catalog's ``themes`` / ``mood`` column (the demo world's attributes):
                    confirmed when both items have it, contradicted when one lacks it; any
                    other theme ("time travel" on MovieLens) unverifiable. With no theme
                    named: confirmed when the two share a genre, contradicted when they share
                    none
==================  ========================================================================

The confirmed links become an extra signal: :class:`RelationKNN` is item-kNN whose item-item
similarities get ``weight`` added along each link, measured with the kit's one protocol against
plain item-kNN -- and against the same model fed *every* proposed link, unchecked, to see what
checking buys.

**The offline stand-in** (not an LLM) answers the relation prompt from the listed titles alone:
titles with the same stem become ``sequel_of`` (the later of the earlier), titles sharing a
content word ``same_franchise`` (a guess from the words), and, deliberately, one sequel of the
first title three years later (``"<title> 2"``), which the catalog rarely holds, so that the
unknown-title count has something to catch (grounding, tolerant of typos, may still match it
to a film of almost the same title and year). It knows nothing about films: on the demo
world's invented titles its links are coincidences of words; on MovieLens its stem rule finds
real sequels ("Aliens" after "Alien") that a reader could find too. Only a language model
can bring what the titles do not say.

>>> items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["Die Hard (1988)",
...     "Die Hard 2 (1990)", "Heat (1995)"], "year": [1988, 1990, 1995],
...     "genres": [("Action",), ("Action",), ("Crime",)]})
>>> proposed = pd.DataFrame({"a": ["Die Hard 2", "Die Hard (1988)", "Heat", "Heat 4 (2001)"],
...     "relation": ["sequel_of", "sequel_of", "shared_theme", "sequel_of"],
...     "b": ["Die Hard", "Die Hard 2 (1990)", "Die Hard", "Heat"],
...     "detail": ["", "", "Action", ""]})
>>> check_relations(proposed, items)["status"].tolist()
['confirmed', 'contradicted', 'contradicted', 'unknown title']
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..llm.grounding import TitleIndex, ground_titles, normalize_title
from ..llm.offline import register_handler
from ..recommenders.itemknn import ItemKNN

#: the relation kinds the prompt offers (the schema's enum)
RELATION_KINDS = ("sequel_of", "same_franchise", "same_director", "shared_theme")
#: what a proposed relation can be counted as, in this order
STATUSES = ("confirmed", "unverifiable", "contradicted", "unknown title")
#: answer length fit for a list of relations (tokens)
RELATIONS_MAX_TOKENS = 400
#: most relations one answer may hold
MAX_RELATIONS = 8

RELATION_SCHEMA = {
    "title": "item_relations",
    "type": "object",
    "properties": {
        "relations": {
            "type": "array", "maxItems": MAX_RELATIONS,
            "items": {
                "type": "object",
                "properties": {
                    "a": {"type": "string", "description": "a film of the list"},
                    "relation": {"type": "string", "enum": list(RELATION_KINDS)},
                    "b": {"type": "string", "description": "another film of the list"},
                    "detail": {"type": "string",
                               "description": "the theme or the director; empty otherwise"},
                },
                "required": ["a", "relation", "b", "detail"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["relations"],
    "additionalProperties": False,
}

PROPOSED_COLUMNS = ["group", "a", "relation", "b", "detail"]


# --------------------------------------------------------------------------- the request
def relation_messages(titles) -> list:
    """The chat messages asking for relations among ``titles`` (catalog titles, written as
    the catalog writes them, with their year). Only titles: no genres, no ids, nothing the
    checker reads afterwards.

    >>> relation_messages(["Alien (1979)", "Aliens (1986)"])[1]["content"].splitlines()[:3]
    ['Films:', '- Alien (1979)', '- Aliens (1986)']
    """
    system = ("You are a film expert building a knowledge graph. You know facts about films "
              "that a catalog of titles does not hold.")
    user = ("Films:\n" + "\n".join(f"- {t}" for t in titles)
            + "\nWhich films of this list are related? Relations: sequel_of (film a continues "
              "film b), same_franchise, same_director (name the director in detail), "
              "shared_theme (name the theme in detail). Give at most "
              f"{MAX_RELATIONS} relations, only between films of the list, with titles as "
              "listed.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def relation_groups(knn: ItemKNN, n_groups: int = 10, size: int = 15) -> list[list]:
    """Sets of catalog item ids to ask about: each of the ``n_groups`` most popular training
    items with its ``size - 1`` nearest neighbours in a fitted item-kNN (items watched by the
    same people: where a sequel or a franchise is likely to sit).

    >>> from perso_kit import load_dataset
    >>> groups = relation_groups(ItemKNN().fit(load_dataset("demo")), n_groups=2, size=5)
    >>> [len(g) for g in groups]
    [5, 5]
    """
    train = knn._check_fitted() if hasattr(knn, "_check_fitted") else knn.train_
    if n_groups < 1 or size < 2:
        raise ValueError(f"n_groups must be >= 1 and size >= 2, got {n_groups} and {size}")
    pop = train.item_popularity()
    seeds = pop.sort_values(ascending=False, kind="stable").index[:n_groups]
    S = knn.similarity_
    groups = []
    for iid in seeds:
        row = S[int(train.item_index([iid])[0])]
        order = row.indices[np.lexsort((row.indices, -row.data))][: size - 1]
        groups.append([iid] + [train.item_ids[j] for j in order])
    return groups


@dataclass
class Proposals:
    """What :func:`propose_relations` got back: one row per proposed relation
    (``group, a, relation, b, detail``), how many requests were sent, how many failed
    (no valid JSON, an error: counted, never raised) and their reasons."""

    relations: pd.DataFrame
    requests: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)


def propose_relations(llm, items: pd.DataFrame, groups, concurrency: int = 8,
                      progress: bool = True) -> Proposals:
    """Ask ``llm`` for relations among each group of item ids (one cached request per group,
    sent as a batch). A failed or invalid reply adds nothing and is counted in
    ``Proposals.failed``; a relation with a kind outside :data:`RELATION_KINDS` is dropped by
    the schema's validation with its whole reply.
    """
    titles = items.set_index("item_id")["title"]
    groups = [list(g) for g in groups]
    requests = [dict(messages=relation_messages([titles[i] for i in g if i in titles.index]),
                     json_schema=RELATION_SCHEMA, max_tokens=RELATIONS_MAX_TOKENS)
                for g in groups]
    replies = llm.map(requests, concurrency=concurrency, desc="item relations",
                      progress=progress)
    rows, errors = [], []
    for gi, rep in enumerate(replies):
        d = rep.data if rep.ok and isinstance(rep.data, dict) else None
        if d is None:
            errors.append(rep.error or "no valid JSON in the reply")
            continue
        for r in d.get("relations", []):
            rows.append(dict(group=gi, a=str(r.get("a", "")), relation=str(r.get("relation", "")),
                             b=str(r.get("b", "")), detail=str(r.get("detail", ""))))
    return Proposals(pd.DataFrame(rows, columns=PROPOSED_COLUMNS), len(requests), len(errors),
                     errors)


# --------------------------------------------------------------------------- the checks
_SEQUEL_MARK = re.compile(r"(?:\s+(?:part|chapter|episode|vol|volume))?\s+(?:\d+|[ivx]+)$")


def title_stem(title: str) -> str:
    """The part of a title a series keeps: the title before a subtitle (":" or " - "), without
    its year, article, sequel number ("2", "III", "Part II") or a plural "s" on its last word.

    >>> [title_stem(t) for t in ("Godfather: Part II, The (1974)", "Toy Story 2 (1999)",
    ...  "Star Trek VI: The Undiscovered Country (1991)", "Aliens (1986)")]
    ['godfather', 'toy story', 'star trek', 'alien']
    """
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", str(title)).strip()
    m = re.match(r"^(.*?),\s*(the|a|an)$", t, re.I)          # "Godfather: Part II, The"
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    t = re.split(r":|\s+-\s+", t)[0]
    key = normalize_title(t).key
    key = _SEQUEL_MARK.sub("", key).strip()
    if len(key) > 4 and key.endswith("s") and not key.endswith("ss"):
        key = key[:-1]
    return key


def shares_stem(a: str, b: str) -> bool:
    """Whether two titles share a stem: equal stems, or one stem the first words of the other
    ("Batman" and "Batman Returns").

    >>> shares_stem("Batman (1989)", "Batman Returns (1992)"), shares_stem("Star Wars",
    ...                                                                   "Star Trek")
    (True, False)
    """
    sa, sb = title_stem(a), title_stem(b)
    if not sa or not sb:
        return False
    short, long_ = sorted((sa, sb), key=len)
    return short == long_ or long_.startswith(short + " ")


def _values(v) -> set[str]:
    if isinstance(v, (list, tuple, set, np.ndarray)):
        return {str(x).strip().lower() for x in v if str(x).strip()}
    if v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip():
        return set()
    return {str(v).strip().lower()}


def _year(row) -> int | None:
    y = row.get("year")
    return None if y is None or pd.isna(y) else int(y)


def check_relation(relation: str, a: dict, b: dict, detail: str = "") -> tuple[str, str]:
    """``(status, reason)`` of one relation between two catalog rows (dicts with ``item_id,
    title``, and ``year, genres``, ``themes``, ``mood``, ``director`` when the catalog has
    them), by the rules of the module docstring.

    >>> a = {"item_id": 1, "title": "Alien (1979)", "year": 1979, "genres": ("Horror",)}
    >>> b = {"item_id": 2, "title": "Aliens (1986)", "year": 1986, "genres": ("Action",)}
    >>> check_relation("sequel_of", b, a)[0], check_relation("sequel_of", a, b)[0]
    ('confirmed', 'contradicted')
    >>> check_relation("same_director", a, b)[0], check_relation("shared_theme", a, b, "Horror")
    ('unverifiable', ('contradicted', 'Aliens (1986) is not listed under Horror'))
    """
    if relation not in RELATION_KINDS:
        raise ValueError(f"relation must be one of {RELATION_KINDS}, got {relation!r}")
    same = a["item_id"] == b["item_id"]
    if relation == "sequel_of":
        if same:
            return "contradicted", "a film is not its own sequel"
        ya, yb = _year(a), _year(b)
        if ya is not None and yb is not None and ya < yb:
            return "contradicted", f"{a['title']} is older than {b['title']}"
        stem = shares_stem(a["title"], b["title"])
        differ = normalize_title(a["title"]).key != normalize_title(b["title"]).key
        if stem and differ and ya is not None and yb is not None:
            return "confirmed", "later, and the titles share a stem"
        return "unverifiable", ("the same title again (a remake or a sequel)" if stem else
                                "no title stem in common: the catalog cannot tell")
    if relation == "same_franchise":
        if same:
            return "contradicted", "the same film twice"
        differ = normalize_title(a["title"]).key != normalize_title(b["title"]).key
        if shares_stem(a["title"], b["title"]) and differ:
            return "confirmed", "the titles share a stem"
        return "unverifiable", "no title stem in common: the catalog cannot tell"
    if relation == "same_director":
        da, db = _values(a.get("director")), _values(b.get("director"))
        if not da or not db:
            return "unverifiable", "the catalog has no director"
        return ("confirmed", "same director") if da & db else ("contradicted",
                                                              "different directors")
    # shared_theme
    if same:
        return "contradicted", "the same film twice"
    ga, gb = _values(a.get("genres")), _values(b.get("genres"))
    theme = str(detail or "").strip().lower()
    if not theme:
        if not ga or not gb:
            return "unverifiable", "the catalog has no genres for them"
        return ("confirmed", "they share a genre") if ga & gb else (
            "contradicted", "they share no genre")
    for col, va, vb in (("genres", ga, gb),
                        ("themes", _values(a.get("themes")), _values(b.get("themes"))),
                        ("mood", _values(a.get("mood")), _values(b.get("mood")))):
        if theme in va | vb or (col == "genres" and theme in _all_genres(a, b)):
            if theme in va and theme in vb:
                return "confirmed", f"both are listed under {detail}"
            if va and vb:
                lacking = b if theme in va else a
                return "contradicted", f"{lacking['title']} is not listed under {detail}"
    return "unverifiable", f"the catalog has no column for {detail!r}"


def _all_genres(a: dict, b: dict) -> set[str]:
    return set(a.get("_vocabulary", ())) | set(b.get("_vocabulary", ()))


def check_relations(proposed: pd.DataFrame, items: pd.DataFrame | TitleIndex,
                    threshold: float = 0.8) -> pd.DataFrame:
    """Ground both titles of each proposed relation (``a, relation, b, detail``) to the catalog
    and check it (:func:`check_relation`). Adds ``item_a, item_b`` (NA when a title is not in
    the catalog), ``status`` (one of :data:`STATUSES`) and ``reason`` (which says so when a
    title was matched to a catalog title written differently: "Heat 2 (1996) read as Heat
    (1995)"). A theme that is a genre
    of the catalog's vocabulary is checked against genres even when neither item has it.
    """
    index = items if isinstance(items, TitleIndex) else TitleIndex(items)
    cat = index.items.set_index("item_id", drop=False)
    vocabulary = ({str(g).lower() for gs in cat["genres"] for g in gs}
                  if "genres" in cat.columns else set())
    out = proposed.copy().reset_index(drop=True)
    if not len(out):
        for c in ("item_a", "item_b", "status", "reason"):
            out[c] = pd.Series(dtype=object)
        return out
    ga, gb = (_ground(out[c].tolist(), index, threshold) for c in ("a", "b"))
    out["item_a"], out["item_b"] = ga["item_id"].to_numpy(), gb["item_id"].to_numpy()
    status, reason = [], []
    for r, ha, hb in zip(out.itertuples(), ga["hallucinated"], gb["hallucinated"]):
        if ha or hb:
            status.append("unknown title")
            reason.append("not in the catalog: " + " and ".join(
                t for t, h in ((r.a, ha), (r.b, hb)) if h))
            continue
        if r.relation not in RELATION_KINDS:
            status.append("unverifiable")
            reason.append(f"unknown relation {r.relation!r}")
            continue
        ra = dict(cat.loc[r.item_a], _vocabulary=vocabulary)
        rb = dict(cat.loc[r.item_b], _vocabulary=vocabulary)
        s, why = check_relation(r.relation, ra, rb, r.detail)
        read = [f"{t} read as {row['title']}" for t, row in ((r.a, ra), (r.b, rb))
                if normalize_title(t).key != normalize_title(row["title"]).key]
        status.append(s)
        reason.append("; ".join(read + [why]))
    out["status"], out["reason"] = status, reason
    return out


def _ground(texts: list, index: TitleIndex, threshold: float) -> pd.DataFrame:
    """:func:`~perso_kit.llm.grounding.ground_titles`, except that a title written exactly as
    one catalog item writes it is that item (the demo world has "Secret Island (1989)" and
    "Secret Island, The (1989)": the same key once the article is dropped)."""
    g = ground_titles(texts, index, threshold=threshold)
    titles = pd.Series(index.ids, index=index.titles)
    exact = titles[~titles.index.duplicated(keep=False)]
    for pos, t in enumerate(texts):
        if t in exact.index:
            g.loc[pos, ["item_id", "hallucinated"]] = [exact[t], False]
    return g


def relation_counts(checked: pd.DataFrame) -> pd.DataFrame:
    """Proposed relations per kind (rows, with an ``all`` row) and status (columns, every one
    of :data:`STATUSES`, zeros included). Proposals are counted as the answers gave them: a
    relation proposed in two groups counts twice.

    >>> t = relation_counts(pd.DataFrame({"relation": ["sequel_of", "sequel_of"],
    ...                                   "status": ["confirmed", "contradicted"]}))
    >>> t.loc["all"].tolist()
    [1, 0, 1, 0]
    """
    t = pd.crosstab(checked["relation"], checked["status"]) if len(checked) else pd.DataFrame()
    t = t.reindex(index=list(RELATION_KINDS), columns=list(STATUSES), fill_value=0)
    t = t.fillna(0).astype(int)
    t.loc["all"] = t.sum()
    return t.rename_axis(index="relation", columns=None)


# --------------------------------------------------------------------------- the clean control
def catalog_relations(items: pd.DataFrame, groups, max_per_group: int = MAX_RELATIONS
                      ) -> pd.DataFrame:
    """Relations the catalog itself states among each group of ids, in the form an LLM's answer
    takes (``group, a, relation, b, detail``, titles as the catalog writes them): the later of
    two titles sharing a stem ``sequel_of`` the earlier, and pairs sharing a genre
    ``shared_theme`` (the genre as detail). The clean control of the checker: every one of
    them must come out confirmed.

    >>> items = pd.DataFrame({"item_id": [1, 2], "title": ["Alien (1979)", "Aliens (1986)"],
    ...                       "year": [1979, 1986], "genres": [("Horror",), ("Action",)]})
    >>> catalog_relations(items, [[1, 2]])[["a", "relation", "b"]].values.tolist()
    [['Aliens (1986)', 'sequel_of', 'Alien (1979)']]
    """
    cat = items.set_index("item_id")
    rows = []
    for gi, g in enumerate(groups):
        found = []
        for x, y in itertools.combinations([i for i in g if i in cat.index], 2):
            tx, ty = cat.at[x, "title"], cat.at[y, "title"]
            yx, yy = cat.at[x, "year"], cat.at[y, "year"]
            if (shares_stem(tx, ty) and normalize_title(tx).key != normalize_title(ty).key
                    and not pd.isna(yx) and not pd.isna(yy)):
                later, earlier = (tx, ty) if yx >= yy else (ty, tx)
                found.append((later, "sequel_of", earlier, ""))
        for x, y in itertools.combinations([i for i in g if i in cat.index], 2):
            common = sorted(set(cat.at[x, "genres"]) & set(cat.at[y, "genres"]))
            if common:
                found.append((cat.at[x, "title"], "shared_theme", cat.at[y, "title"], common[0]))
        rows += [dict(group=gi, a=a, relation=k, b=b, detail=d)
                 for a, k, b, d in found[:max_per_group]]
    return pd.DataFrame(rows, columns=PROPOSED_COLUMNS)


# --------------------------------------------------------------------------- the extra signal
def relation_matrix(checked: pd.DataFrame, train, statuses=("confirmed",)) -> sp.csr_matrix:
    """A symmetric items x items 0/1 matrix (in ``train``'s item order) with a 1 for each pair
    linked by a checked relation whose status is in ``statuses`` (``None``: every relation
    whose titles are in the catalog, checked or not). Items not in ``train`` are skipped.

    >>> from perso_kit import load_dataset
    >>> ds = load_dataset("demo")
    >>> links = pd.DataFrame({"item_a": [1], "item_b": [2], "status": ["confirmed"]})
    >>> int(relation_matrix(links, ds).sum())
    2
    """
    n = train.n_items
    if not len(checked):
        return sp.csr_matrix((n, n))
    keep = checked["item_a"].notna() & checked["item_b"].notna()
    if statuses is not None:
        keep &= checked["status"].isin(list(statuses))
    pairs = checked.loc[keep, ["item_a", "item_b"]]
    known = set(train.item_ids.tolist())
    pairs = pairs[pairs["item_a"].isin(known) & pairs["item_b"].isin(known)
                  & (pairs["item_a"] != pairs["item_b"])]
    if not len(pairs):
        return sp.csr_matrix((n, n))
    ia = train.item_index(pairs["item_a"].to_numpy())
    ib = train.item_index(pairs["item_b"].to_numpy())
    m = sp.csr_matrix((np.ones(2 * len(ia)), (np.r_[ia, ib], np.r_[ib, ia])), shape=(n, n))
    m.data[:] = 1.0                                   # a pair proposed twice is one link
    return m


class RelationKNN(ItemKNN):
    """Item-kNN with ``weight`` added to the similarity of every linked pair: a user who
    watched one film of a linked pair gets the other one's score raised by ``weight``.

    Parameters
    ----------
    relations : DataFrame
        Checked relations (:func:`check_relations`: ``item_a, item_b, status``).
    weight : float
        Added per link (the shrunk cosines of item-kNN are mostly below 0.3).
    statuses : tuple of str, or None
        The statuses used as links (default: confirmed only; ``None``: every relation whose
        titles are in the catalog, unchecked).
    n_neighbors, shrinkage : as :class:`~perso_kit.recommenders.ItemKNN`

    Attributes
    ----------
    links_ : int
        Linked pairs used (each counted once).

    >>> from perso_kit import load_dataset
    >>> links = pd.DataFrame({"item_a": [1], "item_b": [2], "status": ["confirmed"]})
    >>> RelationKNN(links, weight=0.2).fit(load_dataset("demo")).links_
    1
    """

    def __init__(self, relations: pd.DataFrame | None = None, weight: float = 0.2,
                 statuses=("confirmed",), n_neighbors: int = 100, shrinkage: float = 10.0):
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        super().__init__(n_neighbors=n_neighbors, shrinkage=shrinkage)
        self.relations = relations
        self.weight = float(weight)
        self.statuses = tuple(statuses) if statuses is not None else None

    def fit(self, train) -> "RelationKNN":
        super().fit(train)
        rel = self.relations if self.relations is not None else pd.DataFrame(
            columns=["item_a", "item_b", "status"])
        R = relation_matrix(rel, train, self.statuses)
        self.links_ = int(R.nnz // 2)
        self.similarity_ = (self.similarity_ + self.weight * R).tocsr()
        return self


# --------------------------------------------------------------------------- stand-in heuristic
_LISTED = re.compile(r"^- (.+\(\d{4}\))\s*$", re.M)
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _content_words(title: str) -> set[str]:
    from .knowledge import _STOP
    return {w for w in normalize_title(title).key.split() if len(w) >= 4 and w not in _STOP}


def _stand_in_relations(req) -> dict:
    """Offline heuristic over the listed titles (reads the prompt only; see the module
    docstring): same stem -> sequel_of, a shared content word -> same_franchise, and one
    invented sequel."""
    titles = _LISTED.findall(req.ctx.prompt)
    year = {t: int(_YEAR.search(t).group(1)) for t in titles}
    found = []
    for x, y in itertools.combinations(titles, 2):
        if shares_stem(x, y):
            later, earlier = (x, y) if year[x] >= year[y] else (y, x)
            found.append({"a": later, "relation": "sequel_of", "b": earlier, "detail": ""})
        elif _content_words(x) & _content_words(y):
            found.append({"a": x, "relation": "same_franchise", "b": y, "detail": ""})
    if titles:      # deliberately one film no catalog has, for the unknown-title count
        first = titles[0]
        name = re.sub(r"\s*\(\d{4}\)\s*$", "", first)
        name = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", name)     # "Heat, The" -> "The Heat"
        found.insert(0, {"a": f"{name} 2 ({year[first] + 3})", "relation": "sequel_of",
                         "b": first, "detail": ""})
    return {"relations": found[:MAX_RELATIONS]}


register_handler("item_relations", _stand_in_relations)
