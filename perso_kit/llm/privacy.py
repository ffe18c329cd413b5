"""What leaves the machine: titles-only prompts, a guard, and an audit of what was sent.

* :func:`describe_history` writes a user's history for a prompt. With ``titles_only=True`` (the
  default) it holds titles and years and nothing else: no user id, no demographics, no ratings,
  no dates.
* :func:`check_titles_only` is the guard an :class:`~perso_kit.llm.client.LLM` built with
  ``titles_only=True`` (or ``PERSO_KIT_LLM_TITLES_ONLY=1``) runs before every call: a request
  that names a user id or a demographic field is refused, and nothing is sent.
* :func:`audit_sent` reads ``llm.sent_log()`` (the record of every request body sent, without
  the key) and counts the requests that mention each kind of personal data.

>>> check_titles_only([{"role": "user", "content": "user_id: 42, age: 31. Liked: Alien (1979)"}])
"mentions a user id ('user_id: 42')"
>>> check_titles_only([{"role": "user", "content": "Liked: Alien (1979)"}]) is None
True
"""
from __future__ import annotations

import re

import pandas as pd

DEMOGRAPHIC_FIELDS = ("age", "gender", "sex", "occupation", "zip", "zip_code", "zipcode",
                      "postcode", "income", "ethnicity", "religion", "location", "email")
_USER_ID = re.compile(r"\buser(?:[ _-]?id)?\s*(?:[:=#]|is|no\.?|number)?\s*#?\s*\d+\b", re.I)
_FIELD = re.compile(r"\b(" + "|".join(DEMOGRAPHIC_FIELDS) + r")\s*[:=]\s*\S+", re.I)


def _text(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        parts.append(c or "")
    return "\n".join(parts)


def check_titles_only(messages: list[dict]) -> str | None:
    """None if the messages hold no user id and no ``field: value`` demographic; else what was
    found, in words."""
    text = _text(messages)
    m = _USER_ID.search(text)
    if m:
        return f"mentions a user id ({m.group(0)!r})"
    m = _FIELD.search(text)
    if m:
        return f"mentions a demographic field ({m.group(0)!r})"
    return None


def describe_history(dataset, user_id, n: int = 10, titles_only: bool = True,
                     ratings: bool = False) -> str:
    """A user's last ``n`` items as prompt lines, oldest first.

    ``titles_only=True``: ``- Title (year)`` lines only. ``titles_only=False`` adds the user id,
    the user's demographic columns, and (with ``ratings=True``) each rating -- what a privacy
    lesson compares against.
    """
    hist = dataset.history(user_id, n=n)
    lines = []
    if not titles_only:
        row = dataset.users[dataset.users["user_id"] == user_id]
        info = {k: v for k, v in (row.iloc[0].to_dict() if len(row) else {}).items()
                if k != "user_id"}
        lines.append(f"user_id: {user_id}" + "".join(f", {k}: {v}" for k, v in info.items()))
    for _, r in hist.iterrows():
        line = f"- {r['title']}"
        if not titles_only and ratings:
            line += f" (rated {r['rating']:g}/5)"
        lines.append(line)
    return "\n".join(lines)


def audit_sent(sent: pd.DataFrame) -> pd.DataFrame:
    """How many sent requests mention a user id or each demographic field.

    ``sent`` is ``llm.sent_log()``. Returns ``what, requests, share``.
    """
    bodies = sent["body"].astype(str) if len(sent) else pd.Series([], dtype=str)
    rows = [{"what": "user id", "requests": int(bodies.str.contains(_USER_ID).sum())}]
    for f in DEMOGRAPHIC_FIELDS:
        pattern = re.compile(r"\b" + f + r"\s*[:=]", re.I)
        n = int(bodies.str.contains(pattern).sum())
        if n:
            rows.append({"what": f, "requests": n})
    out = pd.DataFrame(rows)
    out["share"] = out["requests"] / max(1, len(bodies))
    return out
