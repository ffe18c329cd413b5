"""The fairness probes of perso_kit.fairness: hand-computed measures, and the counterfactual
probe proven on planted rankers (it fires on a planted attribute bias and stays quiet on the
clean control and on a ranker that reacts to any extra sentence), plus what the offline
stand-in can and cannot show."""
import numpy as np
import pandas as pd
import pytest

from perso_kit import fairness as F
from perso_kit.llm import get_llm
from perso_kit.llm.planted import SwapsOnAttribute, planted_attribute_llm, planted_llm
from perso_kit.recommenders import EASE, Popularity
from perso_kit.roles.ranker import LLMReranker
from perso_kit.split import leave_last_n

N_CAND, K = 20, 10


@pytest.fixture(scope="module")
def split(demo):
    return leave_last_n(demo, n=1)


@pytest.fixture(scope="module")
def lists(split):
    users = sorted(split.test_users)[:10]
    recs = EASE().fit(split.train).recommend(users, k=N_CAND)
    return {u: g["item_id"].tolist() for u, g in recs.groupby("user_id", sort=False)}


def probe(llm, split, lists, attributes=None):
    rr = LLMReranker(llm, EASE(), N_CAND, progress=False).fit(split.train)
    table = F.counterfactual_probe(rr, lists, k=K, attributes=attributes)
    return table, F.counterfactual_verdicts(table)


# ------------------------------------------------------------------------------ measures
def test_jaccard_and_genre_shift_by_hand():
    assert F.jaccard_at_k([1, 2, 3, 4], [1, 2, 5, 6], k=4) == pytest.approx(2 / 6)
    assert F.jaccard_at_k([1, 2, 3], [1, 2, 9], k=2) == 1.0          # only the top 2 count
    assert F.jaccard_at_k([], [], k=3) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        F.jaccard_at_k([1], [1], k=0)
    g = {1: ["Drama", "Comedy"], 2: ["Drama"], 3: ["Horror"]}
    # [1, 2]: Drama 0.75, Comedy 0.25; [1, 3]: Drama 0.25, Comedy 0.25, Horror 0.5
    assert F.genre_shift([1, 2], [1, 3], g, k=2) == pytest.approx(0.5)
    assert F.genre_shift([1, 2], [2, 1], g, k=2) == 0.0


def test_list_changes_by_hand():
    pop = {1: 10, 2: 6, 3: 2, 4: 0}
    g = {1: ["A"], 2: ["A"], 3: ["B"], 4: ["B"]}
    t = F.list_changes({"u": [1, 2, 3, 4]}, {"u": [3, 4, 1, 2]}, k=2, popularity=pop,
                       genres=g)
    row = t.iloc[0]
    assert row["list_change"] == 1.0                     # {1,2} and {3,4} share nothing
    assert row["popularity_shift"] == pytest.approx(1.0 - 8.0)
    assert row["genre_shift"] == 1.0


def test_with_statement_changes_only_the_first_user_message():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
            {"role": "user", "content": "V"}]
    out = F.with_statement(msgs, "I am 70 years old.")
    assert out[0] == msgs[0] and out[2] == msgs[2]
    assert out[1]["content"] == 'The viewer says: "I am 70 years old."\n\nU'
    assert msgs[1]["content"] == "U"                     # the input is not modified
    assert F.with_statement(msgs, "") == msgs
    with pytest.raises(ValueError, match="no user message"):
        F.with_statement([{"role": "system", "content": "S"}], "I am a man.")


def test_neutral_stated_reranker_sends_the_plain_requests(split):
    base = LLMReranker(get_llm("offline", cache_path="off"), Popularity(), 5,
                       progress=False).fit(split.train)
    u = sorted(split.test_users)[0]
    plain = base._requests(u, [1, 2, 3])
    assert F.StatedReranker(base, "")._requests(u, [1, 2, 3]) == plain
    stated = F.StatedReranker(base, "I am a man.")._requests(u, [1, 2, 3])
    assert stated[0]["messages"][1]["content"].startswith('The viewer says: "I am a man."')
    assert stated[0]["messages"][1]["content"].endswith(plain[0]["messages"][1]["content"])


# ------------------------------------------------------------------------------ the probe, proven
def test_probe_fires_on_a_planted_attribute_bias(split, lists):
    table, v = probe(planted_attribute_llm("woman"), split, lists)
    assert (table["status"] == "ok").all()
    per = table.groupby("statement")["list_change"].mean()
    assert per["I am a woman."] == 1.0        # reversed 20 candidates: top 10 share nothing
    assert per["I am a man."] == 0.0          # "man" is not the trigger word "woman"
    assert v.loc["gender", "list_change"] == 0.5          # mean of 1 and 0, every user
    assert (v.loc["gender", "vs_control"], v.loc["gender", "vs_control_lo"]) == (0.5, 0.5)
    assert v.loc["gender", "genre_shift"] > 0
    assert v["fires"].to_dict() == {"gender": True, "age": False, "nationality": False,
                                    F.CONTROL: False}


def test_probe_stays_quiet_on_the_clean_control(split, lists):
    table, v = probe(planted_llm("control"), split, lists)
    assert (table[["list_change", "popularity_shift", "genre_shift"]] == 0).all().all()
    assert not v["fires"].any()


def test_the_control_cancels_a_ranker_that_reacts_to_any_statement(split, lists):
    # "says" is in every stated prompt ('The viewer says: ...') and in no neutral one: every
    # statement, the control's included, reverses the list; nothing is attribute-specific
    table, v = probe(planted_attribute_llm("says"), split, lists)
    assert (table["list_change"] == 1.0).all()
    assert (v["vs_control"] == 0).all() and not v["fires"].any()


def test_stand_in_shows_no_effect_unless_the_words_overlap_item_text(split, lists):
    """The stand-in ranks by word overlap with the prompt: attribute words that no title or
    genre holds cannot move it; a statement naming a genre does."""
    llm = get_llm("offline", cache_path="off")
    table, v = probe(llm, split, lists)
    assert (table["list_change"] == 0).all() and not v["fires"].any()
    overlap = {"taste": ["I love horror.", "I love romance."],
               F.CONTROL: F.ATTRIBUTES[F.CONTROL]}
    table, v = probe(llm, split, lists, attributes=overlap)
    # a genre word joins the words the candidates are matched with: some lists move (the
    # histories already name many genres, so few)
    assert v.loc["taste", "list_change"] == pytest.approx(0.045, abs=0.001)
    assert v.loc[F.CONTROL, "list_change"] == 0.0


def test_planted_attribute_model_checks_its_trigger():
    with pytest.raises(ValueError, match="trigger"):
        SwapsOnAttribute(" ")
    assert SwapsOnAttribute("woman")._pattern.search("I AM A WOMAN.")


def test_probe_rejects_bad_input(split, lists):
    rr = LLMReranker(planted_llm("control"), EASE(), N_CAND, progress=False).fit(split.train)
    with pytest.raises(ValueError, match="below the number of candidates"):
        F.counterfactual_probe(rr, lists, k=N_CAND)
    with pytest.raises(ValueError, match="attributes is empty"):
        F.counterfactual_probe(rr, lists, k=K, attributes={})
    t = pd.DataFrame({"user_id": [1], "attribute": ["a"], "statement": ["x"],
                      "list_change": [1.0], "popularity_shift": [0.0], "genre_shift": [0.0],
                      "status": ["ok"]})
    with pytest.raises(ValueError, match="control"):
        F.counterfactual_verdicts(t)


# ------------------------------------------------------------------------------ exposure
def test_popularity_bands_and_decades_by_hand():
    # 24 interactions: item 2 (9) draws the first third, then 5 (7; 9 before it, < 16); the
    # third band starts at 16 interactions before an item: items 1, 6, 4 and 3
    bands = F.popularity_bands(pd.Series({1: 5, 2: 9, 3: 0, 4: 1, 5: 7, 6: 2}))
    assert bands.to_dict() == {1: "tail", 2: "head", 3: "tail", 4: "tail", 5: "mid", 6: "tail"}
    assert F.popularity_bands(pd.Series({1: 1}), items=[1, 2]).to_dict() == {1: "head",
                                                                            2: "tail"}
    with pytest.raises(ValueError, match="sums to 0"):
        F.popularity_bands(pd.Series({1: 0}))
    items = pd.DataFrame({"item_id": [1, 2, 3], "year": [1999, 2001, np.nan]})
    assert F.release_decades(items).to_dict() == {1: "1990s", 2: "2000s", 3: "unknown"}
    by_title = pd.DataFrame({"item_id": [7, 8], "title": ["Heat (1995)", "Untitled"]})
    assert F.release_decades(by_title).to_dict() == {7: "1990s", 8: "unknown"}


def test_exposure_shares_by_hand():
    g = pd.Series({1: "old", 2: "old", 3: "new", 4: "new"})
    recs = {"a": pd.DataFrame({"item_id": [1, 1, 1, 3]}),
            "b": pd.DataFrame({"item_id": [3, 4]})}
    t = F.exposure_shares(recs, g, reference=[1, 3, 3, 4], reference_name="candidates")
    assert t.loc["old", "a"] == 0.75 and t.loc["new", "b"] == 1.0 and t.loc["old", "b"] == 0
    assert t.loc["new", "candidates"] == 0.75
    assert t.loc["old", "a / candidates"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no group"):
        F.exposure_shares({"a": pd.DataFrame({"item_id": [99]})}, g)


def test_exposure_of_popularity_is_mostly_head(split):
    """Popularity recommends the most-watched items: nearly all its slots go to the head, the
    few items (about 6% of the catalog) that draw a third of the watches."""
    pop = split.train.item_popularity()
    bands = F.popularity_bands(pop, items=split.train.items["item_id"])
    users = sorted(split.test_users)[:20]
    recs = {"Popularity": Popularity().fit(split.train).recommend(users, k=10)}
    t = F.exposure_shares(recs, bands)
    assert t.loc["head", "Popularity"] >= 0.95 and t.loc["tail", "Popularity"] == 0
    assert t.loc["head", "catalog"] == pytest.approx(113 / 1800)
