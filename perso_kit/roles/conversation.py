"""The LLM in a conversational recommender: take requests in words, ask back, refine.

One turn of :class:`Conversation` does four things:

1. **Understand** -- the LLM reads the user's message and returns a *dialogue update* (JSON
   with the schema :data:`DIALOGUE_UPDATE`): genres, moods and decades wanted or excluded, a
   maximum runtime, titles liked, disliked or to leave out.
2. **Track** -- the update is merged into the :class:`DialogueState`, which remembers every
   constraint stated so far, the items liked and disliked and the items already shown. Titles
   are grounded to catalog ids (:func:`perso_kit.llm.grounding.ground_titles`); values outside
   the catalog's vocabulary and titles that do not ground are dropped, and *counted*
   (``Turn.dropped``): a model that invents values loses them silently otherwise.
3. **Recommend** -- a classic recommender scores the catalog for the user (popularity when the
   user is unknown); items like the titles the user liked are lifted; the state filters the
   list (items seen, shown or liked already are never offered). Exclusions are hard: an excluded genre, mood or item
   never appears. Wishes (genre, mood, decade, runtime) are relaxed, last stated first, only when
   nothing would be left.
4. **Ask back** -- the reply lists the picks and asks about one attribute not stated yet,
   offering the values most common among the items still eligible.

Evaluation with simulated users (:func:`evaluate_conversations`): each
:class:`SimulatedPartner` has a *hidden target* (items it truly likes and has not seen) and
answers the system's questions from its true preferences. The target never enters a prompt: the
partner only ever says attribute values and the titles of items it was shown.

Checks measure the user, not the model's own parse. What the user actually asked for and
refused is a :class:`StatedRequest`, written by whoever speaks (the partner records what it
says; a scripted dialogue writes it beside each message). :meth:`StatedRequest.check` counts
recommendations that break it. Checking against :class:`DialogueState` instead would be
circular: a model that misreads "not Alien" never stores the refusal, and then never "breaks" it.

The offline stand-in reads a user's message with :func:`parse_request` (rules over the words of
the request and the vocabulary listed in the prompt): it is **not an LLM**.

Example
-------
>>> from perso_kit.data.demo import make_world
>>> from perso_kit.llm import get_llm
>>> ds = make_world(seed=42).dataset
>>> conv = Conversation(get_llm("offline", cache_path="off"), ds, k=3)
>>> turn = conv.send("A comedy from the 90s please, but no horror")
>>> sorted(conv.state.genres), conv.state.decades, sorted(conv.state.exclude_genres)
(['Comedy'], ['1990s'], ['Horror'])
>>> all("Comedy" in g and "Horror" not in g for g in turn.recommendations["genres"])
True
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..llm import grounding, register_handler
from ..llm import heuristics as H

#: attributes the system can ask about, in the order it asks
QUESTION_ORDER = ("genre", "era", "mood")

#: the JSON schema of a dialogue update (all fields required, lists may be empty)
#: answer lengths fit for each task (tokens): no request leaves the kit unbounded
UPDATE_MAX_TOKENS = 200
PARAPHRASE_MAX_TOKENS = 120

DIALOGUE_UPDATE = {
    "title": "dialogue_update",
    "type": "object",
    "properties": {
        "genres": {"type": "array", "items": {"type": "string"},
                   "description": "genres the user asks for"},
        "exclude_genres": {"type": "array", "items": {"type": "string"},
                           "description": "genres the user does not want"},
        "moods": {"type": "array", "items": {"type": "string"}},
        "exclude_moods": {"type": "array", "items": {"type": "string"}},
        "decades": {"type": "array", "items": {"type": "string"},
                    "description": "release decades such as 1990s"},
        "max_runtime": {"type": ["integer", "null"],
                        "description": "longest runtime in minutes, null if not said"},
        "liked_titles": {"type": "array", "items": {"type": "string"}},
        "disliked_titles": {"type": "array", "items": {"type": "string"}},
        "exclude_titles": {"type": "array", "items": {"type": "string"},
                           "description": "titles not to recommend (seen, or refused)"},
    },
    "required": ["genres", "exclude_genres", "moods", "exclude_moods", "decades",
                 "max_runtime", "liked_titles", "disliked_titles", "exclude_titles"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = """You help a user find a movie in a catalog. Read the user's latest message and \
return the constraints it states, as JSON. Use only these values.
Allowed genres: {genres}
Allowed moods: {moods}
Allowed decades: {decades}
Put titles the user liked in liked_titles, titles they disliked in disliked_titles, titles not \
to recommend (already seen, or refused) in exclude_titles. Lists stay empty when nothing is said.
Constraints known so far (for context): {state}"""


# ------------------------------------------------------------------------- reading requests
_NEGATION = re.compile(r"\b(no|not|without|except|avoid|hate|hated|nothing|don't|dont|never|"
                       r"skip|none|didn't|didnt|rather not|already seen|seen)\b")
_DISLIKE = re.compile(r"\b(didn't like|didnt like|disliked|hated|hate|boring|awful)\b")
_LIKE = re.compile(r"\b(liked|loved|like|love|enjoyed|enjoy|similar to|such as)\b")
_DECADE = re.compile(r"\b(?:(19|20)(\d)0|(\d)0)'?s\b")
_RUNTIME = re.compile(r"\b(?:under|less than|shorter than|at most|no more than|max(?:imum)?|"
                      r"below|within)\s+(an?|one|two|three|\d+(?:\.\d+)?)\s*"
                      r"(hours?|hrs?|h|minutes|mins?)\b")
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
_SYNONYMS = {"Sci-Fi": ["sci-fi", "science fiction", "scifi"], "Comedy": ["comedy", "comedies",
             "funny"], "Romance": ["romance", "romantic", "love story"], "Horror": ["horror",
             "scary"], "Children's": ["children's", "kids", "children"], "Film-Noir": [
             "film-noir", "noir"], "Animation": ["animation", "animated"], "Documentary": [
             "documentary", "documentaries"], "Mystery": ["mystery", "mysteries"]}


def _list_after(label: str, prompt: str) -> list[str]:
    m = re.search(rf"^{label}:\s*(.+)$", prompt, re.M | re.I)
    return [v.strip() for v in m.group(1).split(",") if v.strip()] if m else []


def _value_pattern(value: str) -> re.Pattern:
    forms = _SYNONYMS.get(value, [value.lower()])
    alts = "|".join(re.escape(f) for f in forms)
    return re.compile(rf"(?<![\w-])(?:{alts})(?:s|es)?(?![\w-])")


_LEAD = {"i", "i'd", "i'm", "not", "no", "please", "but", "and", "also", "maybe", "except"}


def _titles(text: str) -> list[str]:
    """``Title (1999)`` strings, one sentence at a time, without a lead-in ("not", "I liked")."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        for t in H.find_titles(sentence):
            toks = t.split()
            start = 0
            for i, tok in enumerate(toks[:-1]):
                if tok.lower().strip(",") in _LEAD or tok[:1].islower():
                    start = i + 1
                else:
                    break
            t = " ".join(toks[start:])
            if t and t not in out:
                out.append(t)
    return out


def parse_request(text: str, genres=(), moods=()) -> dict:
    """Read constraints from one message with plain rules (what the offline stand-in uses).

    Parameters
    ----------
    text : str
        The user's message.
    genres, moods : list of str
        The vocabulary to look for (values outside it are never returned).

    Returns
    -------
    dict
        A value of :data:`DIALOGUE_UPDATE`. A value is excluded when a negation word (no, not,
        without, ...) precedes it in the same clause.

    Example
    -------
    >>> u = parse_request("A funny one from the 80s, not horror, under two hours",
    ...                   genres=["Comedy", "Horror"], moods=["dark"])
    >>> u["genres"], u["exclude_genres"], u["decades"], u["max_runtime"]
    (['Comedy'], ['Horror'], ['1980s'], 120)
    """
    out = {k: [] for k in DIALOGUE_UPDATE["required"]}
    out["max_runtime"] = None
    titles = _titles(text or "")
    masked = text or ""
    for n, t in enumerate(titles):  # titles may hold commas: mask them before splitting
        masked = masked.replace(t, f" TITLE{n} ")
    for clause in re.split(r"[.;!?,]|\bbut\b|\bhowever\b", masked.lower()):
        for values, want, drop in ((genres, "genres", "exclude_genres"),
                                   (moods, "moods", "exclude_moods")):
            for v in values:
                m = _value_pattern(v).search(clause)
                if m:
                    key = drop if _NEGATION.search(clause[:m.start()]) else want
                    if v not in out[key]:
                        out[key].append(v)
        for m in _DECADE.finditer(clause):
            century, tens = (m.group(1), m.group(2)) if m.group(1) else (
                "19" if int(m.group(3)) >= 3 else "20", m.group(3))
            decade = f"{century}{tens}0s"
            if decade not in out["decades"]:
                out["decades"].append(decade)
        m = _RUNTIME.search(clause)
        if m:
            n = _NUMBER_WORDS.get(m.group(1)) or float(m.group(1))
            out["max_runtime"] = int(round(n * 60 if m.group(2).startswith("h") else n))
        for n in range(len(titles)):
            pos = clause.find(f"title{n}")
            if pos < 0:
                continue
            before = clause[:pos]
            if _DISLIKE.search(before):
                out["disliked_titles"].append(titles[n])
            elif _NEGATION.search(before):
                out["exclude_titles"].append(titles[n])
            elif _LIKE.search(before):
                out["liked_titles"].append(titles[n])
    return out


def _stand_in_update(req) -> dict:
    """Stand-in heuristic for the ``dialogue_update`` schema: reads only the request."""
    prompt = req.ctx.prompt
    return parse_request(req.ctx.query, _list_after("Allowed genres", prompt),
                         _list_after("Allowed moods", prompt))


register_handler("dialogue_update", _stand_in_update)


# ------------------------------------------------------------------------- the state
@dataclass
class DialogueState:
    """Everything the user has said so far, as constraints (see the module docstring)."""

    genres: set = field(default_factory=set)
    exclude_genres: set = field(default_factory=set)
    moods: set = field(default_factory=set)
    exclude_moods: set = field(default_factory=set)
    decades: list = field(default_factory=list)
    max_runtime: int | None = None
    liked: list = field(default_factory=list)
    disliked: list = field(default_factory=list)
    excluded: list = field(default_factory=list)
    shown: list = field(default_factory=list)
    asked: list = field(default_factory=list)

    def stated(self, attribute: str) -> bool:
        """Whether the user has said something about ``attribute`` (genre, era, mood)."""
        return bool({"genre": self.genres | self.exclude_genres, "era": self.decades,
                     "mood": self.moods | self.exclude_moods}[attribute])

    def apply(self, update: dict, title_ids: dict | None = None) -> None:
        """Merge one dialogue update. Wanted genres accumulate; a newly stated mood or decade
        replaces the previous one; exclusions accumulate and win over wishes.
        ``title_ids`` maps a title of the update to its catalog id (grounded beforehand)."""
        title_ids = title_ids or {}
        self.exclude_genres |= set(update.get("exclude_genres", []))
        self.genres = (self.genres | set(update.get("genres", []))) - self.exclude_genres
        self.exclude_moods |= set(update.get("exclude_moods", []))
        if update.get("moods"):
            self.moods = set(update["moods"])
        self.moods -= self.exclude_moods
        if update.get("decades"):
            self.decades = list(update["decades"])
        if update.get("max_runtime"):
            self.max_runtime = int(update["max_runtime"])
        for key, target in (("liked_titles", self.liked), ("disliked_titles", self.disliked),
                            ("exclude_titles", self.excluded)):
            for t in update.get(key, []):
                item = title_ids.get(t)
                if item is not None and item not in target:
                    target.append(item)

    def summary(self) -> dict:
        """The state as a small JSON-able dict (what the prompt shows)."""
        return {"genres": sorted(self.genres), "exclude_genres": sorted(self.exclude_genres),
                "moods": sorted(self.moods), "exclude_moods": sorted(self.exclude_moods),
                "decades": self.decades, "max_runtime": self.max_runtime,
                "liked": self.liked, "disliked": self.disliked, "excluded": self.excluded,
                "shown": len(self.shown)}


def violations(state: DialogueState, items: pd.DataFrame) -> pd.Series:
    """Per item row, whether it breaks an *exclusion* of ``state`` (excluded or disliked item,
    excluded genre or mood). Recommendations must never have one."""
    bad_genre = items["genres"].map(lambda g: bool(set(g) & state.exclude_genres))
    return (bad_genre | items["mood"].isin(state.exclude_moods)
            | items["item_id"].isin(state.excluded + state.disliked))


@dataclass
class StatedRequest:
    """What the user actually asked for and refused, known to the speaker (never parsed by
    the LLM under test): the reference of the exclusion and constraint checks.

    Exclusions (``exclude_genres``, ``exclude_moods``, ``refused`` item ids) are hard: a
    recommendation breaking one is a *violation*. Wishes (``genres``, ``decades``, ``moods``,
    ``max_runtime``; a new mood or runtime replaces the old one) may be relaxed when nothing
    fits, so a recommendation missing one counts as a *miss* only when the turn did not say it
    relaxed that attribute.

    >>> import pandas as pd
    >>> asked = StatedRequest()
    >>> asked.add(genres=["Comedy"], exclude_genres=["Horror"], refused=[7])
    >>> recs = pd.DataFrame({"item_id": [7, 8, 9], "genres": [["Comedy"], ["Horror"], ["Drama"]],
    ...                      "year": [1994, 1995, 1996], "mood": ["dark"] * 3,
    ...                      "runtime": [90] * 3})
    >>> asked.check(recs)
    {'violations': 2, 'misses': 2}
    """

    genres: set = field(default_factory=set)
    exclude_genres: set = field(default_factory=set)
    moods: set = field(default_factory=set)
    exclude_moods: set = field(default_factory=set)
    decades: set = field(default_factory=set)
    max_runtime: int | None = None
    refused: list = field(default_factory=list)

    def add(self, genres=(), exclude_genres=(), moods=(), exclude_moods=(), decades=(),
            max_runtime=None, refused=()) -> None:
        """Record one message's content (exclusions accumulate; a new mood replaces)."""
        self.exclude_genres |= set(exclude_genres)
        self.genres = (self.genres | set(genres)) - self.exclude_genres
        self.exclude_moods |= set(exclude_moods)
        if moods:
            self.moods = set(moods)
        self.moods -= self.exclude_moods
        self.decades |= set(decades)
        if max_runtime is not None:
            self.max_runtime = int(max_runtime)
        self.refused += [int(i) for i in refused if int(i) not in self.refused]

    def check(self, recs: pd.DataFrame, relaxed=()) -> dict:
        """Count ``recs`` rows (item_id, genres, year, mood, runtime) that break an exclusion
        (``violations``) or miss a wish the turn did not say it ``relaxed`` (``misses``)."""
        if not len(recs):
            return {"violations": 0, "misses": 0}
        genres = recs["genres"].map(set)
        bad = (genres.map(lambda g: bool(g & self.exclude_genres))
               | recs["mood"].isin(self.exclude_moods)
               | recs["item_id"].astype(int).isin(self.refused))
        decade = recs["year"].map(lambda y: None if pd.isna(y) else f"{int(y) // 10 * 10}s")
        miss = pd.Series(False, index=recs.index)
        for name, wanted, fits in (
                ("genre", self.genres, genres.map(lambda g: bool(g & self.genres))),
                ("era", self.decades, decade.isin(self.decades)),
                ("mood", self.moods, recs["mood"].isin(self.moods)),
                ("runtime", self.max_runtime, recs["runtime"] <= (self.max_runtime or 0))):
            if wanted and name not in relaxed:
                miss |= ~fits
        return {"violations": int(bad.sum()), "misses": int(miss.sum())}


# ------------------------------------------------------------------------- the system
@dataclass
class Turn:
    """One exchange: the user's ``text``, the parsed ``update``, the ``recommendations``
    (item_id, title, year, genres, mood, runtime), the ``question`` asked back (attribute and
    options) and the system's ``reply`` text; ``relaxed`` lists wishes dropped to fill the
    list; ``reply_ok`` is False when the LLM call failed (the turn then uses no update);
    ``dropped`` lists the ``(field, value)`` pairs of the update that were thrown away: values
    outside the catalog's vocabulary, titles that do not ground, non-numeric runtimes."""

    text: str
    update: dict
    recommendations: pd.DataFrame
    question: dict | None
    reply: str
    relaxed: list
    reply_ok: bool = True
    dropped: list = field(default_factory=list)


class Conversation:
    """A multi-turn conversational recommender over a catalog (see the module docstring).

    Parameters
    ----------
    llm : perso_kit.llm.LLM
        Reads each message into a dialogue update (the offline stand-in works: not an LLM).
    dataset : Dataset
        The catalog (items with genres and year; mood, runtime and themes where it has them, as
        the demo world does) and the interactions a user's history comes from. A catalog
        without moods (MovieLens) is never asked about mood; one without runtimes ignores a
        maximum runtime and says so in :attr:`Turn.relaxed`.
    recommender : Recommender, optional
        A fitted recommender that scores items for ``user``; popularity when None or when the
        user is unknown.
    user : optional
        The user id (their seen items are never recommended).
    k : int
        Recommendations per turn.
    ask : sequence of str
        Attributes the system asks about, in order (subset of :data:`QUESTION_ORDER`).
    n_options : int
        Values offered in a question.
    like_weight : float
        How much items resembling the titles the user liked are lifted: the score becomes the
        recommender's percentile rank among eligible items plus ``like_weight`` times the best
        Jaccard overlap of genres, mood and themes with a liked item.
    """

    def __init__(self, llm, dataset: Dataset, recommender=None, user=None, k: int = 5,
                 ask=QUESTION_ORDER, n_options: int = 4, like_weight: float = 0.5):
        self.llm, self.dataset, self.recommender, self.user = llm, dataset, recommender, user
        self.k, self.ask, self.n_options = int(k), tuple(ask), int(n_options)
        self.like_weight = float(like_weight)
        items = with_optional_columns(dataset.items)
        self._items = items.assign(decade=items["year"].map(
            lambda y: None if pd.isna(y) else f"{int(y) // 10 * 10}s")).reset_index(drop=True)
        self.has_runtime = bool(self._items["runtime"].notna().any())
        self._index = grounding.TitleIndex(items)
        self.vocab = {"genres": sorted({g for gs in items["genres"] for g in gs}),
                      "moods": sorted(set(items["mood"].dropna())),
                      "decades": sorted(set(self._items["decade"].dropna()))}
        self._base = self._base_scores()
        self.reset()

    def reset(self) -> None:
        """Forget the dialogue (state, turns, prompts sent)."""
        self.state = DialogueState()
        self.turns: list[Turn] = []
        self.prompts: list[list[dict]] = []

    # ---------------------------------------------------------------- scoring
    def _base_scores(self) -> np.ndarray:
        ds = self.dataset
        if self.recommender is not None and self.user is not None:
            train = getattr(self.recommender, "train_", None)
            if train is not None and self.user in set(train.user_ids):
                s = self.recommender.score([self.user], ds.item_ids)[0].astype(float)
                return np.where(np.isfinite(s), s, -1e9)
        pop = ds.item_popularity().reindex(ds.item_ids).fillna(0).to_numpy(float)
        return np.log1p(pop)

    def _seen(self) -> set:
        if self.user is None:
            return set()
        inter = self.dataset.interactions
        return set(inter.loc[inter["user_id"] == self.user, "item_id"])

    def eligible(self) -> tuple[pd.DataFrame, list]:
        """Items the state allows (exclusions hard; wishes relaxed last-first if nothing is
        left), with a ``score`` column; and the list of relaxed wishes."""
        it, st = self._items, self.state
        known = set(st.shown) | set(st.liked) | self._seen()  # never offer what they know
        hard = ~violations(st, it) & ~it["item_id"].isin(known)
        wishes = [("genre", it["genres"].map(lambda g: bool(set(g) & st.genres))
                   if st.genres else None),
                  ("era", it["decade"].isin(st.decades) if st.decades else None),
                  ("mood", it["mood"].isin(st.moods) if st.moods else None),
                  ("runtime", it["runtime"] <= st.max_runtime
                   if st.max_runtime and self.has_runtime else None)]
        wishes = [(n, m) for n, m in wishes if m is not None]
        relaxed = ["runtime"] if st.max_runtime and not self.has_runtime else []
        while True:
            mask = hard.copy()
            for _, m in wishes:
                mask &= m
            if mask.sum() >= self.k or not wishes:
                break
            relaxed.append(wishes.pop()[0])
        out = it[mask.to_numpy()].copy()
        out["score"] = self._base[mask.to_numpy()]
        if st.liked and len(out):
            out["score"] = out["score"].rank(pct=True) + self.like_weight * self._likeness(out)
        return out.sort_values("score", ascending=False, kind="stable"), relaxed

    @staticmethod
    def _attrs(row) -> set:
        mood = {row["mood"]} if isinstance(row["mood"], str) else set()
        return set(row["genres"]) | set(row["themes"]) | mood

    def _likeness(self, pool: pd.DataFrame) -> np.ndarray:
        """Best Jaccard overlap of each pool item's attributes with a liked item's."""
        by_id = self._items.set_index("item_id")
        liked = [self._attrs(by_id.loc[i]) for i in self.state.liked]
        return np.array([max(len(a & b) / len(a | b) for b in liked)
                         for a in (self._attrs(r) for _, r in pool.iterrows())])

    # ---------------------------------------------------------------- one turn
    @property
    def n_dropped(self) -> int:
        """Dialogue values dropped over all turns (see :attr:`Turn.dropped`)."""
        return sum(len(t.dropped) for t in self.turns)

    def _understand(self, text: str) -> tuple[dict, bool, list]:
        system = SYSTEM_PROMPT.format(genres=", ".join(self.vocab["genres"]),
                                      moods=", ".join(self.vocab["moods"]),
                                      decades=", ".join(self.vocab["decades"]),
                                      state=json.dumps(self.state.summary()))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        self.prompts.append(messages)
        reply = self.llm.chat(messages, json_schema=DIALOGUE_UPDATE, max_tokens=UPDATE_MAX_TOKENS)
        if not reply.ok or not isinstance(reply.data, dict):
            return ({k: [] for k in DIALOGUE_UPDATE["required"]} | {"max_runtime": None},
                    False, [])
        data, dropped = dict(reply.data), []
        for key, allowed in (("genres", "genres"), ("exclude_genres", "genres"),
                             ("moods", "moods"), ("exclude_moods", "moods"),
                             ("decades", "decades")):  # keep catalog values only, count the rest
            lower = {v.lower(): v for v in self.vocab[allowed]}
            values = data.get(key) or []
            values = values if isinstance(values, list) else [values]
            data[key] = [lower[v.lower()] for v in values
                         if isinstance(v, str) and v.lower() in lower]
            dropped += [(key, v) for v in values
                        if not (isinstance(v, str) and v.lower() in lower)]
        runtime = data.get("max_runtime")
        if runtime is not None and not (isinstance(runtime, (int, float))
                                        and not isinstance(runtime, bool) and runtime > 0):
            dropped.append(("max_runtime", runtime))
            data["max_runtime"] = None
        return data, True, dropped

    def _question(self, pool: pd.DataFrame) -> dict | None:
        for attr in self.ask:
            if self.state.stated(attr) or attr in self.state.asked:
                continue
            col = {"genre": pool["genres"].explode(), "era": pool["decade"],
                   "mood": pool["mood"]}[attr]
            options = col.value_counts().index[: self.n_options].tolist()
            if len(options) >= 2:
                self.state.asked.append(attr)
                return {"attribute": attr, "options": options}
        return None

    def send(self, text: str) -> Turn:
        """Take one user message; return the :class:`Turn` (picks, question, reply text)."""
        update, ok, dropped = self._understand(text)
        keys = [(key, t) for key in ("liked_titles", "disliked_titles", "exclude_titles")
                for t in update.get(key) or []]
        titles = [t for _, t in keys]
        ids = {}
        if titles:
            g = grounding.ground_titles([str(t) for t in titles], self._index)
            ids = {t: (None if h else int(i)) for t, i, h in
                   zip(titles, g["item_id"], g["hallucinated"])}
            dropped += [(key, t) for key, t in keys if ids[t] is None]
        self.state.apply(update, ids)
        pool, relaxed = self.eligible()
        recs = pool.head(self.k)[["item_id", "title", "year", "genres", "mood", "runtime"]]
        recs = recs.reset_index(drop=True)
        self.state.shown.extend(recs["item_id"].tolist())
        question = self._question(pool.iloc[self.k:])
        lines = [f"{i + 1}. {r.title} — {', '.join(r.genres)}"
                 + (f", {r.mood}" if isinstance(r.mood, str) else "")
                 + (f", {r.runtime} min" if pd.notna(r.runtime) else "")
                 for i, r in enumerate(recs.itertuples())]
        ask = ""
        if question:
            opts = " or ".join(str(o) for o in question["options"])
            ask = {"genre": f"Which genre are you in the mood for: {opts}?",
                   "era": f"From which decade: {opts}?",
                   "mood": f"Which mood: {opts}?"}[question["attribute"]]
        note = f" (I had to relax: {', '.join(relaxed)})" if relaxed else ""
        reply = "Here are some picks" + note + ":\n" + "\n".join(lines) + (
            "\n" + ask if ask else "")
        turn = Turn(text, update, recs, question, reply, relaxed, ok, dropped)
        self.turns.append(turn)
        return turn


def with_optional_columns(items: pd.DataFrame) -> pd.DataFrame:
    """``items`` with the columns a conversation reads that a catalog may lack: ``mood``
    (None), ``runtime`` (NaN) and ``themes`` (``()``). The demo world has all three; MovieLens
    has none of them. Existing columns are kept as they are.

    >>> row = with_optional_columns(pd.DataFrame({"item_id": [1]})).iloc[0]
    >>> row["mood"], bool(pd.isna(row["runtime"])), row["themes"]
    (None, True, ())
    """
    missing = {"mood": [None] * len(items), "runtime": [np.nan] * len(items),
               "themes": [()] * len(items)}
    add = {c: v for c, v in missing.items() if c not in items.columns}
    if not add:
        return items
    return items.assign(**{c: pd.Series(v, index=items.index, dtype=object if c != "runtime"
                                        else float) for c, v in add.items()})


# ------------------------------------------------------------------------- simulated users
class SimulatedPartner:
    """A simulated user in a dialogue, answering from its true preferences.

    Parameters
    ----------
    users : perso_kit.simulate.SimulatedUsers
        The door to the demo world's ground truth.
    user_id :
        Who this partner is.
    target : list of item ids
        The hidden target (items the user truly likes and has not seen). Used only to decide
        success; never said.

    Attributes
    ----------
    request : StatedRequest
        Everything this partner has actually said (wished, excluded, refused): the reference
        the conversation's recommendations are checked against.
    """

    def __init__(self, users, user_id, target):
        self.users, self.user_id, self.target = users, user_id, set(int(t) for t in target)
        self.request = StatedRequest()

    def opening(self) -> str:
        return "Can you recommend a movie for tonight?"

    def found(self, turn: Turn) -> bool:
        """Whether the turn's list holds a target item."""
        return bool(self.target & set(turn.recommendations["item_id"].astype(int)))

    def answer(self, turn: Turn) -> str:
        """Answer the question asked back (from true preferences) and refuse one shown item
        the user would not like, by title."""
        parts = []
        q = turn.question
        if q:
            attr, options = q["attribute"], q["options"]
            best = self.users.prefers_value(self.user_id, attr, options)
            if attr == "genre":
                worst = self.users.attribute_preferences(self.user_id, "genre",
                                                         options).index[-1]
                parts.append(f"I'd like a {best.lower()}, and no {worst.lower()}")
                self.request.add(genres=[best], exclude_genres=[worst])
            elif attr == "era":
                parts.append(f"Something from the {best}")
                self.request.add(decades=[best])
            else:
                parts.append(f"Something {best}")
                self.request.add(moods=[best])
        for item, title in zip(turn.recommendations["item_id"], turn.recommendations["title"]):
            if not self.users.likes(self.user_id, item):
                parts.append(f"not {title}")
                self.request.add(refused=[item])
                break
        return ". ".join(parts) + "." if parts else "Something else, please."


PARAPHRASE_PROMPT = ("You play a person talking to a movie recommender. Say what the user "
                     "message says in your own words, in one or two short sentences. Keep every "
                     "genre, decade, mood and title exactly as written.")


def _stand_in_paraphrase(req):
    """Stand-in heuristic for the simulated user's voice: repeats the message (not an LLM)."""
    if req.messages and req.messages[0].get("content") == PARAPHRASE_PROMPT:
        return "Well... " + req.ctx.query
    return None


register_handler("simulated_user_voice", _stand_in_paraphrase, kind="text")


class LLMPartner(SimulatedPartner):
    """A :class:`SimulatedPartner` whose answers an LLM rephrases in its own words. What is
    said still comes from the true preferences (the LLM sees only the rule-based answer,
    never the target); the recommender must now read freer phrasing. The answer falls back to
    the rule-based one when the call fails."""

    def __init__(self, llm, users, user_id, target):
        super().__init__(users, user_id, target)
        self.llm = llm

    def answer(self, turn: Turn) -> str:
        facts = super().answer(turn)
        reply = self.llm.chat([{"role": "system", "content": PARAPHRASE_PROMPT},
                               {"role": "user", "content": facts}],
                              max_tokens=PARAPHRASE_MAX_TOKENS)
        return reply.text.strip() if reply.ok and reply.text.strip() else facts


def evaluate_conversations(llm, users, recommender, user_ids, k: int = 5, max_turns: int = 4,
                           target_size: int = 5, progress: bool = True,
                           user_llm=None) -> pd.DataFrame:
    """Run one dialogue per user and the non-conversational baselines.

    Protocol: each user's hidden target is its ``target_size`` truly best items it has not
    seen. The conversation shows ``k`` items per turn for up to ``max_turns`` turns and stops at
    the first list holding a target item. Baselines recommend once from the history alone:
    ``k`` items, and ``k * max_turns`` items (the same number of items shown). With
    ``user_llm``, an :class:`LLMPartner` voices the simulated users.

    Returns
    -------
    DataFrame, one row per user: ``user_id, turns`` (turns to success, NaN if none),
    ``success, baseline_success, baseline_same_budget_success`` (bools),
    ``baseline_first_hit`` (rank of the first target item in the recommend-once list of
    ``k * max_turns``, NaN if none), ``items_shown, llm_failures``; checked against what the
    simulated user actually said (:class:`StatedRequest`, not the parsed state):
    ``exclusion_violations`` (recommendations breaking a stated exclusion or refusal) and
    ``constraint_misses`` (missing a stated wish the turn did not say it relaxed); and
    ``dropped_values`` (values of the model's updates thrown away, :attr:`Turn.dropped`).
    """
    from tqdm.auto import tqdm

    ds = users.dataset
    rows = []
    for u in tqdm(list(user_ids), desc="dialogues", disable=not progress):
        target = users.top_items(u, k=target_size, exclude=ds)
        partner = (SimulatedPartner(users, u, target) if user_llm is None
                   else LLMPartner(user_llm, users, u, target))
        conv = Conversation(llm, ds, recommender, user=u, k=k)
        text, turns_to_success, failures = partner.opening(), np.nan, 0
        checked = {"violations": 0, "misses": 0}
        for t in range(1, max_turns + 1):
            turn = conv.send(text)
            failures += not turn.reply_ok
            for key, n in partner.request.check(turn.recommendations, turn.relaxed).items():
                checked[key] += n
            if partner.found(turn):
                turns_to_success = t
                break
            text = partner.answer(turn)
        once = recommender.recommend([u], k=k * max_turns)["item_id"].astype(int).tolist()
        hits = [r + 1 for r, i in enumerate(once) if i in partner.target]
        rows.append({"user_id": u, "turns": turns_to_success,
                     "success": bool(np.isfinite(turns_to_success)),
                     "baseline_success": bool(partner.target & set(once[:k])),
                     "baseline_same_budget_success": bool(partner.target & set(once)),
                     "baseline_first_hit": hits[0] if hits else np.nan,
                     "items_shown": len(conv.state.shown), "llm_failures": failures,
                     "exclusion_violations": checked["violations"],
                     "constraint_misses": checked["misses"], "dropped_values": conv.n_dropped})
    return pd.DataFrame(rows)


def success_curve(results: pd.DataFrame, max_turns: int, k: int) -> pd.DataFrame:
    """Success@k within N turns for N = 1..max_turns (share of dialogues), beside the
    recommend-once baselines: ``once_k`` (k items, from the history alone) and
    ``once_same_items`` (N * k items at once: as many items as N turns show)."""
    n = len(results)
    turns = np.arange(1, max_turns + 1)
    first = results["baseline_first_hit"].to_numpy(float)
    return pd.DataFrame({"turns": turns,
                         "conversation": [float((results["turns"] <= t).sum() / n)
                                          for t in turns],
                         "once_k": float(results["baseline_success"].mean()),
                         "once_same_items": [float((first <= t * k).sum() / n) for t in turns]})
