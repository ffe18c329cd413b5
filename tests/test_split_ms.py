"""msr_stratified reproduces Microsoft Recommenders' python_stratified_split row for row.

Expected rows are worked out by hand from their documented procedure (one uniform number per
row from NumPy's legacy generator seeded with the seed, order each group by it, keep the first
round(ratio * n) rows with halves rounded to even), and, for a 200-row frame, recorded once
from their package (recommenders 1.2.1); the tests do not import it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark

from perso_kit import metrics as M
from perso_kit.data import Dataset, make_dataset
from perso_kit.split import msr_stratified, random_per_user


def _dataset(users, items) -> Dataset:
    inter = pd.DataFrame({"user_id": users, "item_id": items, "rating": 4.0,
                          "timestamp": np.arange(len(users))})
    ids = np.unique(items)
    catalog = pd.DataFrame({"item_id": ids, "title": [f"movie {i}" for i in ids],
                            "genres": [()] * len(ids)})
    return make_dataset("hand", inter, catalog)


def _test_rows(ds, split) -> list[int]:
    """Row positions (in ``ds``) of the test part, found by their (user, item) pair."""
    pairs = set(zip(split.test.interactions["user_id"], split.test.interactions["item_id"]))
    rows = zip(ds.interactions["user_id"], ds.interactions["item_id"])
    return [r for r, pair in enumerate(rows) if pair in pairs]


# Thirteen rows; np.random.RandomState(42).rand(13), rounded, gives per row:
#   row   0     1     2     3     4      5      6     7     8     9     10    11    12
#   draw .3745 .9507 .7320 .5987 .15602 .15599 .0581 .8662 .6011 .7081 .0206 .9699 .8324
HAND_USERS = [3, 1, 3, 2, 1, 3, 1, 3, 2, 1, 3, 3, 4]
HAND_ITEMS = [1, 1, 2, 1, 2, 3, 3, 4, 2, 4, 5, 6, 1]


def test_by_user_on_a_hand_made_frame():
    # user 1: rows 1, 4, 6, 9 ordered by draw: 6, 4, 9, 1; round(0.75 * 4) = 3 -> row 1 tested
    # user 2: rows 3, 8; round(0.75 * 2) = round(1.5) = 2 -> both trained
    # user 3: rows 0, 2, 5, 7, 10, 11 ordered 10, 5, 0, 2, 7, 11; round(4.5) = 4 (halves to
    #         even) -> rows 7 and 11 tested (rounding halves up would train row 7)
    # user 4: row 12 alone; round(0.75) = 1 -> trained
    ds = _dataset(HAND_USERS, HAND_ITEMS)
    split = msr_stratified(ds, ratio=0.75, seed=42, filter_by="user")
    assert _test_rows(ds, split) == [1, 7, 11]
    assert split.train.n_interactions == 10
    assert split.seed == 42


def test_by_item_on_a_hand_made_frame():
    # item 1: rows 0, 1, 3, 12 ordered 0, 3, 12, 1; round(3.0) = 3 -> row 1 tested
    # item 2: rows 2, 4, 8 ordered 4, 8, 2; round(2.25) = 2 -> row 2 tested
    # items 3 and 4: two rows each, round(1.5) = 2 -> trained; items 5, 6: one row -> trained
    ds = _dataset(HAND_USERS, HAND_ITEMS)
    split = msr_stratified(ds, ratio=0.75, seed=42, filter_by="item")
    assert _test_rows(ds, split) == [1, 2]
    assert "each item's" in split.description


# A 200-row frame and the test rows their python_stratified_split returned for it.
RECORDED = {
    ("user", 42, 0.75): [1, 2, 3, 7, 11, 25, 33, 34, 35, 41, 43, 50, 51, 52, 53, 55, 67, 69, 70,
                         73, 75, 76, 80, 88, 92, 104, 107, 112, 116, 118, 121, 127, 137, 139,
                         140, 150, 154, 165, 178, 182, 183, 185, 186, 191, 192, 197, 198, 199],
    ("item", 42, 0.75): [1, 2, 7, 8, 11, 12, 17, 30, 33, 34, 43, 45, 47, 52, 53, 55, 62, 67, 69,
                         70, 73, 76, 80, 87, 88, 91, 94, 104, 107, 112, 113, 114, 115, 116, 120,
                         121, 126, 127, 134, 139, 140, 146, 150, 154, 174, 178, 182, 183, 191,
                         192, 193, 196, 197],
    ("user", 3, 0.6): [0, 1, 4, 5, 14, 15, 21, 24, 25, 29, 30, 32, 33, 36, 44, 45, 46, 52, 57,
                       59, 61, 63, 65, 68, 71, 72, 83, 84, 86, 88, 89, 90, 91, 92, 93, 95, 96,
                       101, 102, 103, 104, 105, 107, 108, 109, 115, 126, 131, 133, 136, 137,
                       140, 142, 144, 145, 146, 148, 152, 154, 155, 156, 157, 160, 161, 162,
                       165, 166, 169, 170, 176, 177, 178, 180, 181, 183, 185, 188, 192, 194,
                       196, 198],
}


def _frame_200():
    codes = np.random.RandomState(0).choice(20 * 30, size=200, replace=False)
    return _dataset(codes // 30, codes % 30)


@pytest.mark.parametrize("filter_by, seed, ratio", list(RECORDED))
def test_matches_their_recorded_split(filter_by, seed, ratio):
    ds = _frame_200()
    split = msr_stratified(ds, ratio=ratio, seed=seed, filter_by=filter_by)
    assert _test_rows(ds, split) == RECORDED[(filter_by, seed, ratio)]


def test_another_seed_or_the_kits_split_differs():
    # the comparison above is sensitive: other random numbers give other rows
    ds = _frame_200()
    expected = RECORDED[("user", 42, 0.75)]
    assert _test_rows(ds, msr_stratified(ds, seed=43)) != expected
    assert _test_rows(ds, random_per_user(ds, test_fraction=0.25, seed=42)) != expected
    # ... and the same seed gives the same rows again (no global random state involved)
    np.random.seed(0)
    assert _test_rows(ds, msr_stratified(ds, seed=42)) == expected


def test_row_order_matters_as_in_theirs():
    # the numbers are drawn per row in the data's order: reversing the rows changes the split
    ds = _dataset(HAND_USERS[::-1], HAND_ITEMS[::-1])
    reversed_rows = [12 - r for r in _test_rows(ds, msr_stratified(ds, seed=42))]
    assert sorted(reversed_rows) != [1, 7, 11]


# ------------------------------------------------------- the splitter before July 2022
# np.random.RandomState(42).permutation(n): n=2 -> [1, 0], n=3 -> [0, 1, 2],
# n=4 -> [1, 3, 0, 2], n=6 -> [0, 1, 5, 2, 4, 3]; every group of n rows is shuffled by it.
def test_before_2022_by_user_on_the_hand_made_frame():
    # user 1: rows 1, 4, 6, 9 shuffled to 4, 9, 1, 6; round(3.0) = 3 -> row 6 tested
    # user 2: rows 3, 8; round(1.5) = 2 -> both trained
    # user 3: rows 0, 2, 5, 7, 10, 11 shuffled to 0, 2, 11, 5, 10, 7; round(4.5) = 4 -> rows
    #         10 and 7 tested
    # user 4: row 12 alone -> trained
    ds = _dataset(HAND_USERS, HAND_ITEMS)
    split = msr_stratified(ds, seed=42, filter_by="user", before_2022=True)
    assert _test_rows(ds, split) == [6, 7, 10]
    assert "before 2022" in split.description


def test_before_2022_by_item_on_the_hand_made_frame():
    # item 1: rows 0, 1, 3, 12 shuffled to 1, 12, 0, 3 -> row 3 tested
    # item 2: rows 2, 4, 8 (permutation [0, 1, 2] keeps them); round(2.25) = 2 -> row 8 tested
    ds = _dataset(HAND_USERS, HAND_ITEMS)
    split = msr_stratified(ds, seed=42, filter_by="item", before_2022=True)
    assert _test_rows(ds, split) == [3, 8]


# the 200-row frame's test rows from their splitter as of April 2021 (reco_utils, run once)
RECORDED_BEFORE_2022 = {
    "user": [25, 28, 31, 40, 50, 57, 63, 70, 72, 73, 75, 77, 78, 80, 81, 87, 95, 97, 99, 100,
             102, 103, 107, 108, 109, 111, 113, 115, 118, 123, 131, 135, 136, 138, 139, 141,
             146, 147, 148, 152, 155, 160, 161, 164, 165, 167, 175, 189],
    "item": [23, 44, 48, 61, 62, 63, 66, 76, 78, 88, 90, 92, 93, 97, 100, 101, 103, 106, 108,
             109, 111, 116, 120, 123, 127, 128, 129, 130, 132, 134, 135, 136, 138, 140, 141, 143,
             144, 146, 149, 151, 153, 154, 160, 162, 164, 170, 174, 178, 180, 181, 182, 184,
             188],
}


@pytest.mark.parametrize("filter_by", ["user", "item"])
def test_before_2022_matches_their_recorded_split(filter_by):
    ds = _frame_200()
    split = msr_stratified(ds, seed=42, filter_by=filter_by, before_2022=True)
    assert _test_rows(ds, split) == RECORDED_BEFORE_2022[filter_by]
    # same sizes as today's splitter (same rounding), other rows
    today = msr_stratified(ds, seed=42, filter_by=filter_by)
    assert today.test.n_interactions == split.test.n_interactions
    assert _test_rows(ds, today) != RECORDED_BEFORE_2022[filter_by]


@pytest.mark.parametrize("kwargs, message", [
    (dict(ratio=1.0), "between 0 and 1"),
    (dict(ratio=0.0), "between 0 and 1"),
    (dict(ratio=[0.5, 0.5]), "float between 0 and 1"),
    (dict(filter_by="movie"), "'user' or 'item'"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        msr_stratified(_dataset(HAND_USERS, HAND_ITEMS), **kwargs)


# ------------------------------------------------------------------ MAP per #relevant
def test_map_per_relevant_by_hand():
    hits = np.array([[True, False, True, False],    # AP sum 1/1 + 2/3; 5 relevant
                     [False, True, False, False],   # AP sum 1/2; 1 relevant
                     [False, False, False, False]])  # no hit; 2 relevant
    n_rel = np.array([5, 1, 2])
    got = M.map_per_relevant_at_k(hits, n_rel)
    np.testing.assert_allclose(got, [(1 + 2 / 3) / 5, 0.5, 0.0])
    # the kit's MAP divides by min(#relevant, k) = 4 for the first user
    np.testing.assert_allclose(M.map_at_k(hits, n_rel), [(1 + 2 / 3) / 4, 0.5, 0.0])
    # so one converts into the other per user
    np.testing.assert_allclose(M.map_at_k(hits, n_rel) * np.minimum(n_rel, 4) / n_rel, got)


def test_benchmark_rescales_the_kits_map_into_theirs():
    # benchmarks/classic_movielens.py --ms-split turns per-user map@10 into MAP per #relevant
    bench = load_benchmark("classic_movielens")
    hits = np.zeros((3, 10), dtype=bool)
    hits[0, [0, 2]] = True                 # 12 relevant: AP sum 1 + 2/3
    hits[1, 1] = True                      # 1 relevant: AP sum 1/2
    n_rel = np.array([12, 1, 3])
    per_user = pd.DataFrame({"n_relevant": n_rel, "map@10": M.map_at_k(hits, n_rel)})
    assert bench.map_per_relevant(per_user) == pytest.approx(
        M.map_per_relevant_at_k(hits, n_rel).mean())
    assert bench.map_per_relevant(per_user) == pytest.approx(((1 + 2 / 3) / 12 + 0.5) / 3)
    assert bench.MSR_PUBLISHED.set_index("model").loc["BPR (cornac)", "map per #rel"] == 0.132478
