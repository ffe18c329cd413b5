"""What personalization with an LLM costs: tokens per user, dollars at scale, and the frontier.

A prompt's size in tokens is a property of the prompt, not of who answers it. So the tokens a
method sends per user can be measured with any backend -- even the offline stand-in, whose
token counts are *estimates* made by :func:`perso_kit.llm.pricing.estimate_tokens` (about one
token per 4 characters, plus 4 per message) -- and priced with the dated price table
``data/llm_prices.csv`` for every model in it:

* :func:`usage_per_user` turns a call log (``llm.call_log()``, or an ``LLMReranker.log_``) into
  calls, tokens in and out, and latency per user;
* :func:`cost_at_scale` prices those tokens for ``n_users`` users with each model of the table
  (linear in users: cost = users x (tokens in x input price + tokens out x output price) / 1e6);
* :func:`cache_savings` says what the cache hits of a log would have cost at a model's price;
* :func:`frontier_table` and :func:`pareto_front` put quality beside cost and latency per method;
* :func:`score_methods`, :func:`interval_view` and :func:`paired_differences` measure that
  quality with its uncertainty: ready-made lists of every method scored on the same users, with
  bootstrap intervals over users (:mod:`perso_kit.evaluate`), per segment of users, and each
  method's paired difference with a reference method.

Answer tokens of the stand-in are the length of *its* answers, and its latency is an in-process
function call: both say little about a real model. Prompt tokens are what the prompts weigh.

>>> import pandas as pd
>>> log = pd.DataFrame({"user_id": [1, 1, 2], "prompt_tokens": [1000, 1000, 1000],
...                     "completion_tokens": [100, 100, 100], "latency_s": [0.5, 0.5, 0.5]})
>>> u = usage_per_user(log)
>>> u["calls_per_user"], u["prompt_tokens_per_user"], u["completion_tokens_per_user"]
(1.5, 1500.0, 150.0)
>>> t = cost_at_scale({"rerank": u}, n_users=1_000_000, models=["gpt-4o-mini"])
>>> round(float(t.loc[0, "cost_usd"]), 2)   # 1e6 x (1500 x 0.15 + 150 x 0.60) / 1e6
315.0
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .llm.pricing import PriceTable

USAGE_FIELDS = ("calls_per_user", "prompt_tokens_per_user", "completion_tokens_per_user",
                "latency_s_per_user")


def usage_per_user(log: pd.DataFrame, n_users: int | None = None) -> dict:
    """Calls, tokens in/out and latency per user, from a log of calls.

    Parameters
    ----------
    log : DataFrame
        One row per call (``llm.call_log()``) or per user (``LLMReranker.log_``, which has an
        ``n_calls`` column). Needs ``prompt_tokens`` and ``completion_tokens``; ``latency_s``
        is used when present.
    n_users : int, optional
        Users the log served. Default: distinct ``user_id`` values of the log (required when
        the log has no ``user_id`` column).

    Returns
    -------
    dict with ``calls_per_user``, ``prompt_tokens_per_user``, ``completion_tokens_per_user``,
    ``latency_s_per_user`` (summed over a user's calls: the time of sequential calls).
    Cache hits count like sent calls: their tokens are those the prompt weighs, which is what a
    deployment without that cache would pay for.

    Example
    -------
    >>> usage_per_user(pd.DataFrame({"prompt_tokens": [10, 30], "completion_tokens": [2, 2]}),
    ...                n_users=2)["prompt_tokens_per_user"]
    20.0
    """
    missing = {"prompt_tokens", "completion_tokens"} - set(log.columns)
    if missing:
        raise ValueError(f"the log needs the columns {sorted(missing)}; pass llm.call_log() "
                         "or an LLMReranker's log_")
    if n_users is None:
        if "user_id" not in log.columns:
            raise ValueError("the log has no user_id column: pass n_users=<users it served>")
        n_users = log["user_id"].nunique()
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    calls = log["n_calls"].sum() if "n_calls" in log.columns else len(log)
    latency = log["latency_s"].sum() if "latency_s" in log.columns else np.nan
    return {"calls_per_user": float(calls / n_users),
            "prompt_tokens_per_user": float(log["prompt_tokens"].sum() / n_users),
            "completion_tokens_per_user": float(log["completion_tokens"].sum() / n_users),
            "latency_s_per_user": float(latency / n_users)}


def _prices(prices) -> PriceTable:
    if prices is None:
        return PriceTable()
    return prices if isinstance(prices, PriceTable) else PriceTable(prices)


def chat_models(prices=None) -> list[str]:
    """The chat models of the price table, in table order."""
    table = _prices(prices).table
    if "kind" in table.columns:
        table = table[table["kind"].astype(str).str.strip() == "chat"]
    return table["model"].astype(str).tolist()


def cost_at_scale(usage: Mapping[str, Mapping], n_users: int = 1_000_000,
                  models: Iterable[str] | None = None, prices=None,
                  requests_per_user: float = 1.0) -> pd.DataFrame:
    """Dollars to serve ``n_users`` users with each method and each priced model.

    Parameters
    ----------
    usage : {method: dict}
        Per-user usage of each method, as :func:`usage_per_user` returns it (only
        ``prompt_tokens_per_user`` and ``completion_tokens_per_user`` are needed). A method
        with no LLM calls (a classic recommender) has zero tokens and costs 0 here -- its
        compute is not in this table.
    n_users : int
        Users served.
    models : list of str, optional
        Models of the price table to price with (default: every chat model of the table).
    prices : PriceTable or path, optional
        Default: the kit's ``data/llm_prices.csv``.
    requests_per_user : float
        How many times each user is served (e.g. 30 for a month of daily refreshes).

    Returns
    -------
    DataFrame with ``method, model, users, prompt_tokens, completion_tokens, cost_usd,
    cost_per_user_usd, as_of`` (the date of the price). No prompt caching discount is applied:
    every prompt token is priced as fresh input.
    """
    if n_users < 0 or requests_per_user < 0:
        raise ValueError("n_users and requests_per_user must be non-negative")
    table = _prices(prices)
    models = chat_models(table) if models is None else list(models)
    rows = []
    for model in models:
        price = table.lookup(model)
        if price is None:
            raise ValueError(f"model {model!r} is not in the price table; add a row to "
                             "data/llm_prices.csv or pick one of " + ", ".join(chat_models(table)))
        for method, u in usage.items():
            scale = n_users * requests_per_user
            p_tok = float(u.get("prompt_tokens_per_user", 0.0)) * scale
            c_tok = float(u.get("completion_tokens_per_user", 0.0)) * scale
            cost = (p_tok * price.input_per_1m + c_tok * price.output_per_1m) / 1e6
            rows.append({"method": method, "model": model, "users": n_users,
                         "prompt_tokens": p_tok, "completion_tokens": c_tok, "cost_usd": cost,
                         "cost_per_user_usd": cost / n_users if n_users else 0.0,
                         "as_of": price.as_of})
    return pd.DataFrame(rows)


def cost_grid(costs: pd.DataFrame, value: str = "cost_usd") -> pd.DataFrame:
    """:func:`cost_at_scale` as a method x model table (methods in their original order)."""
    out = costs.pivot(index="method", columns="model", values=value)
    return out.loc[costs["method"].unique(), costs["model"].unique()]


def serving_hours(latency_s_per_user: float, n_users: int, concurrency: int = 1) -> float:
    """Wall-clock hours to serve ``n_users`` when each takes ``latency_s_per_user`` seconds and
    ``concurrency`` users are served at once (no rate limits assumed).

    >>> serving_hours(2.0, 3600, concurrency=2)
    1.0
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return float(latency_s_per_user * n_users / concurrency / 3600)


def cache_savings(log: pd.DataFrame, model: str = "gpt-4o-mini", prices=None) -> dict:
    """What a call log cost at ``model``'s table price, and what its cache hits saved.

    Cache hits send nothing (``llm.sent_log()`` has no row for them) and cost nothing; their
    tokens are those recorded with the stored answer. Priced here as if every call were sent
    to ``model``.

    Returns
    -------
    dict with ``calls``, ``cached_calls``, ``cost_without_cache_usd`` (every call paid),
    ``cost_with_cache_usd`` (only calls that were sent), ``saved_usd`` and ``saved_share``.

    Example
    -------
    >>> log = pd.DataFrame({"prompt_tokens": [1000, 1000], "completion_tokens": [0, 0],
    ...                     "cached": [False, True]})
    >>> cache_savings(log, "gpt-4o-mini")["saved_usd"]     # 1000 x 0.15 / 1e6
    0.00015
    """
    price = _prices(prices).lookup(model)
    if price is None:
        raise ValueError(f"model {model!r} is not in the price table")
    if "cached" not in log.columns:
        raise ValueError("the log needs a 'cached' column (use llm.call_log())")
    each = (log["prompt_tokens"] * price.input_per_1m
            + log["completion_tokens"] * price.output_per_1m) / 1e6
    cached = log["cached"].astype(bool)
    full, paid = float(each.sum()), float(each[~cached].sum())
    return {"calls": int(len(log)), "cached_calls": int(cached.sum()),
            "cost_without_cache_usd": round(full, 12), "cost_with_cache_usd": round(paid, 12),
            "saved_usd": round(full - paid, 12),
            "saved_share": (full - paid) / full if full > 0 else 0.0}


def frontier_table(quality: Mapping[str, float], usage: Mapping[str, Mapping],
                   model: str = "gpt-4o-mini", prices=None, n_users: int = 1_000_000,
                   quality_name: str = "quality", intervals=None) -> pd.DataFrame:
    """Quality beside cost and latency, one row per method.

    ``quality`` maps method -> a quality number (e.g. nDCG@10; a dict, or a Series indexed by
    method); ``usage`` maps method -> :func:`usage_per_user` output (a method missing from
    ``usage`` makes no LLM calls: zero tokens, zero latency here). Costs are priced at
    ``model``'s table price. Columns:
    ``quality_name, calls_per_user, tokens_per_user, cost_per_million_users_usd,
    latency_s_per_user, on_front`` (:func:`pareto_front` on quality vs cost).

    ``intervals`` (optional) gives each method's confidence interval of its quality: a mapping
    method -> ``(lo, hi)``, or a DataFrame indexed by method whose two columns are ``lo`` and
    ``hi`` (e.g. the ``ndcg@10_lo``/``ndcg@10_hi`` columns of ``evaluate(..., ci=0.95)``). They
    become the columns ``<quality_name>_lo`` and ``<quality_name>_hi`` after the quality. The
    front itself is computed on the point estimates: where intervals overlap, the order of two
    methods on it is not established (compare them with :func:`paired_differences`).

    >>> t = frontier_table({"a": 0.30, "b": 0.25}, {}, quality_name="ndcg",
    ...                    intervals={"a": (0.2, 0.4), "b": (0.2, 0.3)})
    >>> t[["ndcg", "ndcg_lo", "ndcg_hi"]].loc["b"].tolist()
    [0.25, 0.2, 0.3]
    """
    quality = dict(quality.items())      # a dict or a Series (e.g. a column of evaluate's table)
    bounds = _intervals(intervals, quality)
    zero = dict.fromkeys(USAGE_FIELDS, 0.0)
    full = {m: {**zero, **usage.get(m, {})} for m in quality}
    costs = cost_at_scale(full, n_users=n_users, models=[model], prices=prices)
    costs = costs.set_index("method")
    cost_col = f"cost_per_{_users_label(n_users)}_users_usd"
    rows = []
    for m, q in quality.items():
        u = full[m]
        rows.append({"method": m, quality_name: float(q),
                     "calls_per_user": u["calls_per_user"],
                     "tokens_per_user": u["prompt_tokens_per_user"]
                     + u["completion_tokens_per_user"],
                     cost_col: costs.at[m, "cost_usd"],
                     "latency_s_per_user": u["latency_s_per_user"]})
    out = pd.DataFrame(rows).set_index("method")
    if bounds is not None:
        out.insert(1, f"{quality_name}_lo", [bounds[m][0] for m in out.index])
        out.insert(2, f"{quality_name}_hi", [bounds[m][1] for m in out.index])
    out["on_front"] = pareto_front(out[quality_name].to_numpy(), out[cost_col].to_numpy())
    return out


def _intervals(intervals, quality) -> dict | None:
    """``{method: (lo, hi)}`` from a mapping or a two-column DataFrame; every method of
    ``quality`` needs one, and its interval must hold its quality."""
    if intervals is None:
        return None
    if isinstance(intervals, pd.DataFrame):
        if intervals.shape[1] != 2:
            raise ValueError("intervals as a DataFrame needs exactly two columns: lo and hi")
        intervals = {m: (lo, hi) for m, lo, hi in intervals.itertuples()}
    out = {}
    for m, q in quality.items():
        if m not in intervals:
            raise ValueError(f"no interval for method {m!r}: give one (lo, hi) per method")
        lo, hi = (float(v) for v in intervals[m])
        if not lo <= float(q) <= hi:
            raise ValueError(f"the interval [{lo}, {hi}] of {m!r} does not hold its quality "
                             f"{float(q)}: are the columns in the order lo, hi?")
        out[m] = (lo, hi)
    return out


def _users_label(n: int) -> str:
    return "million" if n == 1_000_000 else f"{n}"


def pareto_front(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True for points no other point beats: at least as good *and* at most as costly, and
    strictly better in one of the two.

    >>> pareto_front(np.array([0.1, 0.3, 0.2]), np.array([0.0, 5.0, 9.0])).tolist()
    [True, True, False]
    """
    q, c = np.asarray(quality, float), np.asarray(cost, float)
    better_eq = (q[None, :] >= q[:, None]) & (c[None, :] <= c[:, None])
    strictly = (q[None, :] > q[:, None]) | (c[None, :] < c[:, None])
    return ~(better_eq & strictly).any(axis=1)


# ----------------------------------------------------------------------------- quality
def score_methods(lists: Mapping[str, pd.DataFrame], split, users, k: int = 10, by=None,
                  ci: float = 0.95, n_boot: int = 1000, seed: int | None = 0):
    """Score ready-made lists of several methods on the same users, with intervals.

    Each method's lists are scored by the protocol of :mod:`perso_kit.evaluate`
    (:func:`~perso_kit.evaluate.evaluate_recommendations`), so a classic recommender and an LLM
    re-ranker are measured by the same code, and no method is asked for its lists twice (an LLM
    method's calls are made once, where its lists were made).

    Parameters
    ----------
    lists : {method: DataFrame}
        Each method's recommendations (``user_id, item_id, rank``), e.g. ``model.recommend(users,
        k)``.
    split : Split
        The split the lists are scored on (relevant items: ``split.test``).
    users : ids
        The evaluated users (the same for every method).
    k : int
        List length scored.
    by : Series user_id -> label, optional
        Segments of users (e.g. whether a user's held-out item is a new release): one more row
        per method and segment, below its ``"all"`` row.
    ci, n_boot, seed
        Confidence level, resamples and seed of the bootstrap intervals over users. The same
        seed resamples the same users for every method. With a dozen users or fewer (a small
        segment, say), a percentile bootstrap interval is too narrow: read it as a lower bound
        of the uncertainty (see :func:`perso_kit.roles.ranker.mean_interval`).

    Returns
    -------
    (table, per_user)
        ``table``: one row per (method, segment) with ``model, segment, users``, every accuracy
        metric followed by its ``_lo``/``_hi`` bounds, and the beyond-accuracy metrics;
        ``per_user``: one row per (method, user) with the accuracy metrics, the input of
        :func:`paired_differences`.
    """
    from .evaluate import evaluate_recommendations

    tables, per_user = [], []
    for name, recs in lists.items():
        t, p = evaluate_recommendations(recs, split, k=k, users=users, by=by, model=name, ci=ci,
                                        n_boot=n_boot, seed=seed, return_per_user=True)
        tables.append(t)
        per_user.append(p)
    return pd.concat(tables, ignore_index=True), pd.concat(per_user, ignore_index=True)


def interval_view(table: pd.DataFrame, metric: str, digits: int = 3) -> pd.DataFrame:
    """A table to read: one row per method, one column per segment of users (with its number of
    users), each cell ``estimate [lo, hi]`` of ``metric`` (a :func:`score_methods` table).

    >>> t = pd.DataFrame({"model": ["A", "A"], "segment": ["all", "new"], "users": [10, 4],
    ...                   "ndcg": [0.5, 0.25], "ndcg_lo": [0.4, 0.0], "ndcg_hi": [0.6, 0.5]})
    >>> interval_view(t, "ndcg", digits=2).loc["A"].tolist()
    ['0.50 [0.40, 0.60]', '0.25 [0.00, 0.50]']
    """
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    missing = [c for c in (metric, lo, hi) if c not in table.columns]
    if missing:
        raise ValueError(f"the table has no column {missing}: score it with a confidence level "
                         "(score_methods(..., ci=0.95) or evaluate(..., ci=0.95))")
    cells = table.assign(
        column=[f"{s} ({n} users)" for s, n in zip(table["segment"], table["users"])],
        cell=[f"{v:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]"
              for v, a, b in zip(table[metric], table[lo], table[hi])])
    out = cells.pivot(index="model", columns="column", values="cell")
    out = out.loc[table["model"].unique(), cells["column"].unique()]
    out.columns.name = f"{metric} [interval]"
    return out


def paired_differences(scores: pd.DataFrame, reference: str, ci: float = 0.95,
                       n_boot: int = 1000, seed: int | None = 0) -> pd.DataFrame:
    """Each method against ``reference``, user by user: the paired bootstrap interval of the
    difference of their means (:func:`perso_kit.evaluate.paired_difference`).

    Parameters
    ----------
    scores : DataFrame
        One row per user, one column per method (e.g. ``per_user.pivot(index="user_id",
        columns="model", values="ndcg@10")`` of :func:`score_methods`).
    reference : str
        The column every other method is compared with.

    Returns
    -------
    DataFrame, one row per other method: ``difference`` (method minus reference), ``lo``, ``hi``
    and ``distinguishable`` (True when the interval excludes 0: only then do the two differ on
    these users at this confidence level).

    >>> s = pd.DataFrame({"ref": [0.0, 0.25, 0.5], "same": [0.0, 0.25, 0.5],
    ...                   "better": [0.5, 0.75, 1.0]})   # +0.5 for every user
    >>> paired_differences(s, "ref")["distinguishable"].to_dict()
    {'same': False, 'better': True}
    """
    from .evaluate import paired_difference

    if reference not in scores.columns:
        raise ValueError(f"no column {reference!r} in the scores; columns: {list(scores.columns)}")
    rows = {}
    for m in scores.columns:
        if m == reference:
            continue
        d = paired_difference(scores[m], scores[reference], ci=ci, n_boot=n_boot, seed=seed)
        rows[m] = {"difference": d.estimate, "lo": d.lo, "hi": d.hi,
                   "distinguishable": d.excludes_zero}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = f"method - {reference}"
    return out
