"""The LLM as explainer: faithfulness checks catch planted errors; kNN drivers add up to the
kNN score; template and LLM explanations are checked alike; the widget flags failures."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from perso_kit.llm import Reply, get_llm
from perso_kit.llm.reply import Usage
from perso_kit.recommenders import ItemKNN
from perso_kit.roles.explainer import (check_explanation, explain_recommendations,
                                       explanation_messages, faithfulness_summary,
                                       item_attributes, knn_drivers, template_explanation)
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
    # a history title inside prose, after other words, is found and accepted
    c = check_explanation([], [], f"It shares {true_attr} with {true_title}, which you watched.",
                          hist_ids, attrs, train.items, rec)
    assert c.faithful and c.cited_ids == [hist["item_id"].iloc[-1]]
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
