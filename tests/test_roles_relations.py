"""Knowledge as relations (perso_kit.roles.relations): the rules per kind on hand-made rows,
the checker proven on planted false relations (it fires) and on relations read from the catalog
(it stays quiet), the stand-in's answer from the prompt alone, failures counted, and the extra
signal in item-kNN."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perso_kit import load_dataset
from perso_kit.llm import get_llm
from perso_kit.llm.planted import planted_llm, planted_relations_llm
from perso_kit.recommenders import ItemKNN
from perso_kit.roles.relations import (RELATION_SCHEMA, STATUSES, RelationKNN, catalog_relations,
                                       check_relation, check_relations, propose_relations,
                                       relation_counts, relation_groups, relation_matrix,
                                       relation_messages, shares_stem, title_stem)

ITEMS = pd.DataFrame({
    "item_id": [1, 2, 3, 4, 5, 6],
    "title": ["Godfather, The (1972)", "Godfather: Part II, The (1974)", "Heat (1995)",
              "Psycho (1960)", "Psycho (1998)", "Evil Dead II (1987)"],
    "year": [1972, 1974, 1995, 1960, 1998, 1987],
    "genres": [("Crime", "Drama"), ("Crime", "Drama"), ("Action", "Crime"), ("Horror",),
               ("Horror", "Thriller"), ("Comedy", "Horror")],
})


def _row(i, **extra):
    return {**ITEMS.set_index("item_id").loc[i].to_dict(), "item_id": i, **extra}


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo")


@pytest.fixture(scope="module")
def demo_groups(demo):
    return relation_groups(ItemKNN().fit(demo), n_groups=6, size=10)


def test_title_stems_drop_years_articles_numbers_subtitles_and_plurals():
    assert title_stem("Godfather: Part II, The (1974)") == title_stem("Godfather, The (1972)") \
        == "godfather"
    assert title_stem("Star Trek VI: The Undiscovered Country (1991)") == "star trek"
    assert title_stem("Aliens (1986)") == title_stem("Alien 3 (1992)") == "alien"
    assert shares_stem("Batman (1989)", "Batman Returns (1992)")        # one stem starts the other
    assert not shares_stem("Star Wars (1977)", "Star Trek (2009)")
    assert not shares_stem("Heat (1995)", "Heathers (1989)")             # words, not letters


@pytest.mark.parametrize("a, b, expected", [
    (2, 1, "confirmed"),        # later, shares the stem, a different title
    (1, 2, "contradicted"),     # the "sequel" is older than its original
    (1, 1, "contradicted"),     # a film is not its own sequel
    (5, 4, "unverifiable"),     # the same title again: a remake as often as a sequel
    (6, 4, "unverifiable"),     # later, no stem in common: the catalog cannot tell
])
def test_sequel_rule(a, b, expected):
    assert check_relation("sequel_of", _row(a), _row(b))[0] == expected


def test_franchise_director_and_theme_rules():
    assert check_relation("same_franchise", _row(1), _row(2))[0] == "confirmed"
    assert check_relation("same_franchise", _row(4), _row(5))[0] == "unverifiable"   # same title
    assert check_relation("same_franchise", _row(3), _row(6))[0] == "unverifiable"
    # no director column (MovieLens, the demo world): unverifiable; with one: checked
    assert check_relation("same_director", _row(1), _row(2))[0] == "unverifiable"
    assert check_relation("same_director", _row(1, director="F. F. Coppola"),
                          _row(2, director="f. f. coppola"))[0] == "confirmed"
    assert check_relation("same_director", _row(1, director="Coppola"),
                          _row(3, director="Mann"))[0] == "contradicted"
    # a named genre: both have it / one lacks it; a theme the catalog has no column for
    assert check_relation("shared_theme", _row(1), _row(3), "Crime")[0] == "confirmed"
    status, why = check_relation("shared_theme", _row(1), _row(4), "Crime")
    assert status == "contradicted" and "Psycho (1960)" in why
    assert check_relation("shared_theme", _row(1), _row(2), "family loyalty")[0] == \
        "unverifiable"
    # the demo world's themes and moods are checked like genres
    assert check_relation("shared_theme", _row(1, themes=("heist", "revenge")),
                          _row(3, themes=("heist", "music")), "heist")[0] == "confirmed"
    assert check_relation("shared_theme", _row(1, themes=("heist", "revenge")),
                          _row(3, themes=("space", "music")), "heist")[0] == "contradicted"
    assert check_relation("shared_theme", _row(1, mood="dark"), _row(2, mood="tense"),
                          "dark")[0] == "contradicted"
    # no theme named: any shared genre confirms, none contradicts
    assert check_relation("shared_theme", _row(3), _row(4))[0] == "contradicted"
    assert check_relation("shared_theme", _row(4), _row(5))[0] == "confirmed"
    with pytest.raises(ValueError, match="relation must be one of"):
        check_relation("remake_of", _row(4), _row(5))


def test_check_relations_grounds_titles_and_counts_every_status():
    proposed = pd.DataFrame({
        "a": ["The Godfather: Part II", "Godfather, The (1972)", "Heat", "Heat 4 (2003)",
              "Evil Dead II (1987)", "Heat (1995)"],
        "relation": ["sequel_of", "sequel_of", "shared_theme", "sequel_of", "same_director",
                     "shared_theme"],
        "b": ["The Godfather (1972)", "Godfather: Part II, The (1974)", "Psycho (1998)",
              "Heat (1995)", "Psycho (1960)", "Godfather, The"],
        "detail": ["", "", "Horror", "", "", "Crime"]})
    checked = check_relations(proposed, ITEMS)
    assert checked["status"].tolist() == ["confirmed", "contradicted", "contradicted",
                                          "unknown title", "unverifiable", "confirmed"]
    assert checked["item_a"].tolist()[:3] == [2, 1, 3] and pd.isna(checked.at[3, "item_a"])
    assert "Heat 4 (2003)" in checked.at[3, "reason"]
    counts = relation_counts(checked)
    assert list(counts.columns) == list(STATUSES)
    assert counts.loc["all"].tolist() == [2, 1, 2, 1]
    assert counts.loc["sequel_of"].tolist() == [1, 0, 1, 1]
    assert counts.loc["same_director"].tolist() == [0, 1, 0, 0]
    # a genre of the vocabulary that neither item has is a contradiction, not "unverifiable"
    neither = check_relations(pd.DataFrame({"a": ["Heat"], "relation": ["shared_theme"],
                                            "b": ["Godfather, The"], "detail": ["Comedy"]}),
                              ITEMS)
    assert neither["status"].tolist() == ["contradicted"]
    assert relation_counts(check_relations(proposed.head(0), ITEMS)).loc["all"].sum() == 0
    # a title matched to one written differently (a typo) says so in the reason
    typo = check_relations(pd.DataFrame({"a": ["Godfater: Part II (1974)"],
                                         "relation": ["sequel_of"], "b": ["Godfather, The"],
                                         "detail": [""]}), ITEMS)
    assert typo.at[0, "status"] == "confirmed"
    assert typo.at[0, "reason"].startswith("Godfater: Part II (1974) read as Godfather: Part II")


def test_the_checker_fires_on_planted_false_relations(demo, demo_groups):
    llm = planted_relations_llm("false-relations")
    got = propose_relations(llm, demo.items, demo_groups, progress=False)
    assert (got.requests, got.failed) == (6, 0)
    counts = relation_counts(check_relations(got.relations, demo.items))
    # one invented film per answer, and every other "sequel" is older than its original
    assert counts.at["all", "unknown title"] == 6
    assert counts.at["all", "confirmed"] == 0 and counts.at["all", "unverifiable"] == 0
    assert counts.at["all", "contradicted"] == len(got.relations) - 6 > 20


def test_the_checker_stays_quiet_on_relations_read_from_the_catalog(demo, demo_groups):
    truth = catalog_relations(demo.items, demo_groups)
    assert len(truth) > 20
    llm = planted_relations_llm("relations-control", relations=truth)
    got = propose_relations(llm, demo.items, demo_groups, progress=False)
    assert got.failed == 0 and len(got.relations) > 20
    checked = check_relations(got.relations, demo.items)
    assert (checked["status"] == "confirmed").all(), checked[checked["status"] != "confirmed"]
    with pytest.raises(ValueError, match="planted oracle"):
        planted_relations_llm("relations-control")


def test_failed_calls_are_counted_never_raised(demo, demo_groups):
    """A model that cannot answer the relation prompt (a planted ranker: HTTP 400)."""
    got = propose_relations(planted_llm("control"), demo.items, demo_groups[:3], progress=False)
    assert (got.requests, got.failed, len(got.relations)) == (3, 3, 0)
    assert all("400" in e or "answers only" in e for e in got.errors)


def test_the_stand_in_answers_from_the_listed_titles_alone():
    llm = get_llm("offline", cache_path="off")
    titles = ["Godfather, The (1972)", "Heat (1995)", "Godfather: Part II, The (1974)",
              "Lost Harbor (1990)", "Harbor Lights (1993)"]
    r = llm.chat(relation_messages(titles), json_schema=RELATION_SCHEMA)
    assert r.ok and r.stand_in
    rel = [(x["a"], x["relation"], x["b"]) for x in r.data["relations"]]
    assert rel == [
        ("The Godfather 2 (1975)", "sequel_of", "Godfather, The (1972)"),   # invented on purpose
        ("Godfather: Part II, The (1974)", "sequel_of", "Godfather, The (1972)"),  # same stem
        ("Lost Harbor (1990)", "same_franchise", "Harbor Lights (1993)")]   # a shared word


def test_relation_links_add_weight_to_item_knn(demo):
    links = pd.DataFrame({"item_a": [1, 3, 5, 7, 9, 9999], "item_b": [2, 4, 6, 7, 1, 1],
                          "status": ["confirmed", "confirmed", "unverifiable", "confirmed",
                                     "contradicted", "confirmed"]})
    R = relation_matrix(links, demo)                       # self-links and unknown ids skipped
    assert R.nnz == 4 and (R != R.T).nnz == 0
    assert relation_matrix(links, demo, statuses=None).nnz == 8
    plain = ItemKNN().fit(demo)
    linked = RelationKNN(links, weight=0.25).fit(demo)
    assert linked.links_ == 2
    i1, i2, i3 = demo.item_index([1, 2, 3])
    diff = (linked.similarity_ - plain.similarity_).toarray()
    assert diff[i1, i2] == pytest.approx(0.25) and diff[i2, i1] == pytest.approx(0.25)
    assert np.count_nonzero(np.abs(diff) > 1e-12) == 4
    users = demo.user_ids[:50]
    same = RelationKNN(links, weight=0.0).fit(demo)
    assert np.allclose(same.score(users, demo.item_ids), plain.score(users, demo.item_ids))
    assert RelationKNN(links, statuses=None).fit(demo).links_ == 4
    with pytest.raises(ValueError, match="weight"):
        RelationKNN(links, weight=-1)


def test_groups_are_popular_items_with_their_neighbours(demo):
    knn = ItemKNN().fit(demo)
    groups = relation_groups(knn, n_groups=3, size=6)
    top = demo.item_popularity().sort_values(ascending=False, kind="stable").index[:3]
    assert [g[0] for g in groups] == list(top) and all(len(set(g)) == 6 for g in groups)
    row = knn.similarity_[demo.item_index([groups[0][0]])[0]].toarray().ravel()
    best = demo.item_ids[np.argsort(-row, kind="stable")[:5]]
    assert set(groups[0][1:]) == set(best)
    with pytest.raises(ValueError, match="n_groups"):
        relation_groups(knn, n_groups=0)


MOVIELENS = Path(os.environ.get("PERSO_KIT_DATA_DIR", "/work/shared/data/movielens"))


@pytest.mark.skipif(not (MOVIELENS / "ml-100k").exists(), reason="no MovieLens files")
def test_on_movielens_titles_the_stand_in_finds_sequels_by_their_stems(monkeypatch):
    """Notebook 06's section 6 with DATASET = "ml-100k" (the warm-user split, 20 groups, weight
    0.2): the counts and NDCG differences its prose states."""
    import perso_kit as pk
    from perso_kit.evaluate import paired_difference
    from perso_kit.split import random_per_user

    monkeypatch.setenv("PERSO_KIT_DATA_DIR", str(MOVIELENS))
    ds = load_dataset("ml-100k")
    split = random_per_user(ds, seed=42)
    groups = relation_groups(ItemKNN().fit(split.train), n_groups=20, size=15)
    got = propose_relations(get_llm("offline", cache_path="off"), ds.items, groups,
                            progress=False)
    checked = check_relations(got.relations, ds.items)
    # 20 answers, each with one invented film; a pair proposed in two groups counts twice
    assert relation_counts(checked).loc["all"].tolist() == [8, 12, 0, 20]
    ok = checked[checked["status"] == "confirmed"]
    pairs = set(zip(ok["item_a"], ok["item_b"]))
    assert {(187, 127), (176, 183), (96, 195)} <= pairs     # Godfather II, Aliens, Terminator 2
    models = {"ItemKNN": ItemKNN(), "confirmed": RelationKNN(checked, weight=0.2),
              "all": RelationKNN(checked, weight=0.2, statuses=None)}
    _, per = pk.evaluate(models, split, k=10, seed=42, return_per_user=True, progress=False)
    assert (models["confirmed"].links_, models["all"].links_) == (6, 10)
    s = per.pivot(index="user_id", columns="model", values="ndcg@10")
    est, lo, hi = paired_difference(s["confirmed"], s["ItemKNN"], seed=42)
    assert est == pytest.approx(0.0004, abs=0.0001) and lo > 0
    est, lo, hi = paired_difference(s["all"], s["ItemKNN"], seed=42)
    assert est == pytest.approx(0.0009, abs=0.0001) and lo > 0
