"""The relational faithfulness check earns its place: a planted model whose explanations claim
that the cited history films share an attribute they lack is caught, and a clean control whose
explanations claim only what the catalog says is shared is not flagged.

Both run through :func:`explain_recommendations`, the path the notebook uses, with scripted
"models" in place of an LLM (answers built from the catalog, in the order of the requests).
"""
from __future__ import annotations

import pandas as pd
import pytest

from perso_kit.llm import Reply
from perso_kit.llm.reply import Usage
from perso_kit.recommenders import ItemKNN
from perso_kit.roles.explainer import (explain_recommendations, faithfulness_summary,
                                       item_attributes, relational_truth)
from perso_kit.split import leave_last_n

# the ways a claim of sharing is phrased: the stand-in's, the template's, and two freer ones
FORMS = ["{rec} shares {a} with {h}, which you watched.",
         "Because you watched {h}, and it is also {a}.",
         "Like {h}, {rec} is {a}.",
         "You enjoyed {h}; this one is {a} too."]


@pytest.fixture(scope="module")
def world(demo):
    split = leave_last_n(demo, n=1)
    train = split.train
    knn = ItemKNN(n_neighbors=50).fit(train)
    recs = knn.recommend(split.test_users[:40], k=3)
    return train, recs


def written(row) -> list[str]:
    """An item's attributes as the catalog writes them: genres, mood, themes."""
    return list(row["genres"]) + [row["mood"]] + list(row["themes"])


def scripted(train, recs, shared: bool) -> list[dict | None]:
    """One answer per (user, item) pair of ``recs``: cite a film of the prompt's history and an
    attribute of the recommended item that this film has (``shared=True``) or lacks
    (``shared=False``); ``None`` when the history offers no such pair."""
    items = train.items.set_index("item_id")
    pairs = recs[["user_id", "item_id"]].drop_duplicates().to_records(index=False).tolist()
    out = []
    for n, (u, i) in enumerate(pairs):
        hist = train.history(u, n=10)
        rec = items.loc[i]
        attrs = written(rec)
        attrs = attrs[n % len(attrs):] + attrs[:n % len(attrs)]   # genres, mood and themes
        found = None
        for h in reversed(hist["item_id"].tolist()):
            has = item_attributes(items, h)
            for a in attrs:
                if (a.lower() in has) == shared:
                    found = (items.loc[h, "title"], a)
                    break
            if found:
                break
        if found is None:
            out.append(None)
            continue
        h, a = found
        text = FORMS[n % len(FORMS)].format(rec=rec["title"], h=h, a=a)
        out.append({"explanation": text, "cited_history": [h], "cited_attributes": [a]})
    return out


class Scripted:
    """A stand-in for an LLM client that answers a fixed list, in request order."""

    def __init__(self, answers):
        self.answers = answers

    def map(self, requests, **kw):
        assert len(requests) == len(self.answers)
        return [Reply(data=a, usage=Usage(10, 10)) if a is not None
                else Reply(error="no plant for this pair", error_kind="invalid_json")
                for a in self.answers]


def scripted_rows(train, recs, shared: bool) -> pd.DataFrame:
    table = explain_recommendations(Scripted(scripted(train, recs, shared)), train, recs,
                                    progress=False)
    return table[(table.source == "LLM") & table.call_ok]


def test_planted_false_shared_attributes_are_caught(world):
    train, recs = world
    rows = scripted_rows(train, recs, shared=False)
    assert len(rows) >= 100                     # of 120 pairs, a plant exists for most
    # the plant is isolated: citations are watched films, attributes are true of the item...
    assert rows["history_ok"].all() and rows["attributes_ok"].all()
    # ...and only the relation is false: caught with a margin, in every phrasing
    assert rows["claims_shared"].mean() >= 0.95
    assert (~rows["relation_ok"]).mean() >= 0.95 and (~rows["faithful"]).mean() >= 0.95
    by_form = (~rows["relation_ok"]).groupby(rows["explanation"].map(_form)).mean()
    assert len(by_form) == len(FORMS) and (by_form >= 0.95).all()
    # genres as well as moods and themes are planted
    genres = {g for gs in train.items["genres"] for g in gs}
    assert 0 < rows["cited_attributes"].map(lambda a: a[0] in genres).mean() < 1
    # every flagged pair names the planted film and attribute
    first = rows.iloc[0]
    assert first["bad_relations"] == [(first["cited_history"][0], first["cited_attributes"][0])]


def test_clean_control_is_not_flagged(world):
    train, recs = world
    rows = scripted_rows(train, recs, shared=True)
    assert len(rows) >= 100
    # the control claims sharing just as often, and every claim is true: no false alarm
    assert rows["claims_shared"].all()
    assert rows["relation_ok"].all() and rows["faithful"].all()
    truth = relational_truth(rows)
    assert truth.loc["LLM", "rate"] == 1.0 and truth.loc["LLM", "claims"] == len(rows)
    summary = faithfulness_summary(rows)
    assert summary.loc["LLM", "relation_ok"] == 1.0


def _form(text: str) -> int:
    """Which of :data:`FORMS` wrote ``text``."""
    if " shares " in text:
        return 0
    if text.startswith("Because"):
        return 1
    if text.startswith("Like"):
        return 2
    return 3
