"""The LLM as a knowledge base: structured attributes of items, and user profiles in words.

An interaction matrix knows *that* people watched a film, not *what* the film is. A language
model has read about many items and can be asked for their attributes -- themes, mood,
audience, keywords, a one-line summary -- in a JSON schema. Before using such answers we check
them: against a vocabulary (grounding: an invented genre is dropped and counted), and against
what the catalog already knows (agreement: precision and recall of the LLM's genres).

==========================  ==================================================================
:func:`enrich_items`        ask for attributes of many items (one cached request per item, sent
                            as a batch with a progress bar); validated and grounded
:func:`attribute_agreement` precision/recall of the genres, accuracy of the mood, against the
                            catalog's own columns
:func:`attribute_support`   each free-text value (mood, themes, audience, keywords, summary)
                            checked against the item's catalog text: supported, unverifiable
                            or unsupported
:func:`fill_rates`          how often each attribute was filled, and filled where the catalog
                            had nothing (with a value that is not unsupported)
:func:`user_profiles`       a user's history summarized in words (likes, dislikes, eras), usable
                            as a query for a content recommender
:func:`profile_support`     each profile value checked against the history the model was shown
==========================  ==================================================================

**Support, not just presence.** A model can fill every field with something plausible: "winner
of the 1988 Golden Lantern award" is a filled ``themes`` value, and invented. A value is
*supported* when at least half of its content words (4+ letters, crude stems) appear in the
item's catalog text (title, genres, description, mood, themes); *unsupported* when it names a
year the catalog does not hold, or when the catalog has a description to check against and
the words are not in it; *unverifiable* otherwise (no description, or a judgement such as an
audience or a mood the catalog has no column for). Only values that are not unsupported count
as filling a gap.

**The offline stand-in.** Without a configured model, the offline stand-in answers (it is
*not an LLM*). This module registers two heuristics for it that read **only the prompt**: a
keyword tagger that looks for genre and mood words in the item's description, and a counter of
the genres and decades in the history lines of a profile prompt. Where the description was
written from the genres (the demo world), the tagger agrees with the catalog often; that says
nothing about what an LLM knows. With titles only (MovieLens has no descriptions), it finds
almost nothing -- which is where a real model's knowledge would show.

>>> from perso_kit import load_dataset
>>> from perso_kit.llm import get_llm
>>> ds = load_dataset("demo")
>>> attrs = enrich_items(get_llm(), ds.items.head(3), progress=False)
>>> attrs.columns[:3].tolist()
['item_id', 'genres', 'mood']
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..llm.offline import register_handler

#: moods an item can be given (a small, general vocabulary)
DEFAULT_MOODS = ("light-hearted", "dark", "tense", "uplifting", "melancholic", "whimsical",
                 "thoughtful")

#: answer lengths fit for each task (tokens): no request leaves the kit unbounded
ATTRIBUTE_MAX_TOKENS = 300
PROFILE_MAX_TOKENS = 200

ATTRIBUTE_SCHEMA = {
    "title": "item_attributes",
    "type": "object",
    "properties": {
        "genres": {"type": "array", "items": {"type": "string"}, "maxItems": 5,
                   "description": "genres from the allowed list"},
        "mood": {"type": "string", "description": "one mood from the allowed list"},
        "themes": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "audience": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "summary": {"type": "string", "description": "one sentence"},
    },
    "required": ["genres", "mood", "themes", "audience", "keywords", "summary"],
    "additionalProperties": False,
}

PROFILE_SCHEMA = {
    "title": "user_profile",
    "type": "object",
    "properties": {
        "likes": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "dislikes": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "eras": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "summary": {"type": "string", "description": "two sentences at most"},
    },
    "required": ["likes", "dislikes", "eras", "summary"],
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- item attributes
def attribute_messages(title: str, description: str, genres, moods=DEFAULT_MOODS) -> list:
    """The chat messages asking for one item's attributes.

    The prompt holds the item's title and description (if any) and the *vocabularies* to
    choose from -- never the item's catalog genres, which we compare against afterwards.
    """
    system = ("You are a film expert. Describe the film with structured attributes.\n"
              f"Genres to choose from: {', '.join(genres)}.\n"
              f"Moods to choose from: {', '.join(moods)}.")
    user = f"Film: {title}"
    if description:
        user += f"\nDescription: {description}"
    user += ("\nGive its genres, one mood, up to three themes, its audience, up to five "
             "keywords and a one-sentence summary.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _catalog_genres(items: pd.DataFrame) -> list[str]:
    return sorted({g for gs in items["genres"] for g in gs})


def enrich_items(llm, items: pd.DataFrame, genres=None, moods=DEFAULT_MOODS,
                 concurrency: int = 8, progress: bool = True) -> pd.DataFrame:
    """Ask ``llm`` for the attributes of each item (a batch of cached requests).

    Parameters
    ----------
    llm : perso_kit.llm.LLM
    items : DataFrame
        Catalog rows (``item_id, title, description``).
    genres : list of str, optional
        Allowed genres (default: every genre of ``items``). Genres outside the list are
        *ungrounded*: dropped and counted.
    moods : list of str
        Allowed moods; a mood outside the list becomes "".
    concurrency, progress
        Passed to :meth:`~perso_kit.llm.client.LLM.map`.

    Returns
    -------
    DataFrame, one row per item: ``item_id, genres`` (tuple), ``mood, themes, audience,
    keywords, summary, ungrounded`` (how many genres were dropped), ``ok`` and ``error``
    (a failed or invalid reply gives empty attributes and the reason).
    """
    genres = list(genres) if genres is not None else _catalog_genres(items)
    allowed = {g.lower(): g for g in genres}
    mood_ok = {m.lower(): m for m in moods}
    requests = [dict(messages=attribute_messages(r.title, getattr(r, "description", "") or "",
                                                 genres, moods),
                     json_schema=ATTRIBUTE_SCHEMA, max_tokens=ATTRIBUTE_MAX_TOKENS)
                for r in items.itertuples()]
    replies = llm.map(requests, concurrency=concurrency, desc="item attributes",
                      progress=progress)
    rows = []
    for iid, rep in zip(items["item_id"].to_numpy(), replies):
        d = rep.data if rep.ok and isinstance(rep.data, dict) else None
        if d is None:
            rows.append(dict(item_id=iid, genres=(), mood="", themes=(), audience="",
                             keywords=(), summary="", ungrounded=0, ok=False,
                             error=rep.error or "no valid JSON in the reply"))
            continue
        said = [str(g).strip() for g in d.get("genres", [])]
        kept = tuple(dict.fromkeys(allowed[g.lower()] for g in said if g.lower() in allowed))
        rows.append(dict(item_id=iid, genres=kept,
                         mood=mood_ok.get(str(d.get("mood", "")).strip().lower(), ""),
                         themes=tuple(map(str, d.get("themes", []))),
                         audience=str(d.get("audience", "")),
                         keywords=tuple(map(str, d.get("keywords", []))),
                         summary=str(d.get("summary", "")),
                         ungrounded=len(said) - len(kept), ok=True, error=None))
    return pd.DataFrame(rows)


def attribute_agreement(attributes: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """How well the LLM's attributes agree with the catalog's own columns.

    Rows: one per catalog genre (``precision``: share of the items the LLM gave the genre that
    the catalog also lists under it; ``recall``: share of the catalog's items of that genre the
    LLM found; ``support``: catalog items with it), an ``all genres (micro)`` row, and, if the
    catalog has a ``mood`` column, a ``mood`` row whose ``precision`` and ``recall`` are both
    the accuracy over items where the LLM gave a mood.

    >>> items = pd.DataFrame({"item_id": [1, 2], "genres": [("Drama",), ("Comedy", "Drama")]})
    >>> attrs = pd.DataFrame({"item_id": [1, 2], "genres": [("Drama",), ("Comedy",)]})
    >>> attribute_agreement(attrs, items).set_index("attribute").loc["all genres (micro)",
    ...     ["precision", "recall"]].tolist()
    [1.0, 0.6666666666666666]
    """
    cat = items.set_index("item_id")
    a = attributes.set_index("item_id")
    ids = a.index.intersection(cat.index)
    truth = [set(cat.at[i, "genres"]) for i in ids]
    said = [set(a.at[i, "genres"]) for i in ids]
    rows = []
    tp_all = fp_all = fn_all = 0
    for g in _catalog_genres(cat.loc[ids].reset_index()):
        tp = sum(g in t and g in s for t, s in zip(truth, said))
        fp = sum(g not in t and g in s for t, s in zip(truth, said))
        fn = sum(g in t and g not in s for t, s in zip(truth, said))
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        rows.append(dict(attribute=g, precision=tp / (tp + fp) if tp + fp else np.nan,
                         recall=tp / (tp + fn) if tp + fn else np.nan, support=tp + fn))
    rows.append(dict(attribute="all genres (micro)",
                     precision=tp_all / (tp_all + fp_all) if tp_all + fp_all else np.nan,
                     recall=tp_all / (tp_all + fn_all) if tp_all + fn_all else np.nan,
                     support=tp_all + fn_all))
    if "mood" in cat.columns and "mood" in a.columns:
        given = a.loc[ids, "mood"].fillna("").astype(str) != ""
        acc = (a.loc[ids, "mood"][given] == cat.loc[ids, "mood"][given]).mean() \
            if given.any() else np.nan
        rows.append(dict(attribute="mood", precision=acc, recall=acc, support=int(given.sum())))
    return pd.DataFrame(rows)


def _filled(value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return len(value) > 0 if isinstance(value, (str, tuple, list)) else True


# --------------------------------------------------------------------------- support
SUPPORT_LABELS = ("supported", "unverifiable", "unsupported")
#: free-text attributes checked for support, and the ones that are judgements (a value not
#: found in the text is unverifiable, never unsupported: "families" is rarely written down)
SUPPORT_FIELDS = ("mood", "themes", "audience", "keywords", "summary")
JUDGEMENTS = ("mood", "audience")
_YEARS = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_STOP = frozenset("""about above after again against also among an and another any are around
away back been before being below between both but came come could does doing down during each
every film films from have having here into itself just like made make many more most movie
movies much must other over same should some such than that their them then there these they
this those through under until very were what when where which while will with within without
would your""".split())


def _stems(text: str) -> set[str]:
    """Content words of ``text``: lower case, 4+ letters, not a stop word, a plural "s" cut,
    then cut to 5 letters (a crude stem: "friendship" and "friends" meet at "frien")."""
    words = [w for w in re.findall(r"[a-z]+", str(text).lower()) if len(w) >= 4 and w not in _STOP]
    return {(w[:-1] if w.endswith("s") and len(w) > 4 else w)[:5] for w in words}


def support_label(value, text: str, year=None, checkable: bool = True,
                  judgement: bool = False) -> str:
    """``"supported"``, ``"unverifiable"`` or ``"unsupported"`` for one value against the
    catalog ``text`` of its item (see the module docstring).

    >>> text = "Heat (1995). Genres: Crime. A detective hunts a crew of bank robbers."
    >>> [support_label(v, text, 1995) for v in ("bank robbery", "winner of the 1988 Golden "
    ...  "Lantern award", "space travel", "1995 crime saga")]
    ['supported', 'unsupported', 'unsupported', 'supported']
    >>> support_label("space travel", "Heat (1995).", 1995, checkable=False)
    'unverifiable'
    """
    value = str(value)
    low = text.lower()
    for y in _YEARS.findall(value):
        if y not in low and (year is None or pd.isna(year) or int(y) != int(year)):
            return "unsupported"                # a specific claim the catalog contradicts
    if value.strip() and re.search(r"(?<!\w)" + re.escape(value.strip().lower()) + r"(?!\w)", low):
        return "supported"                      # written as such ("War", "Sci-Fi")
    words = _stems(value)
    if not words:
        return "unverifiable"
    if len(words & _stems(text)) >= len(words) / 2:
        return "supported"
    return "unsupported" if checkable and not judgement else "unverifiable"


def catalog_text(items: pd.DataFrame) -> pd.Series:
    """The catalog's own words per item (title, genres, description, mood, themes), indexed by
    ``item_id``: what a value is checked against."""
    from .interpreter import item_text
    text = item_text(items).to_numpy()
    extra = [items[c].map(lambda v: " ".join(v) if isinstance(v, (list, tuple)) else
                          ("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)))
             for c in ("mood", "themes") if c in items.columns]
    for e in extra:
        text = text + " " + e.to_numpy()
    return pd.Series(text, index=items["item_id"].to_numpy())


def attribute_support(attributes: pd.DataFrame, items: pd.DataFrame,
                      fields=SUPPORT_FIELDS) -> pd.DataFrame:
    """Every free-text value of ``attributes`` (from :func:`enrich_items`) labelled against
    its item's catalog text: one row per ``item_id, attribute, value, label``.

    An item is *checkable* when the catalog has a description for it; without one, words not
    found are unverifiable. A mood equal to the catalog's ``mood`` column is supported, another
    one unsupported.
    """
    text = catalog_text(items)
    cat = items.set_index("item_id")
    has_desc = (cat["description"].fillna("").astype(str).str.strip() != ""
                if "description" in cat.columns else pd.Series(False, index=cat.index))
    rows = []
    for r in attributes.itertuples():
        if r.item_id not in text.index:
            continue
        year = cat.at[r.item_id, "year"] if "year" in cat.columns else None
        for col in fields:
            for v in _as_values(getattr(r, col, None)):
                if col == "mood" and "mood" in cat.columns and _filled(cat.at[r.item_id, "mood"]):
                    label = "supported" if v == cat.at[r.item_id, "mood"] else "unsupported"
                else:
                    label = support_label(v, text[r.item_id], year, bool(has_desc[r.item_id]),
                                          judgement=col in JUDGEMENTS)
                rows.append(dict(item_id=r.item_id, attribute=col, value=v, label=label))
    return pd.DataFrame(rows, columns=["item_id", "attribute", "value", "label"])


def _as_values(value) -> list[str]:
    if not _filled(value):
        return []
    return [str(v) for v in value if str(v).strip()] if isinstance(value, (list, tuple)) \
        else [str(value)]


def support_shares(labels: pd.DataFrame, by: str = "attribute") -> pd.DataFrame:
    """Shares of supported / unverifiable / unsupported values per ``by`` group (and ``all``),
    with the number of values ``n``."""
    if not len(labels):
        return pd.DataFrame(columns=[by, *SUPPORT_LABELS, "n"])
    t = pd.crosstab(labels[by], labels["label"]).reindex(columns=list(SUPPORT_LABELS),
                                                          fill_value=0)
    t.loc["all"] = t.sum()
    n = t.sum(axis=1)
    out = t.div(n, axis=0).round(4)
    out["n"] = n
    return out.rename_axis(by).reset_index().rename_axis(None, axis=1)


def fill_rates(attributes: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """For each attribute: the share of items the LLM filled, the share the catalog lacks, and
    the share of those missing ones the LLM filled (NaN where the catalog lacks none), where a
    free-text value counts as a fill only if it is *not unsupported* (:func:`attribute_support`):
    an invented award does not fill a gap. The columns ``supported``, ``unverifiable`` and
    ``unsupported`` give the shares of the values given (NaN for genres, which are grounded to
    the vocabulary instead; see :func:`attribute_agreement`).

    An attribute the catalog has no column for (say ``mood`` in MovieLens) counts as missing
    for every item.
    """
    cat = items.set_index("item_id")
    a = attributes.set_index("item_id")
    ids = a.index.intersection(cat.index)
    labels = attribute_support(attributes[attributes["item_id"].isin(ids)], items)
    shares = support_shares(labels).set_index("attribute")
    good = labels[labels["label"] != "unsupported"].groupby(["attribute", "item_id"]).size()
    rows = []
    for col in ("genres", "mood", "themes", "audience", "keywords", "summary"):
        llm = a.loc[ids, col].map(_filled)
        if col in SUPPORT_FIELDS:           # filled with at least one value not unsupported
            kept = set(good.loc[col].index) if col in good.index.get_level_values(0) else set()
            useful = pd.Series([i in kept for i in ids], index=ids)
        else:
            useful = llm
        if col in cat.columns:
            missing = ~cat.loc[ids, col].map(_filled)
        else:
            missing = pd.Series(True, index=ids)
        row = dict(attribute=col, llm_filled=float(llm.mean()),
                   catalog_missing=float(missing.mean()),
                   filled_where_missing=float(useful[missing].mean()) if missing.any()
                   else np.nan)
        for lab in SUPPORT_LABELS:
            row[lab] = float(shares.at[col, lab]) if col in shares.index else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- user profiles
def history_lines(ds, user_id, n: int = 20) -> str:
    """A user's last ``n`` items as ``- Title (year) | genres | rated r/5`` lines (no user id,
    no demographics: only what the profile needs)."""
    h = ds.history(user_id, n=n)
    return "\n".join(f"- {r.title} | {', '.join(r.genres)} | rated {r.rating:g}/5"
                     for r in h.itertuples())


def profile_messages(ds, user_id, n: int = 20) -> list:
    """The chat messages asking for a profile in words of one user's history."""
    return [{"role": "system", "content": "You summarize a viewer's taste for a film "
             "recommender: what they like, what they dislike, which eras."},
            {"role": "user", "content": "Viewing history (oldest first):\n"
             + history_lines(ds, user_id, n)
             + "\nDescribe this viewer's likes, dislikes and favourite eras."}]


def profile_text(likes, dislikes, eras, summary: str = "") -> str:
    """One string from a profile, usable as a query: ``"Likes: ... Dislikes: ... Eras: ..."``.

    >>> profile_text(["Comedy"], ["Horror"], ["1990s"])
    'Likes: Comedy. Dislikes: Horror. Eras: 1990s.'
    """
    parts = []
    for name, vals in (("Likes", likes), ("Dislikes", dislikes), ("Eras", eras)):
        vals = [str(v) for v in vals]
        if vals:
            parts.append(f"{name}: {', '.join(vals)}.")
    if summary:
        parts.append(str(summary))
    return " ".join(parts)


def user_profiles(llm, ds, users, n: int = 20, concurrency: int = 8,
                  progress: bool = True) -> pd.DataFrame:
    """Profiles in words of ``users`` (a batch of cached requests).

    Returns ``user_id, likes, dislikes, eras, summary, text, ok, error``; ``text`` is
    :func:`profile_text` of the profile (the query a content recommender can embed). The
    ``Dislikes`` part is left out of ``text`` so that embedding it does not pull the user
    *towards* what they dislike.
    """
    users = list(users)
    replies = llm.map([dict(messages=profile_messages(ds, u, n), json_schema=PROFILE_SCHEMA,
                            max_tokens=PROFILE_MAX_TOKENS)
                       for u in users], concurrency=concurrency, desc="user profiles",
                      progress=progress)
    rows = []
    for u, rep in zip(users, replies):
        d = rep.data if rep.ok and isinstance(rep.data, dict) else None
        if d is None:
            rows.append(dict(user_id=u, likes=(), dislikes=(), eras=(), summary="", text="",
                             ok=False, error=rep.error or "no valid JSON in the reply"))
            continue
        likes, dislikes, eras = (tuple(map(str, d.get(k, []))) for k in
                                 ("likes", "dislikes", "eras"))
        rows.append(dict(user_id=u, likes=likes, dislikes=dislikes, eras=eras,
                         summary=str(d.get("summary", "")),
                         text=profile_text(likes, (), eras), ok=True, error=None))
    return pd.DataFrame(rows)


def profile_support(profiles: pd.DataFrame, ds, n: int = 20) -> pd.DataFrame:
    """Every ``likes``, ``dislikes`` and ``eras`` value of ``profiles`` (from
    :func:`user_profiles`) labelled against the history the model was shown (the user's last
    ``n`` items: titles, genres, descriptions): one row per ``user_id, attribute, value,
    label``. An era is supported when a history film is from that decade ("1990s", "90s",
    "1995"); a like or dislike when its words are in the history's text. The history is always
    there to check against, so a value not found in it is unsupported.
    """
    texts = catalog_text(ds.items)
    rows = []
    for r in profiles.itertuples():
        h = ds.history(r.user_id, n=n)
        text = " ".join(texts.reindex(h["item_id"]).fillna("").astype(str))
        decades = {int(y) // 10 * 10 for y in h["year"].dropna()}
        for col in ("likes", "dislikes", "eras"):
            for v in _as_values(getattr(r, col, None)):
                if col == "eras":
                    label = _era_label(v, decades)
                else:
                    label = support_label(v, text, None, checkable=True)
                rows.append(dict(user_id=r.user_id, attribute=col, value=v, label=label))
    return pd.DataFrame(rows, columns=["user_id", "attribute", "value", "label"])


def _era_label(value: str, decades: set) -> str:
    """An era against the decades of the history: ``"1990s"``, ``"the 90s"``, ``"1995"``."""
    m = re.search(r"\b(1[89]\d0|20\d0)s\b|\b(\d0)s\b|\b(1[89]\d\d|20\d\d)\b", str(value))
    if not m:
        return "unverifiable"
    if m.group(1):
        dec = int(m.group(1))
    elif m.group(2):
        dec = int(m.group(2)) + (2000 if int(m.group(2)) < 30 else 1900)
    else:
        dec = int(m.group(3)) // 10 * 10
    return "supported" if dec in decades else "unsupported"


# --------------------------------------------------------------------------- stand-in heuristics
#: general-English cue words per genre, used by the offline keyword tagger (not an LLM)
GENRE_CUES = {
    "Drama": r"drama|dramatic", "Comedy": r"comed|comic|farce|funny", "Action": r"action",
    "Thriller": r"thriller|suspense", "Romance": r"roman|love story",
    "Adventure": r"adventure|quest", "Children's": r"children|kids|family film",
    "Crime": r"crime|gangster|caper", "Sci-Fi": r"sci-fi|science-fiction|science fiction",
    "Horror": r"horror|ghost story", "War": r"\bwar\b|wartime|battlefield",
    "Mystery": r"mystery|whodunit|detective puzzle", "Musical": r"musical|song-and-dance",
    "Animation": r"animat|cartoon", "Documentary": r"documentary|non-fiction",
    "Western": r"western|cowboy|frontier saga", "Film-Noir": r"\bnoir\b",
    "Fantasy": r"fantasy|fairy tale|sorcery",
}
#: general-English cue words per mood, for the same tagger
MOOD_CUES = {
    "light-hearted": r"light-hearted|breezy|funny|playful", "dark": r"\bdark\b|grim|bleak|brood",
    "tense": r"tense|gripping|suspenseful|nerve", "uplifting": r"uplifting|heartwarming|hopeful"
    r"|inspiring", "melancholic": r"melanchol|bittersweet|wistful|mournful",
    "whimsical": r"whimsical|quirky|dreamlike|offbeat",
    "thoughtful": r"thoughtful|reflective|cerebral|slow-burning",
}


def _listed(prompt: str, label: str) -> list[str]:
    m = re.search(label + r":\s*(.+?)\.?\s*$", prompt, re.M)
    return [s.strip() for s in m.group(1).split(",")] if m else []


def _stand_in_attributes(req) -> dict:
    """Offline keyword tagger over the prompt's description (reads the prompt only)."""
    prompt = req.ctx.prompt
    genres = _listed(prompt, "Genres to choose from")
    moods = _listed(prompt, "Moods to choose from")
    title = re.search(r"^Film:\s*(.+)$", prompt, re.M)
    title = title.group(1).strip() if title else ""
    desc = re.search(r"^Description:\s*(.+)$", prompt, re.M)
    desc = desc.group(1).strip() if desc else ""
    low = desc.lower()
    found = [g for g in genres
             if re.search(GENRE_CUES.get(g, re.escape(g.lower())), low)]
    hits = {}
    for m in moods:  # the mood whose cue comes first in the description
        cue = re.search(MOOD_CUES.get(m, re.escape(m.lower())), low)
        if cue:
            hits[m] = cue.start()
    mood = min(hits, key=hits.get) if hits else ""
    keywords = req.ctx.keywords(5, text=desc) if desc else []
    audience = ("families" if {"Children's", "Animation"} & set(found)
                else "adults" if mood == "dark" or "Horror" in found else
                ("general" if desc else ""))
    summary = (re.split(r"(?<=\.)\s", desc)[0] if desc else "")
    return {"genres": found, "mood": mood, "themes": keywords[:3], "audience": audience,
            "keywords": keywords, "summary": summary}


_HISTORY = re.compile(r"^- (.+?)(?:\((\d{4})\))?\s*\|\s*(.*?)\s*\|\s*rated ([\d.]+)/5", re.M)


def _stand_in_profile(req) -> dict:
    """Offline counter over the history lines of the prompt (reads the prompt only)."""
    liked: dict[str, float] = {}
    disliked: dict[str, float] = {}
    decades: dict[str, int] = {}
    rows = _HISTORY.findall(req.ctx.prompt)
    for _, year, genres, rating in rows:
        r = float(rating)
        for g in filter(None, (s.strip() for s in genres.split(","))):
            if r >= 4:
                liked[g] = liked.get(g, 0) + 1
            elif r <= 2:
                disliked[g] = disliked.get(g, 0) + 1
        if year:
            dec = f"{int(year) // 10 * 10}s"
            decades[dec] = decades.get(dec, 0) + 1
    likes = sorted(liked, key=lambda g: -liked[g])[:3]
    dislikes = [g for g in sorted(disliked, key=lambda g: -disliked[g]) if g not in likes][:2]
    eras = [d for d in sorted(decades, key=lambda d: -decades[d])
            if decades[d] >= 0.25 * max(len(rows), 1)][:2]
    summary = (f"Enjoys {', '.join(likes) or 'many kinds of films'}"
               + (f"; rarely enjoys {', '.join(dislikes)}" if dislikes else "")
               + (f"; mostly films from the {' and '.join(eras)}." if eras else "."))
    return {"likes": likes, "dislikes": dislikes, "eras": eras, "summary": summary}


register_handler("item_attributes", _stand_in_attributes)
register_handler("user_profile", _stand_in_profile)
