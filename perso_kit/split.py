"""Train / validation / test splits. Each says what it holds out and is seeded.

=========================  ==================================================================
split                      what it holds out
=========================  ==================================================================
:func:`random_per_user`    a random share of *each user's* interactions (stratified by user)
:func:`temporal`           everything after a point in time, for all users at once
:func:`leave_last_n`       each user's last ``n`` interactions (and the ``n`` before, for
                           validation)
:func:`cold_start_users`   all interactions of a random set of users (new users)
:func:`cold_start_items`   all interactions with a random set of items (new items)
:func:`new_items`          the demo world's new releases: everything after its cutoff
:func:`msr_stratified`     Microsoft Recommenders' stratified split, row for row (to set the
                           kit's numbers beside their published table)
=========================  ==================================================================

All splits return a :class:`Split` of views of the same :class:`~perso_kit.data.Dataset`: the
catalog and the users table are shared, only the interactions differ.

>>> from perso_kit import load_dataset
>>> split = random_per_user(load_dataset("demo"), test_fraction=0.25, seed=42)
>>> print(split.description)           # doctest: +ELLIPSIS
random 25% of each user's interactions held out for test ...
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import config
from .data.dataset import Dataset


@dataclass(frozen=True, eq=False)
class Split:
    """Views of one dataset: ``train`` to fit on, ``test`` to score against, and optionally
    ``validation`` (carved from the training part, for tuning) -- plus a sentence saying what
    was held out."""

    train: Dataset
    test: Dataset
    validation: Dataset | None
    description: str
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.test.n_interactions == 0:
            raise ValueError(f"this split leaves nothing to test on ({self.description}); "
                             "use a larger test share or a dataset with more interactions")
        if self.train.n_interactions == 0:
            raise ValueError(f"this split leaves nothing to train on ({self.description})")

    @property
    def test_users(self) -> np.ndarray:
        """Users with at least one test interaction: the users an evaluation scores."""
        return np.sort(self.test.interactions["user_id"].unique())

    def __repr__(self) -> str:
        v = f", validation {self.validation.n_interactions:,}" if self.validation else ""
        return (f"Split(train {self.train.n_interactions:,}{v}, test "
                f"{self.test.n_interactions:,}: {self.description})")

    def summary(self) -> pd.DataFrame:
        """Interactions, users and items in each part, as a small table."""
        parts = {"train": self.train, "validation": self.validation, "test": self.test}
        return pd.DataFrame({
            name: {"interactions": p.n_interactions,
                   "users": p.interactions["user_id"].nunique(),
                   "items": p.interactions["item_id"].nunique()}
            for name, p in parts.items() if p is not None}).T


def shared_pairs(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """How many rows of ``b`` have a (user, item) pair that is also in ``a``.

    >>> a = pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6]})
    >>> shared_pairs(a, pd.DataFrame({"user_id": [1, 2], "item_id": [6, 5]}))
    1
    """
    if a.empty or b.empty:
        return 0
    both = pd.concat([a[["user_id", "item_id"]], b[["user_id", "item_id"]]], ignore_index=True)
    u = pd.factorize(both["user_id"])[0].astype(np.int64)
    i = pd.factorize(both["item_id"])[0].astype(np.int64)
    code = u * (int(i.max()) + 1) + i
    return int(np.isin(code[len(a):], code[:len(a)]).sum())


def never_both_sides(split_function):
    """Make a split function refuse to return a split with one (user, item) pair in train and in
    test (or validation): that happens only when the dataset holds duplicate pairs, and an
    evaluation would then count a training item as a hit to predict. (A :class:`Split` built by
    hand may hold such pairs on purpose, e.g. to test what re-watches do.)"""
    import functools

    @functools.wraps(split_function)
    def checked(*args, **kwargs) -> Split:
        split = split_function(*args, **kwargs)
        for name, part in (("test", split.test), ("validation", split.validation)):
            shared = 0 if part is None else shared_pairs(split.train.interactions,
                                                         part.interactions)
            if shared:
                raise ValueError(
                    f"{shared:,} (user, item) pairs are in both train and {name} "
                    f"({split.description}): the dataset holds duplicate pairs, so an "
                    "evaluation would count a training item as a hit to predict. Build the "
                    "dataset with perso_kit.data.make_dataset, which keeps the latest row of "
                    "each pair")
        return split
    return checked


def _seed(seed: int | None) -> int:
    return config.seed() if seed is None else int(seed)


def _check_fraction(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}: a share of "
                         "0 leaves nothing to test on, a share of 1 leaves nothing to train on")


def _per_user_tail(df: pd.DataFrame, n_tail: np.ndarray) -> np.ndarray:
    """Mask of the last ``n_tail[user]`` rows of each user in the (already ordered) frame."""
    pos_from_end = df.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    return pos_from_end < n_tail


@never_both_sides
def random_per_user(ds: Dataset, test_fraction: float = 0.25, validation_fraction: float = 0.0,
                    seed: int | None = None) -> Split:
    """Hold out a random ``test_fraction`` of each user's interactions for test.

    The protocol of Microsoft Recommenders' MovieLens benchmark is
    ``random_per_user(ds, test_fraction=0.25)``. Each user with ``n`` interactions keeps
    ``n - round(n * test_fraction)`` for training (at least one), so every user is both
    trained on and, if ``n`` is large enough, tested. ``validation_fraction`` then carves a
    share of the *training* part the same way, for tuning without touching the test part.
    """
    _check_fraction("test_fraction", test_fraction)
    seed = _seed(seed)
    rng = np.random.default_rng(seed)
    df = ds.interactions.iloc[rng.permutation(ds.n_interactions)]
    test_mask = _per_user_tail(df, _n_holdout(df, test_fraction))
    train_df, test_df = df[~test_mask], df[test_mask]
    desc = (f"random {test_fraction:.0%} of each user's interactions held out for test "
            f"(seed {seed})")
    validation = None
    if validation_fraction:
        _check_fraction("validation_fraction", validation_fraction)
        val_mask = _per_user_tail(train_df, _n_holdout(train_df, validation_fraction))
        validation = ds.with_interactions(train_df[val_mask].sort_index(), "validation")
        train_df = train_df[~val_mask]
        desc += f"; {validation_fraction:.0%} of the rest for validation"
    return Split(ds.with_interactions(train_df.sort_index(), "train"),
                 ds.with_interactions(test_df.sort_index(), "test"), validation, desc, seed)


def _n_holdout(df: pd.DataFrame, fraction: float) -> np.ndarray:
    """Per row: how many of its user's interactions to hold out (keeping at least one)."""
    n = df.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    return np.minimum(np.round(n * fraction).astype(int), n - 1)


@never_both_sides
def temporal(ds: Dataset, test_fraction: float = 0.2, cutoff: int | None = None) -> Split:
    """Hold out everything after a point in time, for all users at once.

    The point is ``cutoff`` (a timestamp) if given, else the time that leaves the last
    ``test_fraction`` of interactions for test. Users and items that first appear after the
    cutoff are in the test part only: this is how a deployed system meets the future.
    """
    if cutoff is None:
        _check_fraction("test_fraction", test_fraction)
        cutoff = int(np.quantile(ds.interactions["timestamp"], 1 - test_fraction))
    after = ds.interactions["timestamp"].to_numpy() >= cutoff
    when = pd.Timestamp(cutoff, unit="s").date()
    return Split(ds.with_interactions(ds.interactions[~after], "train"),
                 ds.with_interactions(ds.interactions[after], "test"), None,
                 f"all interactions from {when} on held out for test (global temporal split)")


@never_both_sides
def leave_last_n(ds: Dataset, n: int = 1, validation_n: int = 0) -> Split:
    """Hold out each user's last ``n`` interactions for test (and the ``validation_n`` before
    them for validation). Users with no more than ``n + validation_n`` interactions stay
    entirely in training and are not evaluated."""
    if n < 1 or validation_n < 0:
        raise ValueError(f"n must be >= 1 and validation_n >= 0, got n={n}, "
                         f"validation_n={validation_n}")
    df = ds.interactions.sort_values(["timestamp"], kind="stable")
    size = df.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    long_enough = size > n + validation_n
    test_mask = _per_user_tail(df, np.where(long_enough, n, 0))
    holdout = _per_user_tail(df, np.where(long_enough, n + validation_n, 0))
    val_mask = holdout & ~test_mask
    desc = f"each user's last {n} interaction(s) held out for test"
    if validation_n:
        desc += f", the {validation_n} before for validation"
    short = int((~long_enough).any() and df.loc[~long_enough, "user_id"].nunique())
    if short:
        desc += f"; {short} users with too few interactions kept in training only"
    return Split(ds.with_interactions(df[~holdout].sort_index(), "train"),
                 ds.with_interactions(df[test_mask].sort_index(), "test"),
                 ds.with_interactions(df[val_mask].sort_index(), "validation")
                 if validation_n else None, desc)


@never_both_sides
def cold_start_users(ds: Dataset, fraction: float = 0.1, n_visible: int = 0,
                     seed: int | None = None) -> Split:
    """Hold out all interactions of a random ``fraction`` of users (new users).

    With ``n_visible > 0`` each held-out user's *first* ``n_visible`` interactions stay in
    training: a user who has just signed up and rated a few items.
    """
    _check_fraction("fraction", fraction)
    if isinstance(n_visible, bool) or not isinstance(n_visible, (int, np.integer)) \
            or n_visible < 0:
        raise ValueError(f"n_visible is how many first interactions of each new user stay in "
                         f"training: a whole number of at least 0, got {n_visible!r}")
    seed = _seed(seed)
    users = ds.interactions["user_id"].unique()
    rng = np.random.default_rng(seed)
    held = rng.choice(users, size=max(1, int(round(fraction * len(users)))), replace=False)
    df = ds.interactions.sort_values("timestamp", kind="stable")
    is_held = df["user_id"].isin(held).to_numpy()
    early = df.groupby("user_id", sort=False).cumcount().to_numpy() < n_visible
    test_mask = is_held & ~early
    desc = (f"all interactions of {len(held)} random users ({fraction:.0%}) held out "
            f"for test" + (f", but their first {n_visible}" if n_visible else "")
            + f" (seed {seed})")
    return Split(ds.with_interactions(df[~test_mask].sort_index(), "train"),
                 ds.with_interactions(df[test_mask].sort_index(), "test"), None, desc, seed)


@never_both_sides
def cold_start_items(ds: Dataset, fraction: float = 0.1, items=None,
                     seed: int | None = None) -> Split:
    """Hold out every interaction with a random ``fraction`` of the interacted items (or with
    the given ``items``): the held-out items have no training data at all (new items)."""
    seed = _seed(seed)
    if items is None:
        _check_fraction("fraction", fraction)
        pool = ds.interactions["item_id"].unique()
        rng = np.random.default_rng(seed)
        items = rng.choice(pool, size=max(1, int(round(fraction * len(pool)))), replace=False)
        desc = f"all interactions with {len(items)} random items ({fraction:.0%}) held out"
    else:
        items = np.asarray(items)
        ds.item_index(items)  # unknown ids fail here, with their names
        desc = f"all interactions with {len(items)} given items held out"
    is_held = ds.interactions["item_id"].isin(items).to_numpy()
    return Split(ds.with_interactions(ds.interactions[~is_held], "train"),
                 ds.with_interactions(ds.interactions[is_held], "test"), None,
                 desc + f" for test (seed {seed})", seed)


@never_both_sides
def new_items(ds: Dataset) -> Split:
    """The demo world's item cold start: train on everything before its cutoff, test on the
    interactions with items released after it (which have no training data)."""
    if "new_item_ids" not in ds.meta or "cutoff" not in ds.meta:
        raise ValueError(f"{ds.name} has no new releases; use cold_start_items(ds) to hold out "
                         "random items instead")
    cutoff = ds.meta["cutoff"]
    before = ds.interactions["timestamp"].to_numpy() < cutoff
    is_new = ds.interactions["item_id"].isin(ds.meta["new_item_ids"]).to_numpy()
    return Split(ds.with_interactions(ds.interactions[before], "train"),
                 ds.with_interactions(ds.interactions[~before & is_new], "test"), None,
                 f"train before {pd.Timestamp(cutoff, unit='s').date()}; test: interactions "
                 f"with the {len(ds.meta['new_item_ids'])} items released after it")


@never_both_sides
def msr_stratified(ds: Dataset, ratio: float = 0.75, seed: int = 42,
                   filter_by: str = "user", before_2022: bool = False) -> Split:
    """The stratified split of Microsoft Recommenders (MSR), row for row: for the same data in
    the same row order and the same ``seed``, the same ratings land in train and in test as
    with their ``python_stratified_split(data, ratio, filter_by=filter_by, seed=seed)``.

    Their procedure (``recommenders/datasets/python_splitters.py``), done here with the same
    random numbers:

    1. draw one uniform number per row, in the data's row order, from NumPy's legacy generator
       seeded with ``seed`` (what ``np.random.seed(seed); np.random.rand(n)`` gives);
    2. within each user (``filter_by="user"``) or each item (``filter_by="item"``), order the
       rows by that number;
    3. a group of ``n`` rows keeps its first ``round(ratio * n)`` rows for training, where
       ``round`` rounds halves to even (pandas' rounding: ``round(2.5) = 2``,
       ``round(1.5) = 2``); the rest is the test part.

    A group of one row stays in training.

    ``before_2022=True`` reproduces the splitter their code used from 2019 until July 2022
    (when it was rewritten as above), which produced most rows of their published MovieLens
    table: each group, in the data's row order, is shuffled by ``group.sample(frac=1,
    random_state=seed)`` -- a fresh ``np.random.RandomState(seed).permutation(n)`` for every
    group, so all groups of one size are shuffled alike -- and its first ``round(ratio * n)``
    rows (halves to even) are for training.

    Their MovieLens benchmark notebook calls it with ``ratio=0.75, filter_by="item"`` (75% of
    each *movie's* ratings for training), and the
    kit's :func:`random_per_user` is the per-user variant with its own random numbers; use
    this function only to compare with their published numbers.

    >>> from perso_kit import load_dataset
    >>> msr_stratified(load_dataset("demo"), filter_by="item").description  # doctest: +ELLIPSIS
    "Microsoft Recommenders' stratified split: 75% of each item's interactions for training..."
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (float, np.floating)):
        raise ValueError(f"ratio is the training share, a float between 0 and 1, got {ratio!r} "
                         "(a list of ratios, which their splitter also accepts, is not "
                         "supported here)")
    if not 0 < ratio < 1:
        raise ValueError(f"ratio is the training share and must be between 0 and 1 "
                         f"(exclusive), got {ratio}")
    if filter_by not in ("user", "item"):
        raise ValueError(f"filter_by must be 'user' or 'item', got {filter_by!r}")
    if before_2022:
        return _msr_stratified_before_2022(ds, ratio, int(seed), filter_by)
    column = f"{filter_by}_id"
    df = ds.interactions
    draws = np.random.RandomState(int(seed)).rand(len(df))
    # their sort: by the group column, then by the random number (ties between two random
    # numbers do not happen in practice; lexsort is stable, as pandas' sort on two keys is)
    order = np.lexsort((draws, df[column].to_numpy()))
    groups = df[column].to_numpy()[order]
    first = np.r_[True, groups[1:] != groups[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, len(groups)])
    rank = np.arange(len(groups)) - np.repeat(starts, sizes) + 1          # 1, 2, ... per group
    n_train = np.round(ratio * np.repeat(sizes, sizes))                  # halves to even
    is_train = np.empty(len(df), dtype=bool)
    is_train[order] = rank <= n_train
    desc = (f"Microsoft Recommenders' stratified split: {ratio:.0%} of each {filter_by}'s "
            f"interactions for training, the rest for test (seed {seed})")
    return Split(ds.with_interactions(df[is_train], "train"),
                 ds.with_interactions(df[~is_train], "test"), None, desc, int(seed))


def _msr_stratified_before_2022(ds: Dataset, ratio: float, seed: int, filter_by: str) -> Split:
    """:func:`msr_stratified` with ``before_2022=True``: shuffle each group with a freshly
    seeded permutation, keep its first ``round(ratio * n)`` rows for training."""
    df = ds.interactions
    groups = pd.factorize(df[f"{filter_by}_id"])[0]
    order = np.argsort(groups, kind="stable")            # each group's rows, in row order
    sizes = np.bincount(groups)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    is_train = np.zeros(len(df), dtype=bool)
    permutations: dict[int, np.ndarray] = {}
    for start, n in zip(starts, sizes):
        if n not in permutations:                        # what group.sample(frac=1) draws
            permutations[n] = np.random.RandomState(seed).permutation(n)
        rows = order[start:start + n][permutations[n]]
        is_train[rows[:round(ratio * n)]] = True          # Python's round: halves to even
    desc = (f"Microsoft Recommenders' stratified split as before 2022: {ratio:.0%} of each "
            f"{filter_by}'s interactions for training, the rest for test (seed {seed})")
    return Split(ds.with_interactions(df[is_train], "train"),
                 ds.with_interactions(df[~is_train], "test"), None, desc, seed)
