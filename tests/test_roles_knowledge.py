"""Knowledge augmentation: attribute requests, grounding, agreement, fill rates, profiles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit.llm import get_llm
from perso_kit.roles import knowledge as K


class _FakeReply:
    def __init__(self, data=None, error=None):
        self.data, self.error, self.ok = data, error, error is None


class _FakeLLM:
    """Answers each request with the next canned value (to inject faults and bad genres)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def map(self, requests, **kw):
        self.requests.extend(requests)
        return [self.answers.pop(0) for _ in requests]


ITEMS = pd.DataFrame({"item_id": [1, 2, 3],
                      "title": ["A (1990)", "B (1991)", "C (1992)"],
                      "genres": [("Drama",), ("Comedy", "Drama"), ("Horror",)],
                      "description": ["", "", ""]})


def _attrs(genres, mood="dark"):
    return dict(genres=genres, mood=mood, themes=["x"], audience="adults", keywords=["k"],
                summary="s")


def test_ungrounded_genres_are_dropped_and_failures_kept():
    llm = _FakeLLM([_FakeReply(_attrs(["drama", "Space Opera"])),
                    _FakeReply(_attrs(["Comedy"], mood="grumpy")),
                    _FakeReply(error="timeout")])
    out = K.enrich_items(llm, ITEMS, progress=False)
    assert out["genres"].tolist() == [("Drama",), ("Comedy",), ()]
    assert out["ungrounded"].tolist() == [1, 0, 0]
    assert out["mood"].tolist() == ["dark", "", ""]          # a mood outside the list is blanked
    assert out["ok"].tolist() == [True, True, False]
    assert out.loc[2, "error"] == "timeout"
    # the prompt names the vocabulary, never the item's own catalog genres
    prompt = llm.requests[0]["messages"][0]["content"]
    assert "Genres to choose from: Comedy, Drama, Horror." in prompt
    assert "Drama" not in llm.requests[0]["messages"][1]["content"]


def test_agreement_hand_computed():
    attrs = pd.DataFrame({"item_id": [1, 2, 3],
                          "genres": [("Drama",), ("Comedy",), ("Horror", "Drama")],
                          "mood": ["dark", "", "tense"]})
    items = ITEMS.assign(mood=["dark", "dark", "dark"])
    t = K.attribute_agreement(attrs, items).set_index("attribute")
    # Drama: LLM says items 1 and 3, catalog has 1 and 2 -> precision 1/2, recall 1/2
    assert t.loc["Drama", ["precision", "recall"]].tolist() == [0.5, 0.5]
    assert t.loc["Comedy", ["precision", "recall"]].tolist() == [1.0, 1.0]
    # micro: tp = 3 (Drama 1, Comedy 2, Horror 3), fp = 1, fn = 1
    assert t.loc["all genres (micro)", ["precision", "recall", "support"]].tolist() == [
        0.75, 0.75, 4]
    # mood: given for items 1 and 3, right for 1 only
    assert t.loc["mood", "precision"] == 0.5 and t.loc["mood", "support"] == 2


def test_fill_rates_count_missing_catalog_values():
    items = ITEMS.assign(genres=[("Drama",), (), ("Horror",)])
    attrs = pd.DataFrame({"item_id": [1, 2, 3], "genres": [("Drama",), ("Comedy",), ()],
                          "mood": ["dark", "", "tense"], "themes": [(), (), ()],
                          "audience": ["", "", ""], "keywords": [(), (), ()],
                          "summary": ["a", "b", ""]})
    t = K.fill_rates(attrs, items).set_index("attribute")
    assert t.loc["genres", "catalog_missing"] == pytest.approx(1 / 3)
    assert t.loc["genres", "filled_where_missing"] == 1.0      # item 2 filled by the LLM
    assert t.loc["mood", "catalog_missing"] == 1.0               # no mood column: all missing
    assert t.loc["mood", "filled_where_missing"] == pytest.approx(2 / 3)
    assert t.loc["themes", "filled_where_missing"] == 0.0       # missing everywhere, never filled


def test_stand_in_tagger_reads_only_the_description_in_the_prompt():
    llm = get_llm(backend="offline")
    items = pd.DataFrame({"item_id": [1, 2],
                          "title": ["Odd Fellows (1990)", "Night Garden (1985)"],
                          "genres": [("Horror",), ("Comedy",)],   # deliberately not the text
                          "description": ["A breezy comic romp with a love story.", ""]})
    out = K.enrich_items(llm, items, genres=["Comedy", "Romance", "Horror"], progress=False)
    assert out.loc[0, "genres"] == ("Comedy", "Romance")   # from the words, not the catalog
    assert out.loc[0, "mood"] == "light-hearted"
    assert out.loc[0, "summary"] == "A breezy comic romp with a love story."
    assert out.loc[1, "genres"] == ()                       # a title alone: nothing to read
    assert out["ok"].all()


def test_profiles_in_words_from_history(demo):
    text = K.history_lines(demo, 1, n=5)
    assert text.count("\n") == 4 and "user" not in text.lower()
    h = demo.history(1, n=20)
    liked = h[h["rating"] >= 4]
    counts = pd.Series([g for gs in liked["genres"] for g in gs]).value_counts()
    prof = K.user_profiles(get_llm(backend="offline"), demo, [1, 2], progress=False)
    assert prof["ok"].all()
    # the stand-in counts genres of the well-rated lines of the prompt
    assert prof.loc[0, "likes"][0] == counts.index[0]
    assert prof.loc[0, "text"].startswith("Likes: ")
    assert "Dislikes" not in prof.loc[0, "text"]


def test_profile_text():
    assert K.profile_text(["Comedy", "Drama"], [], ["1990s"], "Fun.") == \
        "Likes: Comedy, Drama. Eras: 1990s. Fun."


CHECKABLE = pd.DataFrame({
    "item_id": [1, 2, 3], "title": ["Harbor Lights (1993)", "Night Train (1988)", "Zed (2001)"],
    "year": [1993, 1988, 2001], "genres": [("Drama",), ("Thriller",), ("Comedy",)],
    "description": ["A fisherman rebuilds his family's boat after a storm.",
                    "Strangers on a night train share a secret.", ""]})


def _free_text(themes, audience=("", "", ""), summary=("", "", "")):
    return pd.DataFrame({"item_id": [1, 2, 3], "genres": [(), (), ()], "mood": ["", "", ""],
                         "themes": list(themes), "audience": list(audience),
                         "keywords": [(), (), ()], "summary": list(summary)})


def test_invented_attributes_are_unsupported_and_fill_no_gap():
    planted = _free_text(themes=[("winner of the 1988 Golden Lantern award",),
                             ("space pirates",), ("time travel",)])
    labels = K.attribute_support(planted, CHECKABLE).set_index("item_id")["label"]
    # item 1: an invented award (a year the catalog does not hold); item 2: words not in its
    # description; item 3: no description to check against -> unverifiable
    assert labels.tolist() == ["unsupported", "unsupported", "unverifiable"]
    fill = K.fill_rates(planted, CHECKABLE.assign(themes=[(), (), ()])).set_index("attribute")
    assert fill.loc["themes", "llm_filled"] == 1.0
    assert fill.loc["themes", "filled_where_missing"] == pytest.approx(1 / 3)
    assert fill.loc["themes", ["supported", "unverifiable", "unsupported"]].tolist() == \
        pytest.approx([0.0, 1 / 3, 2 / 3], abs=1e-4)


def test_attributes_taken_from_the_catalog_text_are_supported():
    clean = _free_text(themes=[("family", "boats"), ("secrets on a train",), ("friendship",)],
                   audience=["families", "adults", "everyone"],
                   summary=["A fisherman rebuilds a boat.", "A secret on a night train.", ""])
    labels = K.attribute_support(clean, CHECKABLE)
    themes = labels[labels.attribute == "themes"]["label"].tolist()
    assert themes == ["supported", "supported", "supported", "unverifiable"]
    # an audience is a judgement: not in the text is unverifiable, never unsupported
    assert set(labels[labels.attribute == "audience"]["label"]) <= {"supported", "unverifiable"}
    assert (labels["label"] != "unsupported").all()
    fill = K.fill_rates(clean, CHECKABLE.assign(themes=[(), (), ()])).set_index("attribute")
    assert fill.loc["themes", "filled_where_missing"] == 1.0


def test_profiles_are_checked_against_the_history_shown(demo):
    h = demo.history(1, n=20)
    genre = h["genres"].explode().value_counts().index[0]
    decade = f"{int(h['year'].dropna().iloc[-1]) // 10 * 10}s"
    absent = next(f"{d}s" for d in range(1900, 2030, 10)
                  if d not in {int(y) // 10 * 10 for y in h["year"].dropna()})
    prof = pd.DataFrame({"user_id": [1], "likes": [(genre, "submarine westerns on the moon")],
                         "dislikes": [()], "eras": [(decade, absent)], "summary": [""]})
    labels = K.profile_support(prof, demo, n=20)["label"].tolist()
    assert labels == ["supported", "unsupported", "supported", "unsupported"]
    clean = K.user_profiles(get_llm(backend="offline"), demo, demo.user_ids[:10],
                            progress=False)
    shares = K.support_shares(K.profile_support(clean, demo)).set_index("attribute")
    assert shares.loc["all", "unsupported"] == 0.0 and shares.loc["all", "supported"] == 1.0
