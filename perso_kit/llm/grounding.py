"""Grounding: map the titles an LLM writes to catalog ids, and flag the ones that do not exist.

Every LLM role grounds its outputs here. A written title is matched in three steps:

1. **Normalize** both sides (:func:`normalize_title`): accents, case and punctuation dropped,
   MovieLens' trailing articles moved back ("Matrix, The (1999)" -> "matrix"; the leading
   article is dropped so "The Matrix" matches too), the year taken apart, alternative titles in
   parentheses indexed as well.
2. **Exact** match on the normalized title, then a **near-exact** match among the closest
   candidates: a small edit distance (rapidfuzz ratio: a typo, "The Matrx") or a dropped
   subtitle (the written title is the start of the catalog title, so "Star Wars" finds
   "Star Wars: Episode IV"). A written title with *extra* words is not near-exact: the invented
   "Midnight in Velvet Harbor (1994)" does not ground to "Velvet Harbor (1993)".
3. **Years** decide between remakes and adjust the confidence: a matching year (within
   ``year_tolerance``) keeps it, no year costs a little (x0.97), a contradicting year costs a lot
   (x0.75). A near-exact (not exact) match needs the year: without one it costs x0.75, below
   the threshold.

A title whose confidence is below ``threshold`` (0.8) is *hallucinated*: its ``item_id`` is NA,
and ``matched_title`` still shows the closest catalog title, so a reader can see the near miss.

Given the user's ``history`` (item ids), a grounded title that the user already has is an
**echo**: it exists, but recommending it back is not a recommendation. :func:`grounding_summary`
reports new, echoed and hallucinated shares apart, so a model that echoes the history is not
"100% grounded recommendations".

>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": [1, 2], "title": ["Matrix, The (1999)", "Alien (1979)"],
...                       "year": [1999, 1979]})
>>> ground_titles(["The Matrix", "Alien (1979)", "The Matrix Revisited (2001)"], items)[
...     ["item_id", "hallucinated"]].values.tolist()
[[1, False], [2, False], [<NA>, True]]
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "il", "el", "das", "der", "die", "los",
            "las", "lo", "i", "gli", "une", "un", "det", "den")
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_PAREN = re.compile(r"\(([^()]*)\)")
_TRAILING_ARTICLE = re.compile(r"^(.*?),\s*(" + "|".join(re.escape(a) for a in ARTICLES)
                               + r")$", re.I)


@dataclass(frozen=True)
class ParsedTitle:
    """A title taken apart: the normalized key (no article), alternative keys, the year."""

    key: str
    alternatives: tuple[str, ...]
    year: int | None


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("&", " and ")
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    return " ".join(text.split())


def _key(part: str) -> str:
    part = part.strip().strip("\"'“”‘’*_")
    m = _TRAILING_ARTICLE.match(part)
    if m:
        part = f"{m.group(2)} {m.group(1)}"
    plain = _plain(part)
    first, _, rest = plain.partition(" ")
    if rest and first in ARTICLES:
        plain = rest
    return plain


def normalize_title(title: str) -> ParsedTitle:
    """Normalize one title (see the module docstring).

    >>> normalize_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)")
    ParsedTitle(key='city of lost children', alternatives=('cite des enfants perdus',), year=1995)
    """
    t = " ".join(str(title).split()).strip().strip("\"'“”*_").strip()
    year = None
    m = _YEAR.search(t)
    if m:
        year = int(m.group(1))
        t = t[: m.start()].strip()
    alts = []
    for part in _PAREN.findall(t):
        k = _key(re.sub(r"^(?:a\.k\.a\.|aka)\s+", "", part.strip(), flags=re.I))
        if k:
            alts.append(k)
    return ParsedTitle(_key(_PAREN.sub(" ", t)), tuple(alts), year)


class TitleIndex:
    """Normalized catalog titles for fast repeated grounding (build once per catalog)."""

    def __init__(self, items: pd.DataFrame):
        missing = {"item_id", "title"} - set(items.columns)
        if missing:
            raise ValueError(f"items needs the columns item_id and title (missing {missing})")
        self.items = items.reset_index(drop=True)
        years = self.items["year"] if "year" in self.items else pd.Series([pd.NA] * len(items))
        self.ids = self.items["item_id"].to_numpy()
        self.titles = self.items["title"].astype(str).to_numpy()
        self.years = np.array([None if pd.isna(y) else int(y) for y in years], dtype=object)
        self.keys: list[str] = []
        self.rows: list[int] = []
        self.exact: dict[str, list[int]] = {}
        self.postings: dict[str, set[int]] = {}  # word -> positions in keys
        for row, title in enumerate(self.titles):
            p = normalize_title(title)
            if self.years[row] is None and p.year is not None:
                self.years[row] = p.year
            for k in (p.key,) + p.alternatives:
                if k:
                    for w in set(k.split()):
                        self.postings.setdefault(w, set()).add(len(self.keys))
                    self.keys.append(k)
                    self.rows.append(row)
                    self.exact.setdefault(k, []).append(row)

    def candidates(self, key: str, limit: int = 8) -> set[int]:
        """Positions of keys worth scoring: the closest by edit distance, and the keys holding
        every (known) word of ``key`` (so "star wars" reaches "star wars episode iv")."""
        found = {pos for _, _, pos in process.extract(key, self.keys, scorer=fuzz.ratio,
                                                      limit=limit)}
        lists = [self.postings[w] for w in set(key.split()) if w in self.postings]
        if lists:
            common = set.intersection(*lists)
            if len(common) <= 50:
                found |= common
        return found


def _year_factor(wanted: int | None, have: int | None, tolerance: int) -> float:
    if wanted is None or have is None:
        return 0.97
    return 1.0 if abs(wanted - have) <= tolerance else 0.75


NO_YEAR_NEAR = 0.75  # a near-exact match with no year to confirm it: as bad as a wrong year


def _score(written: str, catalog: str) -> float:
    """Near-exact similarity of a written key to a catalog key: the edit-distance ratio, or
    0.9 when the written title is the catalog title with its subtitle dropped ("star wars" ->
    "star wars episode iv a new hope"). Extra written words ("midnight in velvet harbor" vs
    "velvet harbor") get only the edit-distance ratio."""
    s = fuzz.ratio(written, catalog) / 100.0
    if len(written.split()) >= 2 and catalog.startswith(written + " "):
        s = max(s, 0.9)
    return s


def ground_titles(texts, items: pd.DataFrame | TitleIndex, threshold: float = 0.8,
                  year_tolerance: int = 1, history=None) -> pd.DataFrame:
    """Match written titles to catalog items.

    Parameters
    ----------
    texts : list of str
        Titles as written (with or without a year).
    items : DataFrame or TitleIndex
        The catalog: ``item_id``, ``title`` and (optional) ``year``.
    threshold : float
        Confidence below which a title counts as hallucinated.
    year_tolerance : int
        Years this far apart still agree (release dates differ by country).
    history : iterable of item ids, optional
        The user's own items: adds a boolean ``echo`` column (grounded to one of them).

    Returns
    -------
    DataFrame
        ``text, item_id, matched_title, confidence, hallucinated`` (and ``echo`` with a
        ``history``) in the order of ``texts`` (``item_id`` is NA for hallucinated titles;
        ``matched_title`` is the closest title).
    """
    index = items if isinstance(items, TitleIndex) else TitleIndex(items)
    rows = []
    for text in texts:
        text = "" if text is None else str(text)
        p = normalize_title(text)
        best_row, best_conf = None, 0.0
        if p.key:
            candidates: dict[int, float] = {}
            for row in index.exact.get(p.key, []):
                candidates[row] = 1.0
            if not candidates or all(
                    _year_factor(p.year, index.years[r], year_tolerance) < 1 for r in candidates):
                for pos in index.candidates(p.key):
                    row = index.rows[pos]
                    candidates[row] = max(candidates.get(row, 0.0),
                                          _score(p.key, index.keys[pos]))
            for row, sim in candidates.items():
                factor = _year_factor(p.year, index.years[row], year_tolerance)
                if sim < 1.0 and p.year is None:
                    factor = NO_YEAR_NEAR
                conf = sim * factor
                if conf > best_conf + 1e-12:
                    best_row, best_conf = row, conf
        ok = best_row is not None and best_conf >= threshold
        rows.append({"text": text,
                     "item_id": index.ids[best_row] if ok else pd.NA,
                     "matched_title": index.titles[best_row] if best_row is not None else None,
                     "confidence": round(float(best_conf), 4),
                     "hallucinated": not ok})
    out = pd.DataFrame(rows, columns=["text", "item_id", "matched_title", "confidence",
                                      "hallucinated"])
    # typed even when empty (a reply with no title), so masks and concatenations keep working
    out = out.astype({"text": object, "confidence": float, "hallucinated": bool})
    if np.issubdtype(index.ids.dtype, np.integer):
        out["item_id"] = out["item_id"].astype("Int64")
    if history is not None:
        own = set(pd.Series(list(history), dtype=object).tolist())
        out["echo"] = [(not h) and (i in own) for i, h in zip(out["item_id"], out["hallucinated"])]
        out["echo"] = out["echo"].astype(bool)
    return out


_LINE_LEAD = re.compile(r"^\s*(?:[-*•>]+|\d+\s*[.)]|#+)\s*")
_TITLE_WITH_YEAR = re.compile(r"(.+?\(\d{4}\))")
_CUT = re.compile(r"\s+[—–-]\s+|\s*:\s+(?=[a-z])")


def extract_titles(text: str) -> list[str]:
    """Titles in a free-text answer: one per list line (numbering, bullets, markdown and the
    explanation after a dash removed), several per line when each has a year.

    >>> extract_titles("1. **The Matrix (1999)** - mind-bending\\n2. Alien (1979), Heat (1995)")
    ['The Matrix (1999)', 'Alien (1979)', 'Heat (1995)']
    """
    out: list[str] = []
    for raw in (text or "").splitlines():
        listed = _LINE_LEAD.match(raw) is not None
        line = _LINE_LEAD.sub("", raw).replace("**", "").replace("__", "").strip()
        if not line:
            continue
        found = _TITLE_WITH_YEAR.findall(line)
        if found:
            for t in found:
                t = re.sub(r"^(?:,|and|or|&|;)\s+", "", t.strip(" ,;")).strip("\"'“”")
                out.append(t.strip())
        elif listed and len(line) < 160:
            head = _CUT.split(line)[0].strip(" \"'“”.")
            if head and len(head.split()) <= 12:
                out.append(head)
    return out


def ground_text(text: str, items, **kw) -> pd.DataFrame:
    """:func:`extract_titles` then :func:`ground_titles`."""
    return ground_titles(extract_titles(text), items, **kw)


def grounding_rate(grounded: pd.DataFrame) -> float:
    """Share of titles that are *not* hallucinated (NaN for none). Echoes of the history
    count as grounded here; :func:`grounding_summary` reports them apart."""
    return float(1 - grounded["hallucinated"].mean()) if len(grounded) else float("nan")


def grounding_summary(grounded: pd.DataFrame) -> dict:
    """Titles split three ways: ``new`` (real items the user does not have), ``echo`` (real
    items from the user's history: needs ``ground_titles(..., history=...)``) and
    ``hallucinated``; counts and shares (NaN shares for no title).

    >>> import pandas as pd
    >>> items = pd.DataFrame({"item_id": [1, 2], "title": ["Alien (1979)", "Heat (1995)"]})
    >>> g = ground_titles(["Alien (1979)", "Heat (1995)", "Zorvex (2001)"], items, history=[1])
    >>> grounding_summary(g)["echo_rate"]
    0.3333
    """
    n = len(grounded)
    bad = int(grounded["hallucinated"].sum()) if n else 0
    echo = int(grounded["echo"].sum()) if n and "echo" in grounded else 0
    counts = {"titles": n, "new": n - bad - echo, "echo": echo, "hallucinated": bad}
    rates = {f"{k}_rate": round(v / n, 4) if n else float("nan")
             for k, v in counts.items() if k != "titles"}
    return {**counts, **rates}
