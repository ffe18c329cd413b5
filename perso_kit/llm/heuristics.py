"""Plain text heuristics the offline stand-in answers with. Not an LLM: word overlap, regular
expressions and templates over the text of the request -- nothing else.

The pieces (also useful to role modules writing their own stand-in handlers):

* :func:`words` -- lowercase content words (stop words and bare numbers dropped).
* :func:`find_candidates` -- ``(id, text)`` pairs listed in a prompt as ``[12] Title (1999)``,
  ``id: 12 ...``, ``item_id=12 ...`` or ``(id 12)``; the block headed by a line that says
  "candidates" (or "options", "choose", "rank"...) wins, else the last block.
* :func:`find_titles` -- ``Title (1999)``-shaped strings.
* :func:`rank_by_overlap` -- order texts by shared words with a context (stable; with a
  temperature, seeded Gumbel noise imitates sampling).
* :func:`fill_schema` -- a schema-valid JSON value whose fields are filled from the prompt:
  id arrays become candidate ids ranked by overlap with the rest of the prompt, title fields take
  titles found in the prompt, enums take the value sharing most words with the request, free
  text fields get a templated sentence citing the prompt's own titles.

>>> cands = find_candidates("History: Alien (1979)\\nCandidates:\\n[3] Toy Story (1995)"
...                         "\\n[7] Aliens (1986)")
>>> [c.id for c in cands]
['3', '7']
>>> fill_schema({"type": "object", "properties": {"ids": {"type": "array",
...     "items": {"type": "integer"}}}}, Context.from_text("I loved space horror. "
...     "Candidates:\\n[3] Toy Story, a toy comedy\\n[7] Aliens, space horror"))
{'ids': [7, 3]}
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

PROMPT_WORDS = {"answer", "json", "list", "following", "given", "please", "return", "reply",
                "respond", "output", "user", "users", "format", "schema", "exactly", "only",
                "id", "ids", "item", "items", "candidate", "candidates", "rank", "ranking",
                "order", "recommend", "recommendation", "recommendations", "titles", "title",
                "based", "like", "liked", "likes", "watched", "history", "want", "would",
                "movie", "movies", "film", "films", "don", "ve", "ll", "s", "t"}
STOP = frozenset(ENGLISH_STOP_WORDS) | PROMPT_WORDS

_WORD = re.compile(r"[a-z0-9']+")
_ID = re.compile(r"\[(?:id\s*[:=#]?\s*)?([A-Za-z_]*\d[\w\-]*)\]"
                 r"|\b(?:item_id|item|id)\s*[:=#]\s*([A-Za-z_]*\d[\w\-]*)"
                 r"|\(id\s*[:=#]?\s*(\d+)\)", re.I)
_TITLE = re.compile(r"[^\n\[\];:•|*\"“”]+?\((?:18|19|20)\d{2}\)")
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d+[.)]|[a-z][.)])\s+")
_HEADER_HINT = re.compile(r"candidate|option|choose|chose|rank|pick|select|from these|"
                          r"recommend|shortlist", re.I)
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


def words(text: str, prompt_words: bool = True) -> list[str]:
    """Lowercase content words of ``text``, in order (stop words and bare numbers dropped;
    with ``prompt_words=True`` also words every prompt uses, like "movie" or "candidates")."""
    stop = STOP if prompt_words else ENGLISH_STOP_WORDS
    out = []
    for w in _WORD.findall((text or "").lower()):
        w = w.strip("'")
        if w not in stop and not w.isdigit() and len(w) > 1:
            out.append(w)
    return out


_LEAD_INS = {"like", "liked", "loved", "enjoyed", "watched", "saw", "seen", "as",
             "including", "than", "similar", "to", "about", "recommend", "suggest", "try",
             "watch", "see", "love", "enjoy", "favourite", "favorite", "is", "was", "were"}


def _trim_lead_in(text: str) -> str:
    """Drop a sentence before a title: "movies like Alien (1979)" -> "Alien (1979)"."""
    toks = text.split()
    start = 0
    for i in range(1, len(toks)):
        if toks[i - 1].lower().strip(",.;:!?") in _LEAD_INS and toks[i][:1].isupper():
            start = i
    return " ".join(toks[start:])


@dataclass(frozen=True)
class Candidate:
    """An item a prompt lists with an id: ``id`` as written, ``text`` the rest of its line."""

    id: str
    text: str
    line: int

    @property
    def typed_id(self):
        """The id as an int when it is one."""
        return int(self.id) if self.id.isdigit() else self.id


def _strip_line(line: str) -> str:
    line = _BULLET.sub("", line)
    return line.strip(" \t-–—:.|,")


def find_candidates(text: str) -> list[Candidate]:
    """Items listed with ids in ``text`` (see the module docstring), in prompt order."""
    lines = (text or "").splitlines()
    blocks: list[tuple[str, list[Candidate]]] = []
    header, current, last_plain = "", [], ""
    for n, line in enumerate(lines):
        m = _ID.search(line)
        if m:
            cid = next(g for g in m.groups() if g)
            rest = _strip_line(line[:m.start()] + " " + line[m.end():])
            if not current:
                header = last_plain
            current.append(Candidate(cid, rest, n))
            continue
        if current:
            blocks.append((header, current))
            current = []
        if line.strip():
            last_plain = line
    if current:
        blocks.append((header, current))
    if not blocks:
        return []
    hinted = [b for b in blocks if _HEADER_HINT.search(b[0])]
    chosen = (hinted or blocks)[-1][1]
    seen, out = set(), []
    for c in chosen:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


def find_titles(text: str) -> list[str]:
    """``Title (1999)``-shaped strings in ``text``, first occurrence order, no duplicates."""
    out: list[str] = []
    for line in (text or "").splitlines():
        line = _ID.sub(" ", line)
        for m in _TITLE.finditer(line):
            t = _strip_line(m.group(0)).lstrip(",;& ").strip()
            t = _trim_lead_in(re.sub(r"^(?:and|or|also|then)\s+", "", t))
            if t and t[0].isalnum() and t not in out:
                out.append(t)
    return out


def overlap_scores(texts: list[str], context: str, prompt_words: bool = True) -> np.ndarray:
    """Shared-word score of each text with ``context``: the sum over the text's distinct words
    of log(1 + how often the word occurs in the context)."""
    counts: dict[str, int] = {}
    for w in words(context, prompt_words):
        counts[w] = counts.get(w, 0) + 1
    return np.array([sum(np.log1p(counts.get(w, 0)) for w in sorted(set(words(t, prompt_words))))
                     for t in texts])


def rank_by_overlap(texts: list[str], context: str, temperature: float = 0.0,
                    rng: np.random.Generator | None = None) -> list[int]:
    """Positions of ``texts`` ordered by :func:`overlap_scores` (ties keep prompt order).
    With ``temperature > 0`` and an ``rng``, Gumbel noise scaled by the temperature is added:
    a seeded imitation of sampling."""
    scores = overlap_scores(texts, context)
    if temperature > 0 and rng is not None and len(texts):
        scores = scores + temperature * rng.gumbel(size=len(texts))
    return sorted(range(len(texts)), key=lambda i: (-scores[i], i))


# --------------------------------------------------------------------------------- context
@dataclass
class Context:
    """What a heuristic may read: the request's messages (and nothing else).

    ``query`` is the latest user message; ``prompt`` all message text; ``temperature`` and
    ``rng`` come from the request's ``temperature`` and ``seed``.
    """

    messages: list[dict]
    temperature: float = 0.0
    rng: np.random.Generator | None = None
    focus: Candidate | None = None  # the candidate an array-of-objects element is about
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, **kw) -> "Context":
        return cls([{"role": "user", "content": text}], **kw)

    @staticmethod
    def _content(m: dict) -> str:
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        return c or ""

    @cached_property
    def query(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return self._content(m)
        return ""

    @cached_property
    def prompt(self) -> str:
        return "\n".join(self._content(m) for m in self.messages
                         if m.get("role") in ("system", "user", "assistant", "developer"))

    @cached_property
    def candidates(self) -> list[Candidate]:
        return find_candidates(self.prompt)

    @cached_property
    def titles(self) -> list[str]:
        return find_titles(self.prompt)

    @cached_property
    def context_text(self) -> str:
        """The prompt without the candidate lines: what candidates are compared with."""
        skip = {c.text for c in self.candidates}
        lines = [ln for ln in self.prompt.splitlines() if _strip_line(_ID.sub(" ", ln)) not in skip]
        return "\n".join(lines)

    def ranked_candidates(self, allowed: list | None = None) -> list[Candidate]:
        cands = self.candidates
        if allowed is not None:
            by_id = {c.id: c for c in cands}
            cands = [by_id.get(str(a), Candidate(str(a), "", -1)) for a in allowed]
        order = rank_by_overlap([c.text for c in cands], self.context_text,
                                self.temperature, self.rng)
        return [cands[i] for i in order]

    def ranked_titles(self) -> list[str]:
        titles = self.titles
        order = rank_by_overlap(titles, self.query, self.temperature, self.rng)
        return [titles[i] for i in order]

    def keywords(self, n: int = 5, text: str | None = None) -> list[str]:
        """The ``n`` most frequent content words of ``text`` (default: the latest user message),
        ties in order of first appearance."""
        exclude = self.extra.get("exclude_words", set())
        ws = [w for w in words(self.query if text is None else text) if w not in exclude]
        counts: dict[str, int] = {}
        for w in ws:
            counts[w] = counts.get(w, 0) + 1
        return sorted(counts, key=lambda w: (-counts[w], ws.index(w)))[:n]


# --------------------------------------------------------------------------------- schemas
_ID_HINTS = {"id", "ids", "ranking", "ranked", "rank", "order", "ordering", "recommendations",
             "recommended", "candidates", "selected", "selection", "choices", "picks", "top",
             "items", "item"}
_TITLE_HINTS = {"title", "titles", "movie", "movies", "film", "films", "name", "names"}
_TEXT_HINTS = {"explanation", "explanations", "reason", "reasons", "rationale", "summary",
               "text", "answer", "message", "reply", "response", "profile", "description",
               "why", "justification", "comment", "question", "sentence", "content"}
_SCORE_HINTS = {"score", "rating", "confidence", "probability", "relevance", "likelihood"}
_COUNT_HINTS = {"k", "n", "limit", "count", "num", "number", "top_k", "size"}
_QUERY_HINTS = {"query", "q", "search", "keywords", "keyword", "request", "prompt", "terms"}


def _tokens(name: str) -> set[str]:
    return set(re.split(r"[_\W]+", (name or "").lower())) | {(name or "").lower()}


def _resolve(schema: dict, root: dict) -> dict:
    """Follow a local ``$ref``, take the first non-null option of ``anyOf``/``oneOf``, merge
    ``allOf``."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 20:
        ref = schema["$ref"]
        node = root
        for part in ref.lstrip("#/").split("/"):
            node = node.get(part, {}) if part else node
        schema, seen = node, seen + 1
    for key in ("anyOf", "oneOf"):
        if isinstance(schema, dict) and key in schema:
            options = [_resolve(o, root) for o in schema[key]]
            non_null = [o for o in options if o.get("type") != "null"]
            schema = {**{k: v for k, v in schema.items() if k != key},
                      **(non_null or options)[0]}
    if isinstance(schema, dict) and "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            for k, v in part.items():
                if k == "properties":
                    merged.setdefault("properties", {}).update(v)
                elif k == "required":
                    merged["required"] = sorted(set(merged.get("required", [])) | set(v))
                else:
                    merged.setdefault(k, v)
        schema = merged
    return schema if isinstance(schema, dict) else {}


def _type(schema: dict) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), t[0] if t else None)
    if t is None:
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        if "enum" in schema and schema["enum"]:
            v = schema["enum"][0]
            return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
                type(v), "string")
    return t


def _choose_enum(options: list, ctx: Context):
    texts = [str(o) for o in options]
    source = ctx.focus.text if ctx.focus else ctx.query
    scores = overlap_scores(texts, source)
    if scores.max(initial=0) == 0:  # fall back to whole words present in the request
        present = [i for i, t in enumerate(texts) if t.lower() in source.lower()]
        if present:
            return options[present[0]]
        return options[0]
    return options[int(np.argmax(scores))]


def _sentence(ctx: Context) -> str:
    """A templated sentence citing the prompt's own words and titles."""
    target = ctx.focus.text if ctx.focus else (find_titles(ctx.query) or [ctx.query])[0]
    others = [t for t in ctx.titles if t not in target and target not in t]
    shared_words = []
    if others:
        order = rank_by_overlap(others, target)
        best = others[order[0]]
        shared_words = sorted(set(words(best)) & set(words(target)))[:3]
        if shared_words:
            return (f"{_short(target)} shares {', '.join(repr(w) for w in shared_words)} with "
                    f"{best}, which appears in the request.")
        return f"{_short(target)} is suggested alongside {best}, which appears in the request."
    kws = ctx.keywords(3)
    if kws:
        return f"The request mentions {', '.join(repr(k) for k in kws)}."
    return "No matching words were found in the request."


def _short(text: str, n: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _number(schema: dict, name: str, ctx: Context, integer: bool):
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    toks = _tokens(name)
    value = None
    if toks & {"id", "item_id", "item"} and ctx.focus is not None and ctx.focus.id.isdigit():
        value = int(ctx.focus.id)
    elif toks & {"user", "user_id"}:
        m = re.search(r"\buser(?:[ _]?id)?\s*[:#=]?\s*(\d+)", ctx.query, re.I)
        value = int(m.group(1)) if m else None
    elif toks & _SCORE_HINTS and ctx.focus is not None:
        s = overlap_scores([ctx.focus.text], ctx.context_text)[0]
        frac = 1 - 1 / (1 + s)
        lo_, hi_ = (lo if lo is not None else 0), (hi if hi is not None else 1)
        value = lo_ + frac * (hi_ - lo_)
    elif "year" in toks:
        years = re.findall(r"\b(?:18|19|20)\d{2}\b", ctx.query)
        value = int(years[0]) if years else None
    if value is None:
        nums = [float(x) for x in _NUMBER.findall(ctx.query)]
        nums = [x for x in nums if (lo is None or x >= lo) and (hi is None or x <= hi)]
        if nums and toks & (_COUNT_HINTS | {"year", "max", "min", "runtime", "minutes"}):
            value = nums[0]
        elif "default" in schema:
            value = schema["default"]
        elif toks & _COUNT_HINTS:
            value = 5
        else:
            value = lo if lo is not None else 0
    if lo is not None:
        value = max(value, lo + (1 if "exclusiveMinimum" in schema and integer else 0))
    if hi is not None:
        value = min(value, hi - (1 if "exclusiveMaximum" in schema and integer else 0))
    return int(round(value)) if integer else round(float(value), 4)


def fill_schema(schema: dict, ctx: Context, name: str = "", root: dict | None = None,
                depth: int = 0):
    """A JSON value valid for ``schema`` whose fields are filled by text heuristics over the
    request in ``ctx`` (see the module docstring)."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return _choose_enum(schema["enum"], ctx)
    t = _type(schema)
    toks = _tokens(name)
    if t == "object":
        out = {}
        for key, sub in (schema.get("properties") or {}).items():
            out[key] = fill_schema(sub, ctx, key, root, depth + 1)
        return out
    if t == "array":
        return _fill_array(schema, ctx, name, root, depth)
    if t == "string":
        if ctx.focus is not None and toks & {"id", "item_id", "item"}:
            value = ctx.focus.id
        elif ctx.focus is not None and toks & _TITLE_HINTS:
            value = ctx.focus.text
        elif toks & _TITLE_HINTS:
            titles = ctx.ranked_titles()
            value = titles[0] if titles else (ctx.keywords(1) or ["unknown"])[0]
        elif toks & {"id", "item_id"}:
            cands = ctx.ranked_candidates()
            value = cands[0].id if cands else ""
        elif toks & _QUERY_HINTS:
            value = " ".join(ctx.keywords(8)) or ctx.query
        elif toks & _TEXT_HINTS or not toks - {""}:
            value = _sentence(ctx)
        else:
            value = ", ".join(ctx.keywords(2, ctx.focus.text if ctx.focus else None)) or name
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if len(value) < lo:
            value = value + "." * (lo - len(value))
        return value[:hi] if hi else value
    if t == "integer":
        return _number(schema, name, ctx, integer=True)
    if t == "number":
        return _number(schema, name, ctx, integer=False)
    if t == "boolean":
        return bool(ctx.focus is not None
                    and overlap_scores([ctx.focus.text], ctx.context_text)[0] > 0)
    if t == "null":
        return None
    return _sentence(ctx)


def _fill_array(schema: dict, ctx: Context, name: str, root: dict, depth: int) -> list:
    items = _resolve(schema.get("items") or {}, root)
    it = _type(items)
    lo = int(schema.get("minItems", 0))
    hi = schema.get("maxItems")
    toks = _tokens(name)
    values: list = []
    if it in ("integer", "string") and (items.get("enum") is not None
                                       or (toks & _ID_HINTS and ctx.candidates)):
        allowed = items.get("enum")
        ranked = ctx.ranked_candidates(allowed)
        values = [c.typed_id if it == "integer" else c.id for c in ranked]
        if it == "integer":
            values = [v for v in values if isinstance(v, int)]
        if allowed is not None and not (toks & _ID_HINTS):
            # an enum of labels (genres, moods...): the ones the request's focus mentions
            source = (ctx.focus.text if ctx.focus else ctx.query).lower()
            present = [a for a in allowed if str(a).lower() in source]
            values = present or values[:1]
    elif it == "string" and toks & _TITLE_HINTS:
        values = ctx.ranked_titles()
    elif it == "object" and ctx.candidates:
        for c in ctx.ranked_candidates():
            sub = Context(ctx.messages, ctx.temperature, ctx.rng, focus=c, extra=ctx.extra)
            sub.__dict__.update({k: ctx.__dict__[k] for k in
                                 ("candidates", "titles", "context_text", "query", "prompt")
                                 if k in ctx.__dict__})
            values.append(fill_schema(items, sub, "", root, depth + 1))
    elif it == "string":
        values = ctx.keywords(max(lo, 3), ctx.focus.text if ctx.focus else None)
    else:
        values = [fill_schema(items, ctx, name.rstrip("s"), root, depth + 1)
                  for _ in range(max(lo, 1))]
    if schema.get("uniqueItems"):
        seen, unique = [], []
        for v in values:
            k = json.dumps(v, sort_keys=True)
            if k not in seen:
                seen.append(k)
                unique.append(v)
        values = unique
    if hi is not None:
        values = values[: int(hi)]
    while len(values) < lo:  # pad with schema-valid fillers
        values.append(fill_schema(items, ctx, name.rstrip("s"), root, depth + 1))
    return values


# --------------------------------------------------------------------------------- tools
def tool_specs(tools: list[dict]) -> list[dict]:
    """``{"name", "description", "parameters"}`` of each OpenAI-format tool."""
    out = []
    for t in tools or []:
        f = t.get("function", t)
        out.append({"name": f.get("name", ""), "description": f.get("description", ""),
                    "parameters": f.get("parameters") or {"type": "object", "properties": {}}})
    return out


def _tool_text(spec: dict) -> str:
    params = spec["parameters"].get("properties", {})
    parts = [spec["name"].replace("_", " "), spec["description"]]
    for k, v in params.items():
        parts += [k.replace("_", " "), str(v.get("description", ""))]
    return " ".join(parts)


def choose_tools(tools: list[dict], ctx: Context, max_calls: int = 1) -> list[tuple[str, dict]]:
    """Tools whose name/description share most words with the latest user message, with their
    required arguments filled from the message (optional ones when the message names them).
    Returns ``[(name, arguments)]``; empty when no tool shares a word."""
    specs = tool_specs(tools)
    if not specs:
        return []
    scores = overlap_scores([_tool_text(s) for s in specs], ctx.query, prompt_words=False)
    order = sorted(range(len(specs)), key=lambda i: (-scores[i], i))
    if scores[order[0]] <= 0:
        return []
    chosen = [specs[i] for i in order[:max_calls] if scores[i] > 0]
    return [(s["name"], fill_arguments(s["parameters"], ctx, _tool_text(s))) for s in chosen]


def fill_arguments(parameters: dict, ctx: Context, tool_text: str = "") -> dict:
    """Arguments for a tool: every required parameter, plus optional ones the message names.
    Words of ``tool_text`` (the tool's own name and description) are left out of free-text
    arguments such as a search query."""
    ctx = Context(ctx.messages, ctx.temperature, ctx.rng, ctx.focus,
                  {**ctx.extra, "exclude_words": set(words(tool_text, prompt_words=False))})
    props = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    query_words = set(words(ctx.query)) | set(re.findall(r"[a-z_]+", ctx.query.lower()))
    args = {}
    for key, sub in props.items():
        named = bool(set(key.lower().split("_")) & query_words)
        if key in required or named:
            args[key] = fill_schema(sub, ctx, key, parameters)
    return args
