"""The LLM as explainer: faithfulness checks catch planted errors; kNN drivers add up to the
kNN score; template and LLM explanations are checked alike; the widget flags failures."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from live_checks import assert_calls_succeeded
from perso_kit.llm import Reply, get_llm
from perso_kit.llm.reply import Usage
from perso_kit.recommenders import ItemKNN
from perso_kit.roles.explainer import (check_explanation, explain_recommendations,
                                       explanation_messages, faithfulness_summary,
                                       item_attributes, knn_drivers, relational_truth,
                                       template_explanation)
from perso_kit.split import leave_last_n


@pytest.fixture(scope="module")
def split(demo):
    return leave_last_n(demo, n=1)


@pytest.fixture(scope="module")
def knn(split):
    return ItemKNN(n_neighbors=50).fit(split.train)


@pytest.fixture(scope="module")
def case(split, knn):
    """One user, their history ids, a recommended item, a catalog item not in the history."""
    train = split.train
    u = int(split.test_users[0])
    hist = train.history(u)
    rec = int(knn.recommend([u], k=1)["item_id"].iloc[0])
    not_seen = int(train.items.loc[~train.items.item_id.isin(hist.item_id), "item_id"].iloc[0])
    return u, set(hist["item_id"].tolist()), hist, rec, not_seen


def test_checks_catch_planted_false_citations(split, case):
    train = split.train
    u, hist_ids, hist, rec, not_seen = case
    items = train.items.set_index("item_id")
    attrs = item_attributes(items, rec)
    true_title = hist["title"].iloc[-1]
    true_attr = items.loc[rec, "genres"][0]
    good = check_explanation([true_title], [true_attr], "", hist_ids, attrs, train.items, rec)
    assert good.faithful and good.cites_history and good.cited_ids == [hist["item_id"].iloc[-1]]
    # a history title inside prose, after other words, is found and accepted when it really
    # has the genre the text says it shares; a history film without it fails the relation
    has = hist[hist["genres"].map(lambda g: true_attr in g)]
    lacks = hist[hist["genres"].map(lambda g: true_attr not in g)]
    text = f"It shares {true_attr} with {has['title'].iloc[-1]}, which you watched."
    c = check_explanation([], [], text, hist_ids, attrs, train.items, rec)
    assert c.faithful and c.cited_ids == [has["item_id"].iloc[-1]]
    text = f"It shares {true_attr} with {lacks['title'].iloc[-1]}, which you watched."
    c = check_explanation([], [], text, hist_ids, attrs, train.items, rec)
    assert c.history_ok and c.attributes_ok and not c.relation_ok and not c.faithful
    assert c.bad_relations == [(lacks["title"].iloc[-1], true_attr)]
    # a real catalog title the user never watched
    wrong = items.loc[not_seen, "title"]
    c = check_explanation([true_title, wrong], [true_attr], "", hist_ids, attrs, train.items, rec)
    assert not c.history_ok and c.bad_citations == [wrong] and not c.faithful
    # a title that does not exist, written only in the text
    c = check_explanation([], [true_attr], f"Like Zorblax Returns (1987), it soars.", hist_ids,
                          attrs, train.items, rec)
    assert c.bad_citations == ["Zorblax Returns (1987)"] and not c.faithful
    # an attribute the item does not have
    false_attr = next(g for g in ["Western", "Documentary", "Musical", "Film-Noir", "Horror"]
                      if g.lower() not in attrs)
    c = check_explanation([true_title], [true_attr, false_attr], "", hist_ids, attrs,
                          train.items, rec)
    assert c.history_ok and not c.attributes_ok and c.bad_attributes == [false_attr]
    # naming the recommended item itself is not a citation; extra knowledge counts as true
    c = check_explanation([items.loc[rec, "title"]], ["slow-burn"], "", hist_ids,
                          item_attributes(items, rec, {rec: ["Slow-burn"]}), train.items, rec)
    assert c.faithful and c.cited_ids == []


# ------------------------------------------------------------------ a six-film catalog
# Arrival (id 6) is recommended to a viewer who watched Alien, Heat, Up and Drama Queen.
TINY = pd.DataFrame({
    "item_id": [1, 2, 3, 4, 5, 6],
    "title": ["Alien (1979)", "Heat (1995)", "Saw (2004)", "Up (2009)", "Drama Queen (1990)",
              "Arrival (2016)"],
    "year": [1979, 1995, 2004, 2009, 1990, 2016],
    "genres": [("Horror", "Sci-Fi"), ("Crime", "Thriller"), ("Horror", "Thriller"),
               ("Animation", "Comedy"), ("Comedy",), ("Sci-Fi", "Drama")],
    "mood": ["tense", "tense", "dark", "uplifting", "light-hearted", "thoughtful"],
    "themes": [("space", "survival"), ("heist",), ("survival",), ("family",), (), ("space",)]})
SEEN = {1, 2, 4, 5}
ARRIVAL = {"sci-fi", "drama", "thoughtful", "space"}


def tiny(cites, attrs, text="", **kw):
    return check_explanation(cites, attrs, text, SEEN, ARRIVAL, TINY, 6, **kw)


def test_each_failure_kind_on_a_hand_made_catalog():
    # true on all three counts: Alien is in the history, Arrival is Sci-Fi, Alien is Sci-Fi
    c = tiny([], ["Sci-Fi"], "Arrival (2016) shares Sci-Fi with Alien (1979), which you watched.")
    assert c.faithful and c.cited_ids == [1] and c.claimed_shared == ["Sci-Fi"]
    assert c.history_ok and c.attributes_ok and c.relation_ok and c.claims_shared
    # history: Saw is in the catalog but not watched; Zorblax is in neither
    c = tiny(["Saw (2004)", "Zorblax (1987)"], ["Sci-Fi"])
    assert c.bad_citations == ["Saw (2004)", "Zorblax (1987)"]
    assert (c.history_ok, c.attributes_ok, c.relation_ok, c.faithful) == (False, True, True, False)
    # attribute: Arrival is not Horror
    c = tiny(["Alien (1979)"], ["Horror"])
    assert c.bad_attributes == ["Horror"]
    assert (c.history_ok, c.attributes_ok, c.relation_ok, c.faithful) == (True, False, True, False)
    # relation: both citations are watched and Sci-Fi is true of Arrival, but Heat is no Sci-Fi
    c = tiny([], ["Sci-Fi"], "Arrival (2016) shares Sci-Fi with Alien (1979) and Heat (1995).")
    assert c.cited_ids == [1, 2] and c.bad_relations == [("Heat (1995)", "Sci-Fi")]
    assert (c.history_ok, c.attributes_ok, c.relation_ok, c.faithful) == (True, True, False, False)
    # all three at once; the unwatched Saw is not checked for the relation (it is not a film
    # of the history), Heat is
    c = tiny(["Saw (2004)"], ["Horror"], "Arrival (2016) shares Sci-Fi with Heat (1995).")
    assert c.bad_citations == ["Saw (2004)"] and c.bad_attributes == ["Horror"]
    assert c.bad_relations == [("Heat (1995)", "Sci-Fi")] and not c.faithful


def test_claims_of_sharing_are_read_sentence_by_sentence():
    # the template's two forms: "and it is also G" claims Heat is G; "; it is G" does not
    c = tiny(["Heat (1995)"], ["Sci-Fi"], "Because you watched Heat (1995), and it is also Sci-Fi.")
    assert c.bad_relations == [("Heat (1995)", "Sci-Fi")] and c.claims_shared
    c = tiny(["Alien (1979)"], ["Sci-Fi"], "Because you watched Alien (1979), and it is also Sci-Fi.")
    assert c.relation_ok and c.faithful
    c = tiny(["Heat (1995)"], ["Sci-Fi"], "Because you watched Heat (1995); it is Sci-Fi.")
    assert c.relation_ok and not c.claims_shared and c.faithful
    # a sentence that names films claims only for them; one naming none, for every citation
    c = tiny([], ["space"], "You watched Alien (1979) and Heat (1995). Like Alien (1979), it is "
                            "set in space.")
    assert c.relation_ok and c.claimed_shared == ["space"]
    c = tiny([], ["space"], "You watched Alien (1979) and Heat (1995). Like them, it is set in "
                            "space.")
    assert c.bad_relations == [("Heat (1995)", "space")]
    # attributes named only in the text count, plurals too: Alien is no Thriller
    c = tiny([], [], "Like Alien (1979) and Heat (1995), it is one of those tense thrillers.")
    assert sorted(c.claimed_shared) == ["Thriller", "tense"]
    assert c.bad_relations == [("Alien (1979)", "Thriller")]
    # an unknown title next to a history film: both fail, each on its own check
    c = tiny([], ["Sci-Fi"], "Arrival (2016) shares Sci-Fi with Zorblax (1987) and Heat (1995).")
    assert not c.history_ok and c.bad_relations == [("Heat (1995)", "Sci-Fi")]
    # "you'll like <the recommended film>" is no claim of sharing; "like <a history film>" is
    c = tiny([], ["thoughtful"], "If you enjoyed Heat (1995), you'll like Arrival (2016), a "
                                 "thoughtful Sci-Fi film.")
    assert c.cited_ids == [2] and not c.claims_shared and c.faithful
    c = tiny([], ["thoughtful"], "Arrival (2016) is thoughtful, like Heat (1995).")
    assert c.bad_relations == [("Heat (1995)", "thoughtful")]
    # a title holding an attribute word is no claim about it
    c = tiny([], [], "Arrival (2016) has the same spirit as Drama Queen (1990).")
    assert c.cited_ids == [5] and c.claimed_shared == [] and c.faithful
    # a claim known to the caller; extra knowledge makes it true
    c = tiny(["Alien (1979)"], ["Drama"], shared_attributes=["Drama"])
    assert c.bad_relations == [("Alien (1979)", "Drama")]
    c = tiny(["Alien (1979)"], ["Drama"], shared_attributes=["Drama"],
             extra_attributes={1: ["drama"]})
    assert c.relation_ok and c.faithful


def test_relational_truth_counts_claims_with_a_wilson_interval():
    table = pd.DataFrame({"source": ["LLM"] * 60 + ["template"] * 12,
                          "claims_shared": [True] * 60 + [True] * 10 + [False] * 2,
                          "relation_ok": [True] * 26 + [False] * 34 + [False] * 10 + [True] * 2})
    t = relational_truth(table)
    assert t.loc["LLM", ["n", "claims", "true"]].tolist() == [60, 60, 26]
    # Wilson 95 %, by hand: p = 26/60, centre (p + z^2/120) / (1 + z^2/60) = 0.4373,
    # half-width 1.96 / 1.0640 * sqrt(p(1-p)/60 + z^2/14400) = 0.1216
    assert t.loc["LLM", "rate"] == pytest.approx(26 / 60)
    assert t.loc["LLM", "low"] == pytest.approx(0.3157, abs=1e-3)
    assert t.loc["LLM", "high"] == pytest.approx(0.5589, abs=1e-3)
    # no claim holds out of 10 (the two explanations without a claim do not count):
    # the interval is [0, z^2 / (n + z^2)]
    assert t.loc["template", ["n", "claims", "true"]].tolist() == [12, 10, 0]
    assert t.loc["template", "low"] == 0.0
    assert t.loc["template", "high"] == pytest.approx(1.96 ** 2 / (10 + 1.96 ** 2))


def test_faithfulness_figure_shows_the_relation_and_who_answered():
    from perso_kit.plots.llm_roles import plot_faithfulness
    summary = pd.DataFrame({"history_ok": [1.0, 1.0], "attributes_ok": [1.0, 1.0],
                            "relation_ok": [1.0, 0.25], "faithful": [1.0, 0.25],
                            "cites_top_driver": [0.1, 0.2]}, index=["template", "LLM"])
    fig = plot_faithfulness(summary, who=get_llm("offline", cache_path="off"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "history_ok", "attributes_ok", "relation_ok", "faithful", "cites_top_driver"]
    assert "offline stand-in, not an LLM" in [t.get_text() for t in fig.texts]
    # the LLM's bars (second source) carry its shares, the relation bar among them
    llm_bars = ax.containers[1]
    assert [b.get_height() for b in llm_bars] == [1.0, 1.0, 0.25, 0.25, 0.2]
    unstamped = plot_faithfulness(summary)
    assert not any("stand-in" in t.get_text() for t in unstamped.texts)
    import matplotlib.pyplot as plt
    plt.close(fig)
    plt.close(unstamped)


def test_item_attributes_from_catalog(split):
    items = split.train.items.set_index("item_id")
    a = item_attributes(items, 1)
    assert a == {"romance", "drama", "uplifting", "coming of age", "sports"}


def test_knn_drivers_add_up_to_the_knn_score(split, knn, case):
    u, hist_ids, _, rec, _ = case
    all_drivers = knn_drivers(knn, split.train, u, rec, n=10_000)
    score = knn.score([u], [rec])[0, 0]
    assert all_drivers["contribution"].sum() == pytest.approx(score)
    assert all_drivers["share"].sum() == pytest.approx(1.0)
    assert set(all_drivers["item_id"]) <= hist_ids
    top = knn_drivers(knn, split.train, u, rec, n=3)
    assert len(top) == 3 and top["contribution"].is_monotonic_decreasing
    # hand check: a driver's contribution is its similarity to the recommended item
    S = knn.similarity_
    i = split.train.item_index([top["item_id"].iloc[0]])[0]
    j = split.train.item_index([rec])[0]
    assert top["contribution"].iloc[0] == pytest.approx(S[i, j])


def test_template_cites_history_and_a_true_genre(split, case):
    u, hist_ids, _, rec, _ = case
    t = template_explanation(split.train, u, rec)
    items = split.train.items.set_index("item_id")
    assert t["explanation"].startswith("Because you watched ")
    assert t["cited_attributes"][0] in items.loc[rec, "genres"]
    recent = split.train.history(u, n=10)
    assert t["cited_history"][0] in recent["title"].tolist()


def test_explain_recommendations_flags_planted_errors_and_failures(split, knn, case):
    u, hist_ids, hist, _, not_seen = case
    recs = knn.recommend([u], k=3)
    items = split.train.items.set_index("item_id")
    planted = items.loc[not_seen, "title"]

    class Planted:
        def map(self, requests, **kw):
            out = []
            for n, r in enumerate(requests):
                assert r["json_schema"]["title"] == "llm_explanation"
                if n == 0:      # a false citation
                    out.append(Reply(data={"explanation": "x", "cited_history": [planted],
                                           "cited_attributes": []}, usage=Usage(5, 5)))
                elif n == 1:    # an invalid answer
                    out.append(Reply(error="invalid JSON answer", error_kind="invalid_json"))
                else:           # a faithful one
                    out.append(Reply(data={"explanation": "y",
                                           "cited_history": [hist["title"].iloc[-1]],
                                           "cited_attributes": []}, usage=Usage(5, 5)))
            return out

    table = explain_recommendations(Planted(), split.train, recs, knn, progress=False)
    llm_rows = table[table.source == "LLM"].reset_index(drop=True)
    assert llm_rows["faithful"].tolist() == [False, False, True]
    assert llm_rows["bad_citations"][0] == [planted]
    assert llm_rows["call_ok"].tolist() == [True, False, True]
    summ = faithfulness_summary(table)
    assert summ.loc["LLM", "faithful"] == pytest.approx(1 / 3)
    assert summ.loc["LLM", "n"] == 3 and summ.loc["template", "n"] == 3
    assert table[table.source == "template"]["faithful"].all()
    assert table["drivers"].map(len).eq(3).all()


def test_stand_in_explanations_are_checked(split, knn):
    llm = get_llm("offline", cache_path="off")
    users = split.test_users[:3]
    recs = knn.recommend(users, k=2)
    table = explain_recommendations(llm, split.train, recs, knn, progress=False)
    assert len(table) == 12 and set(table.source) == {"template", "LLM"}
    llm_rows = table[table.source == "LLM"]
    assert llm_rows["call_ok"].all() and (llm_rows["tokens"] > 0).all()
    # the stand-in copies titles from the prompt's history block: they ground and are seen
    assert llm_rows["history_ok"].all()
    # it says the item shares its named genres with both cited films: the relation holds
    # exactly when both films have them in the catalog
    items = split.train.items.set_index("item_id")
    both_have = [all(a in items.loc[h, "genres"] for h in r.cited_ids for a in r.cited_attributes)
                 for r in llm_rows.itertuples()]
    assert llm_rows["claims_shared"].all()
    assert llm_rows["relation_ok"].tolist() == both_have
    msg = explanation_messages(split.train, int(users[0]), int(recs.item_id.iloc[0]))
    assert "Recommended movie:" in msg[-1]["content"]


def test_widget_highlights_failed_checks(split, knn, case):
    from perso_kit.widgets import explanation_explorer
    table = pd.DataFrame([
        {"user_id": 1, "item_id": 5, "title": "A (1990)", "source": "template",
         "explanation": "fine", "bad_citations": [], "bad_attributes": [], "call_ok": True,
         "drivers": ["B (1991)"]},
        {"user_id": 1, "item_id": 5, "title": "A (1990)", "source": "LLM",
         "explanation": "wrong", "bad_citations": ["Fake (2001)"], "bad_attributes": ["Western"],
         "call_ok": True, "drivers": ["B (1991)"]}])
    box = explanation_explorer(table)
    html = box.children[1].value
    assert html.count("#fde0e0") == 1 and html.count("#e6f4e6") == 1
    assert "not in history: Fake (2001)" in html and "not true of the item: Western" in html
    assert "kNN drivers: B (1991)" in html


BASE_URL = os.environ.get("PERSO_KIT_LIVE_BASE_URL")


@pytest.mark.live
@pytest.mark.skipif(not BASE_URL, reason="set PERSO_KIT_LIVE_BASE_URL to run")
def test_live_explanations_complete(split, knn, tmp_path):
    llm = get_llm("compatible", base_url=BASE_URL, model=os.environ.get("PERSO_KIT_LIVE_MODEL"),
                  api_key=os.environ.get("PERSO_KIT_LIVE_API_KEY"),
                  cache_path=str(tmp_path / "cache.sqlite"), timeout_s=120)
    recs = knn.recommend(split.test_users[:2], k=2)
    table = explain_recommendations(llm, split.train, recs, knn, progress=False)
    llm_rows = table[table.source == "LLM"]
    assert len(llm_rows) == 4                      # every pair has a row, answered or not
    assert (~llm_rows["call_ok"] <= ~llm_rows["faithful"]).all()
    assert np.isfinite(faithfulness_summary(table)["faithful"]).all()
    assert llm_rows["call_ok"].mean() > 0.5, "most explanation calls must succeed"
    assert_calls_succeeded(llm)
