"""The personalized content writer (perso_kit.roles.content): each of its four measures fires on
a planted failure and stays quiet on the clean control (the template), on hand-made examples and
on the demo world; a malformed answer is counted, never a crash."""
import numpy as np
import pandas as pd
import pytest

import perso_kit as pk
from perso_kit.llm import get_llm
from perso_kit.llm.planted import SAME_DIGEST, WRITER_KINDS, history_key, planted_writer
from perso_kit.recommenders import ItemKNN
from perso_kit.roles import content as C
from perso_kit.split import leave_last_n

CAT = pd.DataFrame({"item_id": [1, 2, 3, 4],
                    "title": ["Alien (1979)", "Heat (1995)", "Saw (2004)",
                              "Velvet Horizon, The (1993)"],
                    "year": [1979, 1995, 2004, 1993],
                    "genres": [("Horror", "Sci-Fi"), ("Crime",), ("Horror",), ("Romance",)],
                    "mood": ["tense", "tense", "dark", "uplifting"]})


# ------------------------------------------------------------------------------ hand examples
def test_titles_are_found_in_every_written_form():
    names = C.CatalogNames(CAT)
    found = names.find("The Velvet Horizon (1993), then velvet horizon, the; Alien and Heat.")
    assert [(m.item_id, m.stated_year) for m in found] == [(4, 1993), (4, None), (1, None),
                                                           (2, None)]
    assert names.find("a saw and a heat wave") == []     # one-word titles keep their capital


def test_grounding_counts_each_invented_fact():
    names = C.CatalogNames(CAT)
    clean = C.check_facts("Alien (1979) is horror and tense. Heat (1995): crime.", names, {1, 2})
    assert clean.grounded and clean.invented == [] and clean.n_facts == 7
    assert clean.named == [1, 2]
    bad = C.check_facts("Alien (1982) is a romance. Try Zorblax Returns (1987). Made in 1960.",
                        names, {1})
    assert bad.invented == [("year", "Alien (1982)"), ("attribute", "romance (of Alien (1979))"),
                            ("title", "Zorblax Returns (1987)"), ("year", "1960")]
    assert bad.n_invented == 4 and not bad.grounded
    # a bare year is true when an item of the sentence (or of the inputs) has it
    assert C.check_facts("Heat, from 1995.", names, {2}).grounded
    assert C.check_facts("Released in 1995.", names, {2}).grounded
    assert C.check_facts("Released in 1995.", names, {1}).invented == [("year", "1995")]
    # an attribute with no title in its sentence must belong to some input
    assert C.check_facts("More crime this week.", names, {2}).grounded
    assert C.check_facts("More crime this week.", names, {1}).invented == [("attribute", "crime")]


def test_profile_fit_and_swap_test_by_hand():
    profiles = {"a": {"horror": 3, "item:1": 1}, "b": {"crime": 1, "item:2": 1}}
    texts = {"a": "Saw is horror, like Alien.", "b": "Heat is crime."}
    # a's text names saw (item:3), horror, alien (item:1): 2 of 3 are a's; b's names nothing of a
    assert C.profile_fit(texts["a"], profiles["a"], CAT) == pytest.approx(2 / 3)
    assert C.profile_fit(texts["b"], profiles["a"], CAT) == 0.0
    s = C.swap_test(texts, profiles, CAT)
    assert s["per_user"]["own"].tolist() == pytest.approx([2 / 3, 1.0])
    assert s["per_user"]["other"].tolist() == pytest.approx([0.0, 0.0])
    assert s["gap"] == pytest.approx((2 / 3 + 1) / 2) and s["wins"] == 1.0
    assert s["personalized"] and s["lo"] > 0
    same = C.swap_test({"a": texts["a"], "b": texts["a"]}, profiles, CAT)
    assert (same["gap"], same["lo"], same["hi"], same["wins"], same["ties"]) == (0, 0, 0, 0, 1)
    assert not same["personalized"]
    with pytest.raises(ValueError, match="at least 2 users"):
        C.swap_test({"a": "x"}, profiles, CAT)


def test_leakage_by_hand():
    c = C.check_leakage("Alien, Heat and Saw.", CAT, inputs={1}, held_out={2}, others={3})
    assert (c.held_out_names, c.other_names, c.leaks, c.leak_free) == (
        ["Heat (1995)"], ["Saw (2004)"], 2, False)
    # a held-out item the writer was given (the recommender found it) is no leak
    assert C.check_leakage("Heat.", CAT, inputs={2}, held_out={2}).leak_free
    assert C.check_leakage("Nothing here.", CAT, inputs={1}, held_out={2}, others={3}).leak_free


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="user_id and item_id"):
        C.write_digests(None, None, pd.DataFrame({"user": [1]}))
    with pytest.raises(ValueError, match="item_id and title"):
        C.CatalogNames(pd.DataFrame({"id": [1]}))
    with pytest.raises(ValueError, match="writer-leaks"):
        planted_writer("writer-leaks")
    with pytest.raises(ValueError, match="kind must be one of"):
        planted_writer("writer-nonsense")


# ------------------------------------------------------------------------------ demo world
@pytest.fixture(scope="module")
def world():
    ds = pk.load_dataset("demo")
    split = leave_last_n(ds, n=1)
    train = split.train
    knn = ItemKNN(n_neighbors=50).fit(train)
    users = np.sort(np.random.default_rng(42).choice(split.test_users, size=12,
                                                     replace=False)).tolist()
    recs = knn.recommend(users, k=3)
    names = C.CatalogNames(train.items)
    held = C.held_out_items(split.test)
    return {"split": split, "train": train, "users": users, "recs": recs, "names": names,
            "held": held}


def _run(world, llm):
    t = C.write_digests(llm, world["train"], world["recs"], progress=False)
    t = C.check_digests(t, world["train"], world["held"], catalog=world["names"], progress=False)
    return t, C.digest_summary(t, world["train"], catalog=world["names"])


@pytest.fixture(scope="module")
def runs(world):
    out = {k: _run(world, planted_writer(k)) for k in WRITER_KINDS if k != "writer-leaks"}
    train, test = world["train"], world["split"].test
    leaks = {}
    for u in world["users"]:
        last = history_key(train.history(u, n=10)["title"])
        held = test.interactions.loc[test.interactions.user_id == u, "item_id"].iloc[0]
        leaks[last] = train.items.set_index("item_id").loc[held, "title"]
    out["writer-leaks"] = _run(world, planted_writer("writer-leaks", leaks=leaks))
    out["stand-in"] = _run(world, get_llm("offline", cache_path="off"))
    return out


def test_the_template_is_the_clean_control(runs):
    """Quiet on every measure: grounded, leak-free, personalized, free, in every run."""
    for kind, (table, summary) in runs.items():
        t = summary.loc["template"]
        assert (t["n"], t["call_ok"], t["grounded"], t["invented"]) == (12, 1.0, 1.0, 0), kind
        assert (t["leak_free"], t["leaks"]) == (1.0, 0), kind
        assert t["personalized"] and t["gap_lo"] > 0, kind
        assert t["prompt_tokens"] == 0 and t["cost_usd"] == 0.0


def test_the_planted_control_writer_passes_every_check(runs):
    s = runs["writer-control"][1].loc["LLM"]
    assert (s["call_ok"], s["grounded"], s["leak_free"], s["invented"], s["leaks"]) == (
        1.0, 1.0, 1.0, 0, 0)
    assert s["personalized"]


def test_grounding_fires_on_the_inventing_writer(runs):
    table, summary = runs["writer-invents"]
    llm = table[table.source == "LLM"]
    assert (llm["n_invented"] == 2).all()                      # a wrong year and a fake film
    assert all(sorted(k for k, _ in inv) == ["title", "year"] for inv in llm["invented"])
    assert summary.loc["LLM", "grounded"] == 0.0 and summary.loc["LLM", "invented"] == 24
    assert summary.loc["LLM", "grounded_hi"] < summary.loc["template", "grounded_lo"]


def test_personalization_fires_on_the_same_text_for_everyone(runs):
    table, summary = runs["writer-same-for-everyone"]
    assert set(table.loc[table.source == "LLM", "text"]) == {SAME_DIGEST}
    s = summary.loc["LLM"]
    assert (s["gap"], s["gap_lo"], s["gap_hi"], s["wins"]) == (0.0, 0.0, 0.0, 0.0)
    assert not s["personalized"]
    assert s["grounded"] == 1.0 and s["leak_free"] == 1.0      # only personalization fails


def test_leakage_fires_on_the_leaking_writer_with_the_names(runs, world):
    table, summary = runs["writer-leaks"]
    llm = table[table.source == "LLM"].set_index("user_id")
    items = world["train"].items.set_index("item_id")
    for u in world["users"]:
        inputs = llm.loc[u, "inputs"]
        held = world["held"][u]
        names = llm.loc[u, "held_out_names"] + llm.loc[u, "other_names"]
        assert llm.loc[u, "leaks"] >= 1, u
        if not held & inputs:       # the user's own held-out item, named by title
            assert llm.loc[u, "held_out_names"] == [items.loc[next(iter(held)), "title"]], u
        assert set(names) <= set(items.loc[list(held), "title"]) | set(names), u
    assert summary.loc["LLM", "leak_free"] == 0.0
    assert summary.loc["LLM", "leaks"] >= 12
    assert summary.loc["LLM", "grounded"] == 1.0               # true titles: only a leak


def test_a_malformed_answer_is_counted_not_a_crash(runs):
    table, summary = runs["writer-malformed"]
    llm = table[table.source == "LLM"]
    assert len(llm) == 12 and not llm["call_ok"].any()
    assert set(llm["error_kind"]) == {"invalid_json"} and (llm["text"] == "").all()
    assert summary.loc["LLM", "failed"] == 12 and summary.loc["LLM", "call_ok"] == 0.0
    assert summary.loc["template", "failed"] == 0


def test_cost_per_user_is_what_the_calls_report(world):
    llm = get_llm("offline", cache_path="off")
    table, summary = _run(world, llm)
    log = llm.call_log()
    assert len(log) == 12                                       # one call per user
    s = summary.loc["LLM"]
    assert s["prompt_tokens"] == pytest.approx(log["prompt_tokens"].mean())
    assert s["completion_tokens"] == pytest.approx(log["completion_tokens"].mean())
    assert s["cost_usd"] == 0.0                                 # the stand-in is free
    from perso_kit.costs import cost_at_scale
    from perso_kit.llm.pricing import PriceTable
    usage = {"digest": {"prompt_tokens_per_user": s["prompt_tokens"],
                        "completion_tokens_per_user": s["completion_tokens"]}}
    price = PriceTable().lookup("gpt-4o-mini")
    scaled = cost_at_scale(usage, n_users=1000, models=["gpt-4o-mini"])
    assert scaled.loc[0, "cost_usd"] == pytest.approx(
        1000 * (s["prompt_tokens"] * price.input_per_1m
                + s["completion_tokens"] * price.output_per_1m) / 1e6)


def test_the_stand_in_writes_from_the_prompt_alone(runs, world):
    """Its digest copies the prompt's facts: grounded, no leak; its prompt holds no held-out
    title (it never sees test labels)."""
    train, items = world["train"], world["train"].items.set_index("item_id")
    for u in world["users"]:
        picks = world["recs"].loc[world["recs"].user_id == u, "item_id"].tolist()
        prompt = C.digest_messages(train, u, picks)[1]["content"]
        for h in world["held"][u] - set(picks):
            assert items.loc[h, "title"] not in prompt
    table, summary = runs["stand-in"]
    s = summary.loc["LLM"]
    assert (s["call_ok"], s["grounded"], s["leak_free"]) == (1.0, 1.0, 1.0)
    assert s["personalized"]
    assert table.loc[table.source == "LLM", "text"].str.startswith("Your week in film.").all()
