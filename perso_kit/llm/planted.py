"""Planted-behaviour models: scripted fake LLMs with one *known* behaviour each.

An instrument (the position-bias probe, the popularity comparison, the count of invented ids or
titles) counts only when it catches a failure we *know* is there and stays quiet when it is
not. These models plant exactly one behaviour each, so a probe can be calibrated before it is
pointed at a real model:

======================  =========================================================================
kind                    what it does
======================  =========================================================================
``"follows-order"``     ranks the candidates in the order they were shown: pure position bias
``"promotes-popular"``  ranks by a popularity table given at construction, most popular first
``"invents-items"``     the control's order, but a share ``rate`` of the ids (or titles) it
                        returns name items that do not exist
``"control"``           a seeded random order of each candidate set: independent of the position
                        shown, of popularity and of relevance; every id it returns is real
======================  =========================================================================

**They are not language models, and not the offline stand-in.** The stand-in answers from word
overlap with the prompt, to teach the plumbing; a planted model answers from a script, to
test an instrument. ``"promotes-popular"`` is a **planted oracle**: the ranking prompt holds
titles and genres only, with no popularity signal, so this model is handed the popularity table
(``split.train.item_popularity()``) when it is built. It shows that the popularity comparison
*can* see a ranker that prefers popular items; it says nothing about whether an LLM does.

How they answer: through the same :class:`~perso_kit.llm.LLM` client as every backend.
:func:`planted_llm` returns ``get_llm("compatible", ...)`` whose ``openai`` SDK client has the
planted model as its HTTP transport (an ``httpx.MockTransport``, like the stand-in's), so every
request goes through the kit's real chain -- request building, the SDK, JSON validation,
usage, the call log -- and only the answer is scripted. Nothing leaves the process.

>>> from perso_kit.llm.planted import planted_llm
>>> llm = planted_llm("follows-order")
>>> llm.model
'planted:follows-order (scripted, not an LLM)'
>>> r = llm.chat("Candidates:\\n[7] Alien (1979) — Horror\\n[3] Heat (1995) — Crime\\n",
...              json_schema={"title": "ranking", "type": "object",
...                           "properties": {"ranking": {"type": "array",
...                                                      "items": {"type": "integer"}}}})
>>> r.data
{'ranking': [7, 3]}

What they understand (anything else gets HTTP 400, which the client reports as a failed call):

* a JSON schema with a ``ranking`` array (the ranker's listwise prompt, see
  :mod:`perso_kit.roles.ranker`): candidates are the prompt lines ``[id] Title — genres``;
  the answer is ``{"ranking": [ids]}``;
* a JSON schema with a ``score`` (the pointwise prompt, one candidate): ``{"score": 0-10}``
  (``"follows-order"`` gives every candidate 5, so ties keep the order shown);
* free text with candidate lines: a numbered list of titles, ``n`` of them when the prompt
  says "N movies/titles/..." (else 5), in the model's order.

**Planted judges.** :func:`planted_judge` builds the same kind of client for the judge prompts
of :mod:`perso_kit.roles.judge` (:data:`JUDGE_KINDS`): one always prefers the explanation shown
first, one the longer text, one the texts it is told it wrote (a planted oracle), and a clean
control that judges by the statements the prompt's own lines contradict.

**Planted writers.** :func:`planted_writer` answers the digest prompts of
:mod:`perso_kit.roles.content` (:data:`WRITER_KINDS`): a clean control that copies the prompt's
facts, one that invents a year and a film, one that writes the same text for everyone, one that
names a held-out film it is told (a planted oracle), and one that answers prose instead of JSON.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass

import httpx

from .offline import InProcessServer
from .pricing import estimate_prompt_tokens, estimate_tokens

KINDS = ("follows-order", "promotes-popular", "invents-items", "control")

_CANDIDATE_LINE = re.compile(r"^\s*\[([^\]\s]+)\]\s*(.+?)\s*$", re.M)
_GENRES = re.compile(r"\s+[—–]\s+.*$")
_HOW_MANY = re.compile(r"\b(\d{1,2})\s+(?:\w+\s+)?(?:movies|films|titles|items|"
                       r"recommendations|suggestions)\b", re.I)
# syllables of invented titles: no English words, so no catalog title is near them
_SYLLABLES = ("zor", "vex", "quil", "dra", "mon", "thu", "kae", "bri", "lum", "osk", "pra",
              "yth", "gal", "nir", "fen", "ux")


def _hash(*parts) -> int:
    """A stable 64-bit integer of ``parts`` (the same in every process and on every run)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class Candidate:
    """One candidate line of a prompt: its id (an int when it is digits), title, shown
    position (0 = first)."""

    id: int | str
    title: str
    position: int


def parse_candidates(text: str) -> list[Candidate]:
    """The ``[id] Title — genres`` lines of a prompt, in the order shown.

    >>> parse_candidates("Candidates:\\n[12] Heat (1995) — Crime\\n[x7] Up (2009)")
    [Candidate(id=12, title='Heat (1995)', position=0), Candidate(id='x7', title='Up (2009)', \
position=1)]
    """
    out = []
    for m in _CANDIDATE_LINE.finditer(text or ""):
        raw = m.group(1)
        out.append(Candidate(int(raw) if raw.isdigit() else raw,
                             _GENRES.sub("", m.group(2)).strip(), len(out)))
    return out


def user_prompt(body: dict) -> str:
    """The text of a chat request's user messages, one per line (what a planted model reads)."""
    return "\n".join(m.get("content") or "" for m in body.get("messages") or []
                     if m.get("role") == "user" and isinstance(m.get("content"), str))


def schema_name(body: dict) -> str:
    """The name of the JSON schema a chat request asks for ("" when it asks for none)."""
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name") or ""


def invented_title(*seed) -> str:
    """A title-shaped name that exists in no catalog, e.g. ``"The Quilmon Zordra (1974)"``
    (made of nonsense syllables, so title matching cannot mistake it for a real film)."""
    h = _hash("title", *seed)
    words = []
    for w in range(2):
        n = 2 + (h >> (3 * w)) % 2
        words.append("".join(_SYLLABLES[(h >> (8 * w + 4 * j + 6)) % len(_SYLLABLES)]
                             for j in range(n)).capitalize())
    return f"The {' '.join(words)} ({1950 + h % 50})"


class PlantedModel(InProcessServer):
    """Base class: a scripted model answering the kit's ranking, scoring and list prompts.

    A subclass defines :meth:`key` (a sort key: smaller first) or :meth:`order` (the
    candidates, best first), and may override :meth:`score` and :meth:`answer_ids` /
    :meth:`answer_titles`. The model is also an
    ``httpx`` transport handler (``model(request)``), which :meth:`llm` plugs into the kit's
    client; :meth:`handle` answers one request body (``(status, json)``).

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`; also the model name ``planted:<kind> (scripted, not an LLM)``.
    requests : int
        Requests answered so far.
    """

    kind = "base"
    description = ""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.requests = 0
        self._lock = threading.Lock()      # the client may send requests from several threads

    @property
    def model_name(self) -> str:
        return f"planted:{self.kind} (scripted, not an LLM)"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    # ----------------------------------------------------------------- the planted behaviour
    def key(self, c: Candidate) -> float:
        """Sort key of a candidate (smaller first); the subclass's behaviour."""
        raise NotImplementedError

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates, best first (Python's sort is stable: equal keys keep shown order)."""
        return sorted(candidates, key=self.key)

    def score(self, c: Candidate) -> int:
        """0-10 relevance of one candidate shown alone (pointwise prompts)."""
        return int(_hash("score", self.seed, c.id) % 11)

    def answer_ids(self, ranked: list[Candidate], request_id: int) -> list:
        """The ids the answer returns, given the model's order."""
        return [c.id for c in ranked]

    def answer_titles(self, ranked: list[Candidate], n: int, request_id: int) -> list[str]:
        """The titles a free-text answer lists."""
        return [c.title for c in ranked[:n]]

    # ----------------------------------------------------------------- the HTTP side
    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        """``(status, json)`` for one request to ``path`` (OpenAI response format)."""
        with self._lock:
            self.requests += 1
        if path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                     "created": 0, "owned_by": "perso-kit"}]}
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"a planted model has no endpoint {path}"}}
        prompt = user_prompt(body)
        cands = parse_candidates(prompt)
        if not cands:
            return 400, {"error": {"message": "a planted model answers only prompts with "
                                              "candidate lines '[id] Title — genres'",
                                   "type": "invalid_request_error"}}
        rid = _hash("request", self.seed, json.dumps(body, sort_keys=True, default=str))
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        props = schema.get("properties") or {}
        if "ranking" in props:
            text = json.dumps({"ranking": self.answer_ids(self.order(cands), rid)})
        elif "score" in props:
            text = json.dumps({"score": self.score(cands[0])})
        elif fmt.get("type") in ("json_schema", "json_object"):
            return 400, {"error": {"message": "a planted model answers only 'ranking' and "
                                              "'score' schemas", "type": "invalid_request_error"}}
        else:
            m = _HOW_MANY.search(prompt)
            n = max(1, min(int(m.group(1)) if m else 5, 20))
            titles = self.answer_titles(self.order(cands), n, rid)
            text = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(titles))
        return 200, self.completion(text, rid, body)

    def count_chat(self, body: dict) -> tuple[str, str]:
        """Count one chat request; return its user prompt and the name of the JSON schema it
        asks for (for subclasses that answer other prompts than the ranking one)."""
        with self._lock:
            self.requests += 1
        return user_prompt(body), schema_name(body)

    def completion(self, text: str, rid: int, body: dict) -> dict:
        """The chat-completion body that answers request ``body`` with ``text``, with token
        counts estimated the way the kit estimates them (a scripted model has no tokenizer)."""
        prompt_tokens = estimate_prompt_tokens(body.get("messages") or [], body.get("tools"),
                                               body.get("response_format") or None)
        completion_tokens = estimate_tokens(text)
        return {
            "id": f"planted-{rid:016x}", "object": "chat.completion", "created": 0,
            "model": self.model_name,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}

    def marker(self) -> dict:
        return {"x-perso-kit-planted": self.kind}

    def llm(self, **kw):
        """An :class:`~perso_kit.llm.LLM` answered by this model (see the module docstring).

        ``kw`` are further :func:`~perso_kit.llm.get_llm` settings (by default no cache, no
        retries: a planted model never fails by itself)."""
        import openai

        from . import get_llm

        base_url = f"http://planted-{self.kind}.local/v1"   # a .local host: priced as free
        sdk = openai.OpenAI(api_key="planted-no-key", base_url=base_url, max_retries=0,
                            http_client=httpx.Client(transport=httpx.MockTransport(self)))
        kw = {"cache_path": "off", "max_retries": 0, **kw}
        return get_llm("compatible", model=self.model_name, base_url=base_url,
                       api_key="planted-no-key", client=sdk, **kw)


class FollowsOrder(PlantedModel):
    """Ranks the candidates exactly in the order shown (the planted position bias)."""

    kind = "follows-order"
    description = "ranks candidates in the order shown"

    def key(self, c: Candidate) -> float:
        return c.position

    def score(self, c: Candidate) -> int:
        return 5                       # no opinion: the ranker's ties keep the shown order


class PromotesPopular(PlantedModel):
    """Ranks by ``popularity[item_id]``, most popular first; equal counts in a seeded order
    (never by position). A **planted oracle** for calibration: the prompt carries no
    popularity signal, so the table is given at construction (see the module docstring).

    Parameters
    ----------
    popularity : mapping item_id -> count (e.g. ``split.train.item_popularity()``)
    """

    kind = "promotes-popular"
    description = "ranks by a popularity table it was given (a planted oracle)"

    def __init__(self, popularity, seed: int = 0):
        super().__init__(seed)
        self.popularity = {k: float(v) for k, v in dict(popularity).items()}
        self._max = max(self.popularity.values(), default=1.0) or 1.0

    def _pop(self, c: Candidate) -> float:
        return self.popularity.get(c.id, self.popularity.get(str(c.id), 0.0))

    def key(self, c: Candidate):
        return (-self._pop(c), _hash("tie", self.seed, c.id))

    def score(self, c: Candidate) -> int:
        return int(round(10 * math.log1p(self._pop(c)) / math.log1p(self._max)))


class Control(PlantedModel):
    """A seeded random order of each candidate *set*: the same for every presentation of the
    same candidates (so it cannot depend on the position shown), drawn afresh for another set
    (so, over users, it is independent of popularity and of relevance; one global order of
    all items would not be: the same popular items recur in many users' lists, and one draw
    that happens to favour them would look like a popularity bias). Every id and title it
    returns is a real candidate. The clean control of every probe."""

    kind = "control"
    description = "a seeded random order of each candidate set (the clean control)"

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        draw = _hash("set", self.seed, *sorted(str(c.id) for c in candidates))
        return sorted(candidates, key=lambda c: _hash("order", draw, c.id))


class InventsItems(Control):
    """The control's order, but in every answer ``round(rate * n)`` of the ``n`` returned ids
    (or listed titles) are replaced by items that do not exist: ids no catalog uses
    (``9_000_000`` and up) and nonsense titles (:func:`invented_title`). Which places are
    replaced is seeded by the request. With ``rate=0.3`` and 10 candidates, exactly 3 of the 10
    returned ids are invented, so the share of returned ids outside the list is 0.3."""

    kind = "invents-items"
    description = "names items that do not exist"

    def __init__(self, rate: float = 0.3, seed: int = 0):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        super().__init__(seed)
        self.rate = rate
        self.description = f"names items that do not exist ({rate:.0%} of what it returns)"

    def _replaced(self, n: int, request_id: int) -> set[int]:
        m = int(round(self.rate * n))
        places = sorted(range(n), key=lambda i: _hash("place", request_id, i))
        return set(places[:m])

    def answer_ids(self, ranked: list[Candidate], request_id: int) -> list:
        gone = self._replaced(len(ranked), request_id)
        return [9_000_000 + (_hash("id", request_id, i) % 1_000_000) if i in gone else c.id
                for i, c in enumerate(ranked)]

    def answer_titles(self, ranked: list[Candidate], n: int, request_id: int) -> list[str]:
        titles = [c.title for c in ranked[:n]]
        gone = self._replaced(len(titles), request_id)
        return [invented_title(request_id, i) if i in gone else t for i, t in enumerate(titles)]


def planted_model(kind: str, popularity=None, rate: float = 0.3, seed: int = 0) -> PlantedModel:
    """The planted model of ``kind`` (one of :data:`KINDS`); ``popularity`` is required for
    ``"promotes-popular"``, ``rate`` is the invented share of ``"invents-items"``."""
    if kind == "follows-order":
        return FollowsOrder(seed)
    if kind == "promotes-popular":
        if popularity is None:
            raise ValueError("'promotes-popular' is a planted oracle: pass popularity= (e.g. "
                             "split.train.item_popularity()); the prompt has no popularity")
        return PromotesPopular(popularity, seed)
    if kind == "invents-items":
        return InventsItems(rate, seed)
    if kind == "control":
        return Control(seed)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def planted_llm(kind: str, popularity=None, rate: float = 0.3, seed: int = 0, **kw):
    """An :class:`~perso_kit.llm.LLM` client answered by a planted model (see the module
    docstring); ``kw`` go to :func:`~perso_kit.llm.get_llm`. The model object is
    ``llm.planted``.

    >>> llm = planted_llm("control")
    >>> llm.model, type(llm.planted).__name__
    ('planted:control (scripted, not an LLM)', 'Control')
    """
    model = planted_model(kind, popularity, rate, seed)
    llm = model.llm(**kw)
    llm.planted = model
    return llm


def planted_llms(popularity, rate: float = 0.3, seed: int = 0, **kw) -> dict:
    """All four planted clients, ``{kind: LLM}``, for a calibration run."""
    return {k: planted_llm(k, popularity=popularity, rate=rate, seed=seed, **kw)
            for k in KINDS}


# ------------------------------------------------------------------------------ planted judges
#: the planted judges of :mod:`perso_kit.roles.judge` (see :func:`planted_judge`)
JUDGE_KINDS = ("judge-prefers-first", "judge-prefers-longer", "judge-prefers-own",
               "judge-control")


class PlantedJudge(PlantedModel):
    """Base class of the planted judges: scripted answers to the judge prompts of
    :mod:`perso_kit.roles.judge` (a ``judge_rating`` or ``judge_pairwise`` JSON schema), read
    from the prompt alone (:func:`~perso_kit.roles.judge.parse_judge_prompt`). Anything else
    gets HTTP 400. A subclass defines :meth:`prefer` (``"A"``, ``"B"`` or ``"tie"``) and may
    override :meth:`rate`.

    The base behaviour is the clean one: fewer statements contradicted by the prompt's own
    lines wins (:func:`~perso_kit.roles.judge.false_facts`), equal counts are a tie; so it
    depends on neither the order shown, nor the length, nor who wrote a text.
    """

    kind = "judge-control"
    description = "judges by the facts the prompt can check (the clean control)"

    def _facts(self, text: str, parsed: dict) -> int:
        from ..roles.judge import false_facts
        return false_facts(text, parsed["history"], parsed["item"])

    def prefer(self, a: str, b: str, parsed: dict) -> str:
        """The verdict on explanation ``a`` (shown first) against ``b``."""
        fa, fb = self._facts(a, parsed), self._facts(b, parsed)
        return "tie" if fa == fb else "A" if fa < fb else "B"

    def rate(self, text: str, parsed: dict) -> dict:
        """The 1-5 scores of one explanation."""
        g = max(1, 5 - 2 * self._facts(text, parsed))
        return {"grounded": g, "specific": 3, "readable": 3}

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        if not path.endswith("/chat/completions"):
            return super().handle(path, body)
        from ..roles.judge import parse_judge_prompt
        prompt, name = self.count_chat(body)
        parsed = parse_judge_prompt(prompt)
        texts = parsed["texts"]
        if name == "judge_pairwise" and "A" in texts and "B" in texts:
            answer = {"better": self.prefer(texts["A"], texts["B"], parsed)}
        elif name == "judge_rating" and "to judge" in texts:
            answer = self.rate(texts["to judge"], parsed)
        else:
            return 400, {"error": {"message": "a planted judge answers only the judge prompts "
                                              "of perso_kit.roles.judge",
                                   "type": "invalid_request_error"}}
        text = json.dumps(answer)
        rid = _hash("request", self.seed, json.dumps(body, sort_keys=True, default=str))
        return 200, self.completion(text, rid, body)


class JudgePrefersFirst(PlantedJudge):
    """Always answers "A": the planted position bias of a judge (ratings: all 3s)."""

    kind = "judge-prefers-first"
    description = "always prefers the explanation shown first"

    def prefer(self, a: str, b: str, parsed: dict) -> str:
        return "A"

    def rate(self, text: str, parsed: dict) -> dict:
        return {"grounded": 3, "specific": 3, "readable": 3}


class JudgePrefersLonger(PlantedJudge):
    """Prefers the explanation with more words (equal counts: a tie); rates by length
    (1 + words // 6, at most 5): the planted verbosity bias."""

    kind = "judge-prefers-longer"
    description = "prefers the longer explanation"

    def prefer(self, a: str, b: str, parsed: dict) -> str:
        na, nb = len(a.split()), len(b.split())
        return "tie" if na == nb else "A" if na > nb else "B"

    def rate(self, text: str, parsed: dict) -> dict:
        s = min(5, 1 + len(text.split()) // 6)
        return {"grounded": s, "specific": s, "readable": s}


class JudgePrefersOwn(PlantedJudge):
    """Prefers any explanation it wrote (a text starting with one of ``own_texts``, so a padded
    copy is still its own); between two of its own or two others', the control's verdict. A
    **planted oracle**: a prompt does not say who wrote a text, so the model is handed its own
    texts when it is built (e.g. the LLM rows of an explanation table). It shows the
    self-preference probe *can* see a judge that favours its own output; it says nothing about
    whether an LLM does.

    Parameters
    ----------
    own_texts : the explanations "it" wrote
    """

    kind = "judge-prefers-own"
    description = "prefers the explanations it was told it wrote (a planted oracle)"

    def __init__(self, own_texts, seed: int = 0):
        super().__init__(seed)
        self.own = [str(t).strip() for t in own_texts if str(t).strip()]

    def _is_own(self, text: str) -> bool:
        t = text.strip()
        return any(t.startswith(o) for o in self.own)

    def prefer(self, a: str, b: str, parsed: dict) -> str:
        oa, ob = self._is_own(a), self._is_own(b)
        if oa != ob:
            return "A" if oa else "B"
        return super().prefer(a, b, parsed)

    def rate(self, text: str, parsed: dict) -> dict:
        return ({"grounded": 5, "specific": 5, "readable": 5} if self._is_own(text)
                else super().rate(text, parsed))


def planted_judge(kind: str, own_texts=None, seed: int = 0, **kw):
    """An :class:`~perso_kit.llm.LLM` client answered by a planted judge of ``kind`` (one of
    :data:`JUDGE_KINDS`); ``own_texts`` is required for ``"judge-prefers-own"``; ``kw`` go to
    :func:`~perso_kit.llm.get_llm`. The model object is ``llm.planted``.

    >>> planted_judge("judge-prefers-first").model
    'planted:judge-prefers-first (scripted, not an LLM)'
    """
    if kind == "judge-prefers-first":
        model = JudgePrefersFirst(seed)
    elif kind == "judge-prefers-longer":
        model = JudgePrefersLonger(seed)
    elif kind == "judge-prefers-own":
        if own_texts is None:
            raise ValueError("'judge-prefers-own' is a planted oracle: pass own_texts= (the "
                             "explanations it is to treat as its own)")
        model = JudgePrefersOwn(own_texts, seed)
    elif kind == "judge-control":
        model = PlantedJudge(seed)
    else:
        raise ValueError(f"kind must be one of {JUDGE_KINDS}, got {kind!r}")
    llm = model.llm(**kw)
    llm.planted = model
    return llm


# ------------------------------------------------------------------------------ planted fairness
#: the planted ranker of the fairness probe (:mod:`perso_kit.fairness`), see
#: :func:`planted_attribute_llm`
FAIRNESS_KINDS = ("swaps-on-attribute",)


class SwapsOnAttribute(Control):
    """The control's order, **reversed when the prompt states** ``trigger`` (a whole word,
    any case, e.g. ``"woman"``; ``"man"`` does not match it): the planted unfairness of the
    counterfactual probe. Shown 20 candidates and read at top 10, the lists with and without
    the trigger share no item, so the probe's list change (1 - Jaccard@10) is 1 for the
    statement naming the trigger and 0 for every other statement. A **planted oracle**: it is
    told the word to react to; it shows the probe *can* see a ranker that treats a stated
    attribute differently, and says nothing about whether an LLM does."""

    kind = "swaps-on-attribute"

    def __init__(self, trigger: str = "woman", seed: int = 0):
        if not str(trigger).strip():
            raise ValueError("trigger must be a non-empty word, e.g. 'woman'")
        super().__init__(seed)
        self.trigger = str(trigger).strip()
        self._pattern = re.compile(rf"\b{re.escape(self.trigger)}\b", re.I)
        self._triggered = threading.local()
        self.description = f"reverses its order when the prompt says {self.trigger!r}"

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        prompt = user_prompt(body)
        self._triggered.on = bool(self._pattern.search(prompt))
        return super().handle(path, body)

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        ranked = super().order(candidates)
        return ranked[::-1] if getattr(self._triggered, "on", False) else ranked


def planted_attribute_llm(trigger: str = "woman", seed: int = 0, **kw):
    """An :class:`~perso_kit.llm.LLM` client answered by :class:`SwapsOnAttribute` (the
    planted ranker that reverses its order when the prompt says ``trigger``); ``kw`` go to
    :func:`~perso_kit.llm.get_llm`. The model object is ``llm.planted``. Its clean control is
    ``planted_llm("control")``: the same order whatever the prompt states.

    >>> llm = planted_attribute_llm("woman")
    >>> llm.model
    'planted:swaps-on-attribute (scripted, not an LLM)'
    >>> ids = lambda r: r.data["ranking"]
    >>> shown = "Candidates:\\n[1] Up (2009) — Drama\\n[2] Heat (1995) — Crime\\n"
    >>> schema = {"title": "ranking", "type": "object", "properties": {"ranking": {
    ...           "type": "array", "items": {"type": "integer"}}}}
    >>> a = ids(llm.chat("I am a man.\\n" + shown, json_schema=schema))
    >>> b = ids(llm.chat("I am a woman.\\n" + shown, json_schema=schema))
    >>> b == a[::-1]
    True
    """
    model = SwapsOnAttribute(trigger, seed)
    llm = model.llm(**kw)
    llm.planted = model
    return llm


# ------------------------------------------------------------------------------ planted writers
#: the planted digest writers of :mod:`perso_kit.roles.content` (see :func:`planted_writer`)
WRITER_KINDS = ("writer-control", "writer-invents", "writer-same-for-everyone",
                "writer-leaks", "writer-malformed")

#: the one text :class:`WriterSameForEveryone` writes (it states no fact, so it is grounded)
SAME_DIGEST = "Here is your selection for this week, picked for you. Enjoy your evenings!"


class PlantedWriter(PlantedModel):
    """A scripted digest writer for the prompts of :mod:`perso_kit.roles.content` (the
    ``personal_digest`` schema). The base class is the **clean control**: the extractive
    digest of the prompt's own facts (:func:`~perso_kit.roles.content.extractive_digest`),
    so every fact is true, the text follows the user's inputs and names nothing else.
    Subclasses plant one failure each. Not language models."""

    kind = "writer-control"
    description = "copies the prompt's facts into a digest (the clean control)"

    def write(self, prompt: str, rid: int) -> str | None:
        """The digest text for one prompt (None: the prompt is not a digest prompt)."""
        from ..roles.content import extractive_digest

        return extractive_digest(prompt)

    def answer(self, text: str) -> str:
        """The message content carrying ``text`` (JSON, as the schema asks)."""
        return json.dumps({"digest": text})

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests += 1
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"a planted writer has no endpoint {path}"}}
        prompt = user_prompt(body)
        rid = _hash("request", self.seed, json.dumps(body, sort_keys=True, default=str))
        text = self.write(prompt, rid)
        if text is None:
            return 400, {"error": {"message": "a planted writer answers only digest prompts",
                                   "type": "invalid_request_error"}}
        return 200, self.completion(self.answer(text), rid, body)


class WriterInvents(PlantedWriter):
    """The control's digest with two invented facts in every text: the first pick's year
    moved by 3, and one more sentence recommending a film that exists in no catalog
    (:func:`invented_title`)."""

    kind = "writer-invents"
    description = "states a wrong year and a film that does not exist"

    def write(self, prompt: str, rid: int) -> str | None:
        text = super().write(prompt, rid)
        if text is None:
            return None
        from ..roles.content import parse_digest_prompt

        first = parse_digest_prompt(prompt)[1][0]["title"]
        m = re.search(r"\((\d{4})\)$", first)
        if m:
            text = text.replace(first, first[:m.start()] + f"({int(m.group(1)) + 3})", 1)
        return text + f" Also new this week: {invented_title(rid)}."


class WriterSameForEveryone(PlantedWriter):
    """Writes :data:`SAME_DIGEST` for every user: no fact, no leak, no personalization."""

    kind = "writer-same-for-everyone"
    description = "writes the same text for everyone"

    def write(self, prompt: str, rid: int) -> str | None:
        return SAME_DIGEST if super().write(prompt, rid) is not None else None


class WriterLeaks(PlantedWriter):
    """The control's digest plus a sentence naming a title it was *told*: ``leaks`` maps a
    prompt's history, its titles joined by ``" | "`` oldest first (:func:`history_key`), to a
    title to name (built from held-out items: a **planted oracle**, since a prompt holds no
    held-out item). Prompts whose history is not in ``leaks`` get the control's text."""

    kind = "writer-leaks"
    description = "names a held-out item it was told (a planted oracle)"

    def __init__(self, leaks, seed: int = 0):
        super().__init__(seed)
        self.leaks = {str(k): str(v) for k, v in dict(leaks).items()}

    def write(self, prompt: str, rid: int) -> str | None:
        text = super().write(prompt, rid)
        from ..roles.content import parse_digest_prompt

        hist = parse_digest_prompt(prompt)[0]
        key = history_key(t for t, _ in hist)
        if text is None or key not in self.leaks:
            return text
        return text + f" You will also love {self.leaks[key]}."


def history_key(titles) -> str:
    """The key of a history for :class:`WriterLeaks`: its titles, oldest first, joined by
    ``" | "`` (e.g. ``" | ".join(train.history(u, n=10)["title"])``)."""
    return " | ".join(str(t).strip() for t in titles)


class WriterMalformed(PlantedWriter):
    """Answers every digest prompt with prose instead of the JSON asked for: each call fails
    (``invalid_json``), which a batch must count, not crash on."""

    kind = "writer-malformed"
    description = "answers in prose, not the JSON asked for"

    def answer(self, text: str) -> str:
        return "Sure! Here is the digest you asked for: " + text


def planted_writer(kind: str, leaks=None, seed: int = 0, **kw):
    """An :class:`~perso_kit.llm.LLM` client answered by the planted writer of ``kind`` (one
    of :data:`WRITER_KINDS`); ``leaks`` (``{history_key(history titles): title to name}``,
    see :func:`history_key`) is required
    for ``"writer-leaks"``. The model object is ``llm.planted``.

    >>> llm = planted_writer("writer-same-for-everyone")
    >>> llm.model
    'planted:writer-same-for-everyone (scripted, not an LLM)'
    """
    classes = {"writer-control": PlantedWriter, "writer-invents": WriterInvents,
               "writer-same-for-everyone": WriterSameForEveryone,
               "writer-malformed": WriterMalformed}
    if kind == "writer-leaks":
        if leaks is None:
            raise ValueError("'writer-leaks' is a planted oracle: pass leaks={history_key("
                             "history titles): held-out title}; a prompt holds no held-out item")
        model = WriterLeaks(leaks, seed)
    elif kind in classes:
        model = classes[kind](seed)
    else:
        raise ValueError(f"kind must be one of {WRITER_KINDS}, got {kind!r}")
    llm = model.llm(**kw)
    llm.planted = model
    return llm


# ------------------------------------------------------------------------------ planted relations
#: the planted models of the relation checker (:mod:`perso_kit.roles.relations`), see
#: :func:`planted_relations_llm`
RELATION_KINDS = ("false-relations", "relations-control")
_LISTED_TITLE = re.compile(r"^- (.+\((\d{4})\))\s*$", re.M)


class ProposesFalseRelations(PlantedModel):
    """Answers the relation prompt (an ``item_relations`` JSON schema, films listed as
    ``- Title (year)`` lines) with relations the catalog contradicts or cannot hold: for each
    two consecutive listed films of different years, the *older* one ``sequel_of`` the newer
    (a sequel released before its original: contradicted), and one ``sequel_of`` naming a film
    that exists in no catalog (:func:`invented_title`: an unknown title). The checker must count
    none of them confirmed. Anything else gets HTTP 400."""

    kind = "false-relations"
    description = "proposes sequels older than their originals, and a film that does not exist"

    def relations(self, listed: list[tuple[str, int]], request_id: int) -> list[dict]:
        out = [{"a": invented_title(request_id), "relation": "sequel_of",
                "b": listed[0][0], "detail": ""}] if listed else []
        for (ta, ya), (tb, yb) in zip(listed, listed[1:]):
            if ya != yb:
                older, newer = (ta, tb) if ya < yb else (tb, ta)
                out.append({"a": older, "relation": "sequel_of", "b": newer, "detail": ""})
        return out[:8]

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        if not path.endswith("/chat/completions"):
            return super().handle(path, body)
        prompt, name = self.count_chat(body)
        listed = [(t, int(y)) for t, y in _LISTED_TITLE.findall(prompt)]
        if name != "item_relations" or not listed:
            return 400, {"error": {"message": "a planted relation model answers only the "
                                              "relation prompt of perso_kit.roles.relations",
                                   "type": "invalid_request_error"}}
        rid = _hash("request", self.seed, json.dumps(body, sort_keys=True, default=str))
        text = json.dumps({"relations": self.relations(listed, rid)})
        return 200, self.completion(text, rid, body)


class RelationsControl(ProposesFalseRelations):
    """The clean control of the relation checker, a **planted oracle**: it is handed relations
    read from the catalog itself (:func:`~perso_kit.roles.relations.catalog_relations`: a
    table with ``a, relation, b, detail``) and answers, for each prompt, those whose two films
    are both listed in it. Every one of them is true of the catalog, so the checker must count
    them all confirmed."""

    kind = "relations-control"
    description = "answers relations read from the catalog (the clean control)"

    def __init__(self, relations, seed: int = 0):
        super().__init__(seed)
        self.table = [dict(a=str(r["a"]), relation=str(r["relation"]), b=str(r["b"]),
                           detail=str(r.get("detail", "") or ""))
                      for r in (relations.to_dict("records") if hasattr(relations, "to_dict")
                                else relations)]

    def relations(self, listed: list[tuple[str, int]], request_id: int) -> list[dict]:
        shown = {t for t, _ in listed}
        return [r for r in self.table if r["a"] in shown and r["b"] in shown][:8]


def planted_relations_llm(kind: str, relations=None, seed: int = 0, **kw):
    """An :class:`~perso_kit.llm.LLM` client answered by a planted relation model of ``kind``
    (one of :data:`RELATION_KINDS`); ``relations`` is required for ``"relations-control"``;
    ``kw`` go to :func:`~perso_kit.llm.get_llm`. The model object is ``llm.planted``.

    >>> llm = planted_relations_llm("false-relations")
    >>> from perso_kit.roles.relations import RELATION_SCHEMA, relation_messages
    >>> r = llm.chat(relation_messages(["Alien (1979)", "Aliens (1986)"]),
    ...              json_schema=RELATION_SCHEMA)
    >>> [(x["a"], x["b"]) for x in r.data["relations"]][1]
    ('Alien (1979)', 'Aliens (1986)')
    """
    if kind == "false-relations":
        model = ProposesFalseRelations(seed)
    elif kind == "relations-control":
        if relations is None:
            raise ValueError("'relations-control' is a planted oracle: pass relations= (e.g. "
                             "catalog_relations(items, groups))")
        model = RelationsControl(relations, seed)
    else:
        raise ValueError(f"kind must be one of {RELATION_KINDS}, got {kind!r}")
    llm = model.llm(**kw)
    llm.planted = model
    return llm
