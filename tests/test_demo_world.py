"""The demo world at any size: the default world (and the sizes the notebooks use) stay exactly
as they were, titles never run out, and above MAX_CELLS the world is built in user chunks."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from perso_kit.data import demo
from perso_kit.data.demo import make_world


def digest(df: pd.DataFrame) -> str:
    df = df.astype({c: str for c in df.columns if df[c].dtype == object})
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=True).values.tobytes()
                          ).hexdigest()[:16]


# hashes of the worlds as the notebooks' pinned numbers know them (before chunking and sequels)
PINNED = {
    "default": ({}, "421c08dc6a88ba83", "27c791c23b3e2aaf"),
    "drift 0": (dict(seed=42, drift=0), "52ce9be80df9583c", "27c791c23b3e2aaf"),
    "seed 7": (dict(seed=7), "7e47688873040daf", "9c23c23d0c18e6f0"),
    "150 x 300": (dict(seed=42, n_users=150, n_items=300, drift=1), "c7a020a95a9bfb55",
                  "892a3be2f8ce9eb3"),
    "1000 x 3000": (dict(seed=42, n_items=3000), "3fcac329e7d56ebe", "16e49172738bc3d7"),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_worlds_the_notebooks_use_are_bit_identical(name, demo_world):
    kwargs, interactions, items = PINNED[name]
    world = demo_world if name == "default" else make_world(**kwargs)
    assert (digest(world.dataset.interactions), digest(world.dataset.items)) == \
        (interactions, items)


def test_the_digest_sees_a_one_rating_change(demo):
    changed = demo.interactions.copy()
    changed.loc[0, "rating"] += 1
    assert digest(changed) != digest(demo.interactions)


@pytest.mark.parametrize("shape, axis", [((7, 5), 1), ((7, 5), 0), ((3, 700_000), 1),
                                         ((300, 9_000), 1), ((9_000, 300), 0)])
def test_standardize_gives_the_numbers_of_the_plain_expression(shape, axis):
    # the world generator standardizes in place, squaring blocks of rows (or columns) to spare
    # memory; the worlds stay bit-identical only if every number equals numpy's own
    a = np.random.default_rng(0).normal(3.0, 2.0, shape) ** 3
    plain = (a - a.mean(axis, keepdims=True)) / a.std(axis, keepdims=True)
    np.testing.assert_array_equal(demo._standardize(a.copy(), axis=axis), plain)


def test_titles_never_run_out():
    voc = demo.vocabulary()
    titles = demo._make_titles(np.random.default_rng(1), 30_000, voc)
    assert len(titles) == 30_000 and len(set(titles)) == 30_000
    drawn = [t for t in titles if ": Part " not in t]
    assert 2_500 < len(drawn) < 3_200                 # what the word lists give
    assert titles[len(drawn)] == f"{drawn[0]}: Part 2"
    assert titles[-1] == f"{drawn[(30_000 - len(drawn) - 1) % len(drawn)]}: Part " \
        f"{(30_000 - len(drawn) - 1) // len(drawn) + 2}"
    # a short list is a prefix of a long one: asking for more titles changes none of the first
    assert demo._make_titles(np.random.default_rng(1), 1_800, voc) == titles[:1_800]


@pytest.fixture(scope="module")
def chunked():
    """A 400 x 150 world forced through the chunked path (chunks of 40 users)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(demo, "MAX_CELLS", 1_000)
    mp.setattr(demo, "CHUNK_CELLS", 6_000)
    try:
        yield make_world(seed=3, n_users=400, n_items=150)
    finally:
        mp.undo()


def test_chunked_world_is_a_valid_log(chunked):
    ds = chunked.dataset
    inter = ds.interactions
    assert ds.n_users == 400 and ds.n_items == 150
    assert not inter.duplicated(["user_id", "item_id"]).any()
    per_user = inter.groupby("user_id").size()
    assert len(per_user) == 400 and per_user.min() >= 3 and per_user.max() <= 60
    new = set(ds.meta["new_item_ids"])
    late = inter["item_id"].isin(new)
    assert (inter.loc[late, "timestamp"] >= demo.CUTOFF).all()
    assert (inter.loc[~late, "timestamp"] < demo.CUTOFF).all()


def test_chunked_world_recomputes_its_ground_truth(chunked):
    ds = chunked.dataset
    users, items = ds.user_ids[[0, 39, 40, 399]], ds.item_ids     # across three chunks
    z = chunked.true_utility(users, items)
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-5)             # z-scores per user
    np.testing.assert_allclose(z.std(1), 1, atol=1e-4)
    np.testing.assert_array_equal(z, chunked.true_utility(users, items))
    block, _ = demo._chunk_utility(3, 1, 40, chunked._utility.attrs, chunked._utility.quality)
    np.testing.assert_allclose(z[2], block[0], rtol=1e-6)            # user 41: chunk 1, row 0


def test_chunked_users_watch_what_they_like(chunked):
    # the same recipe as the dense world (0.66 and 0.89 there, same size and seed): watched
    # items have higher true utility than the user's average item (0), ratings follow it
    inter = chunked.dataset.interactions
    ds = chunked.dataset
    z = chunked.true_utility(ds.user_ids, ds.item_ids)
    watched = z[ds.user_index(inter["user_id"]), ds.item_index(inter["item_id"])]
    assert watched.mean() == pytest.approx(0.66, abs=0.08)
    assert np.corrcoef(watched, inter["rating"])[0, 1] == pytest.approx(0.89, abs=0.04)


def test_chunked_and_dense_worlds_look_alike(chunked):
    dense = make_world(seed=3, n_users=400, n_items=150).dataset
    ds = chunked.dataset
    assert ds.n_interactions == pytest.approx(dense.n_interactions, rel=0.15)
    assert ds.interactions["rating"].mean() == pytest.approx(
        dense.interactions["rating"].mean(), abs=0.15)
    top = dense.item_popularity().sort_values(ascending=False).index[:15]
    share = ds.interactions["item_id"].isin(top).mean()
    assert share == pytest.approx(dense.interactions["item_id"].isin(top).mean(), abs=0.1)
