"""Bad input gets a clear error naming the value and the fix (and good input stays quiet):
duplicate pairs, dataset names, split and evaluation arguments, LLM settings."""
from __future__ import annotations

import socket
import warnings

import numpy as np
import pandas as pd
import pytest

from perso_kit.data import load_dataset, make_dataset
from perso_kit.evaluate import check_k
from perso_kit.split import Split, cold_start_users, leave_last_n, random_per_user, temporal

CATALOG = pd.DataFrame({"item_id": range(1, 9), "title": [f"t{i}" for i in range(1, 9)],
                        "genres": [()] * 8})


def rows(triples):
    return pd.DataFrame(triples, columns=["user_id", "item_id", "rating", "timestamp"])


# ------------------------------------------------------------------ duplicate pairs
def test_duplicate_pairs_collapse_to_the_latest_with_a_count_and_a_warning():
    data = rows([(1, 1, 2.0, 30), (1, 1, 5.0, 50), (1, 1, 4.0, 40), (1, 2, 3.0, 10),
                 (2, 1, 1.0, 5), (2, 3, 4.0, 7), (2, 3, 2.0, 7)])
    with pytest.warns(UserWarning, match="3 duplicate \\(user, item\\) rows collapsed"):
        ds = make_dataset("dups", data, CATALOG)
    got = ds.interactions.set_index(["user_id", "item_id"])
    assert len(got) == 4 and ds.meta["duplicates_collapsed"] == 3
    assert got.loc[(1, 1), "rating"] == 5.0 and got.loc[(1, 1), "count"] == 3   # the latest
    assert got.loc[(2, 3), "rating"] == 2.0 and got.loc[(2, 3), "count"] == 2   # last of a tie
    assert got.loc[(1, 2), "count"] == 1


def test_no_duplicates_means_no_warning_and_no_count_column(demo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = make_dataset("clean", rows([(1, 1, 2.0, 3), (1, 2, 3.0, 4)]), CATALOG)
    assert "count" not in ds.interactions and "duplicates_collapsed" not in ds.meta
    assert "count" not in demo.interactions


def test_splits_never_put_one_pair_on_both_sides():
    rng = np.random.default_rng(0)
    raw = rows([(u, int(i), 1.0, int(t)) for u in range(1, 6)
                for i, t in zip(rng.integers(1, 9, 12), rng.integers(0, 100, 12))])
    assert raw.duplicated(["user_id", "item_id"]).any()   # the raw data repeats pairs
    with pytest.warns(UserWarning, match="duplicate"):
        ds = make_dataset("repeats", raw, CATALOG)
    for split in (random_per_user(ds, 0.3, seed=1), temporal(ds, 0.3), leave_last_n(ds, 2)):
        train = set(map(tuple, split.train.interactions[["user_id", "item_id"]].values))
        test = set(map(tuple, split.test.interactions[["user_id", "item_id"]].values))
        assert not train & test, split.description
    # a Dataset built around make_dataset still cannot leak: the split refuses, and says why
    from perso_kit.data.dataset import Dataset
    leaky = Dataset("leaky", raw, ds.items, ds.users)
    with pytest.raises(ValueError, match="pairs are in both train and test.*make_dataset"):
        temporal(leaky, 0.5)


# ------------------------------------------------------------------ arguments
def test_an_empty_dataset_name_is_an_error_not_the_demo():
    with pytest.raises(ValueError, match="unknown dataset ''; choose one of"):
        load_dataset("")


def test_n_visible_must_be_a_whole_number_of_at_least_zero(demo):
    for bad in (-3, 1.5, True):
        with pytest.raises(ValueError, match=f"n_visible .* got {bad!r}"):
            cold_start_users(demo, 0.1, n_visible=bad, seed=0)
    split = cold_start_users(demo, 0.1, n_visible=2, seed=0)   # the control
    assert isinstance(split, Split) and split.test.n_interactions > 0


def test_k_must_be_a_whole_number_of_at_least_one():
    for bad in (2.5, 0, -1, "10", True):
        with pytest.raises(ValueError, match=rf"k must be a whole number of at least 1 .* got {bad!r}"):
            check_k(bad)
    assert check_k(10) == 10 and check_k(np.int64(3)) == 3


def test_evaluate_refuses_a_fractional_k(demo):
    from perso_kit.evaluate import evaluate
    from perso_kit.recommenders import Popularity
    split = random_per_user(demo, 0.2, seed=0)
    with pytest.raises(ValueError, match="k must be a whole number"):
        evaluate(Popularity().fit(split.train), split, k=2.5)


# ------------------------------------------------------------------ LLM settings
@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan"])
def test_a_bad_timeout_is_named(monkeypatch, value):
    from perso_kit.llm import get_llm
    monkeypatch.setenv("PERSO_KIT_LLM_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"PERSO_KIT_LLM_TIMEOUT .* above 0.* got '{value}'"):
        get_llm("offline", cache_path="off")


def test_a_good_timeout_is_used(monkeypatch):
    from perso_kit.llm import get_llm
    monkeypatch.setenv("PERSO_KIT_LLM_TIMEOUT", "12.5")
    assert get_llm("offline", cache_path="off").settings.timeout_s == 12.5


def test_a_closed_port_with_no_model_named_gives_the_right_advice():
    from perso_kit.llm import get_llm
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ValueError) as err:
        get_llm("compatible", base_url=url, cache_path="off")
    msg = str(err.value)
    assert f"could not reach {url}" in msg and "check that a server is running" in msg
    assert "set PERSO_KIT_LLM_MODEL" not in msg    # naming a model would not help
