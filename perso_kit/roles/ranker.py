"""The LLM as ranker: it reads a user's history and orders a retriever's candidates.

Hou et al. (2023, "Large Language Models are Zero-Shot Rankers for Recommender Systems") frame
an LLM as a re-ranker over a short candidate list. This module does exactly that, behind the
kit's common :class:`~perso_kit.recommenders.base.Recommender` interface, so the same
evaluation code scores it and the retriever it re-ranks::

    retriever = ALS(seed=42)
    reranker = LLMReranker(llm, retriever, n_candidates=20).fit(split.train)
    recs = reranker.recommend(users, k=10)
    reranker.log_            # one row per user: status, ids outside the list, tokens, cost

Every answer is parsed and grounded to the candidate ids. Ids outside the candidate list are
counted (hallucinations) and dropped; candidates the answer leaves out keep the retriever's
order after the ranked ones; an answer with no usable id at all (or a failed call) **falls back
to the retriever's order** for that user and is counted -- never dropped silently.

Prompt variants (``variant=``): ``"zero-shot"`` (history, then candidates), ``"few-shot"``
(plus in-context examples from other users: their history and what they watched next),
``"recency"`` (the history, plus a sentence naming the most recent titles), ``"pointwise"``
(one call per candidate, asking for a 0-10 relevance score).

Bias tools: :func:`place_at` and :func:`position_bias` (put a known-relevant candidate at every
position in turn; :func:`position_curve` and :func:`position_effect` read the result),
:func:`popularity_probe`, :func:`popularity_effect` and :func:`popularity_summary` (is the
re-ranked top-k more popular than a popularity-blind order of the same candidates?),
:func:`hallucination_effect`, :func:`probe_verdicts` (the three verdicts in one row), and
:func:`aggregate_rankings` (Borda or mean rank over several permutations, the usual
mitigation). Every probe is calibrated on the planted models of :mod:`perso_kit.llm.planted`
(``tests/test_planted_probes.py``): it fires on the planted failure and stays quiet on the
clean control.

Uncertainty: :func:`evaluate_reranking` with ``ci=0.95`` adds per-user bootstrap intervals of
NDCG and hit rate, and of each re-ranker's paired NDCG gain over its retriever (from
:mod:`perso_kit.evaluate`); :func:`mean_interval` (Student t over users) gives the probes'
verdicts.

The offline stand-in answers these prompts with a registered heuristic that reads only the
prompt: it orders candidates by word overlap with the rest of the prompt, ties in prompt order.
It is not an LLM; its numbers show the mechanics, not what a language model does.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..evaluate import evaluate_recommendations
from ..llm import heuristics as H
from ..llm.offline import register_handler
from ..recommenders.base import RECOMMENDATION_COLUMNS, Recommender

VARIANTS = ("zero-shot", "few-shot", "recency", "pointwise")

RANKING_SCHEMA = {
    "title": "llm_ranking", "type": "object", "required": ["ranking"],
    "additionalProperties": False,
    "properties": {"ranking": {"type": "array", "items": {"type": "integer"},
                               "description": "candidate ids, most relevant first"}}}
RELEVANCE_SCHEMA = {
    "title": "llm_relevance", "type": "object", "required": ["score"],
    "additionalProperties": False,
    "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10,
                             "description": "0 = not for this viewer, 10 = a perfect match"}}}

#: the longest answer a pointwise score may take (tokens)
POINTWISE_MAX_TOKENS = 30


def ranking_max_tokens(n_candidates: int) -> int:
    """The longest answer a listwise ranking of ``n_candidates`` ids may take: about 6 tokens
    per id plus the JSON around them (every request of the kit is bounded).

    >>> ranking_max_tokens(20)
    160
    """
    return 40 + 6 * int(n_candidates)


SYSTEM = ("You are a movie recommender. You rank only the candidates you are given, by how "
          "likely this viewer is to watch each one next. Answer in JSON.")


# ------------------------------------------------------------------------------ prompts
def item_line(items: pd.DataFrame, item_id, with_id: bool = True) -> str:
    """One prompt line for an item: ``[12] Title (1999) — Drama, Sci-Fi`` (titles and genres
    only: nothing about the user)."""
    row = items.loc[item_id]
    genres = ", ".join(row["genres"]) if len(row["genres"]) else "unknown genre"
    head = f"[{item_id}] " if with_id else "- "
    return f"{head}{row['title']} — {genres}"


def history_block(train: Dataset, user_id, n: int = 10) -> tuple[str, list[str]]:
    """The user's last ``n`` training items as prompt lines (oldest first), and their titles."""
    hist = train.history(user_id, n=n)
    items = train.items.set_index("item_id")
    return "\n".join(item_line(items, i, with_id=False) for i in hist["item_id"]), \
        hist["title"].tolist()


def listwise_messages(train: Dataset, user_id, candidates: Sequence, variant: str = "zero-shot",
                      history_len: int = 10, examples: str = "") -> list[dict]:
    """The chat messages asking to rank ``candidates`` (ids, in the order shown) for a user.

    Example
    -------
    >>> msgs = listwise_messages(train, 1, [5, 7, 9])          # doctest: +SKIP
    >>> print(msgs[1]["content"])                               # doctest: +SKIP
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    items = train.items.set_index("item_id")
    hist, titles = history_block(train, user_id, history_len)
    parts = []
    if variant == "few-shot" and examples:
        parts.append("Examples of other viewers and what they watched next:\n" + examples)
    parts.append("This viewer watched, oldest first:\n" + (hist or "(nothing yet)"))
    if variant == "recency" and titles:
        recent = "; ".join(titles[-3:])
        parts.append(f"Their most recent watches were: {recent}. Weigh these most.")
    parts.append("Candidates:\n" + "\n".join(item_line(items, c) for c in candidates))
    parts.append(f"Rank all {len(candidates)} candidates, most likely next watch first. "
                 "Answer as JSON {\"ranking\": [candidate ids]}, using only the ids in "
                 "brackets.")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": "\n\n".join(parts)}]


def pointwise_messages(train: Dataset, user_id, candidate, history_len: int = 10) -> list[dict]:
    """The chat messages asking for a 0-10 relevance score of one candidate."""
    items = train.items.set_index("item_id")
    hist, _ = history_block(train, user_id, history_len)
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": "This viewer watched, oldest first:\n"
             + (hist or "(nothing yet)") + "\n\nCandidate:\n" + item_line(items, candidate)
             + "\n\nHow likely is the viewer to watch this candidate next? Answer as JSON "
             "{\"score\": 0-10}."}]


def few_shot_examples(train: Dataset, n_examples: int = 2, history_len: int = 5,
                      seed: int = 42, exclude=()) -> str:
    """In-context examples from other users: a few titles each, then the title they watched
    next (their last training item). Users are drawn with ``seed``; ``exclude`` skips some."""
    rng = np.random.default_rng(seed)
    activity = train.user_activity()
    pool = [u for u in activity[activity > history_len].index if u not in set(exclude)]
    if not pool:
        return ""
    chosen = rng.choice(pool, size=min(n_examples, len(pool)), replace=False)
    blocks = []
    for u in sorted(chosen.tolist()):
        titles = train.history(u, n=history_len + 1)["title"].tolist()
        blocks.append("- watched: " + "; ".join(titles[:-1]) + f"\n  next watched: {titles[-1]}")
    return "\n".join(blocks)


# ------------------------------------------------------------------------------ parsing
@dataclass
class ParsedRanking:
    """A model answer grounded to the candidate list.

    ``order`` always holds every candidate once (ranked ids first, then the ones the answer
    left out in the order shown); ``status`` is ``"ok"``, ``"fallback"`` (no usable id, the
    shown order is kept) or ``"failed"`` (the call itself failed: error or invalid JSON);
    ``n_returned`` ids came back, ``n_outside`` of them were not candidates.

    Two flags mark an answer that did not rank at all (see :func:`flag_non_ranking`):
    ``echo`` -- a usable answer whose order is the order shown, unchanged; ``tie`` -- a
    pointwise answer giving every candidate the same score (the shown order is kept)."""

    order: list
    status: str
    n_returned: int = 0
    n_outside: int = 0
    n_missing: int = 0
    echo: bool = False
    tie: bool = False


def flag_non_ranking(parsed: ParsedRanking, shown: Sequence, scores=None) -> ParsedRanking:
    """Set ``parsed.echo`` (a usable answer that returns the shown order unchanged) and
    ``parsed.tie`` (pointwise ``scores`` all equal, for more than one candidate).

    A model that echoes its input looks like a ranker -- every id is real, nothing fails --
    yet it ranked nothing: the re-ranked list is the retriever's. One echo can be chance (1 in
    n! for n candidates); a high ``echo_rate`` in :func:`summarize_log` is not.

    >>> flag_non_ranking(ParsedRanking([5, 7, 9], "ok"), [5, 7, 9]).echo
    True
    >>> flag_non_ranking(ParsedRanking([5, 7, 9], "ok"), [5, 7, 9], scores=[4, 4, 4]).tie
    True
    """
    ok = parsed.status == "ok" and len(shown) > 1
    parsed.echo = bool(ok and list(parsed.order) == list(shown))
    parsed.tie = bool(ok and scores is not None and len(set(scores)) == 1)
    return parsed


def parse_ranking(reply, candidates: Sequence) -> ParsedRanking:
    """Ground a reply to ``candidates`` (see :class:`ParsedRanking`).

    Example
    -------
    >>> from perso_kit.llm import Reply
    >>> p = parse_ranking(Reply(data={"ranking": [9, 42, 5]}), [5, 7, 9])
    >>> p.order, p.status, p.n_outside, p.n_missing
    ([9, 5, 7], 'ok', 1, 1)
    """
    cands = list(candidates)
    if reply is None or not getattr(reply, "ok", False) or not isinstance(reply.data, dict):
        return ParsedRanking(cands, "failed")
    raw = reply.data.get("ranking")
    if not isinstance(raw, list):
        return ParsedRanking(cands, "fallback")
    by_key = {str(c): c for c in cands}
    ranked, outside = [], 0
    for r in raw:
        c = by_key.get(str(r).strip().strip("[]"))
        if c is None:
            outside += 1
        elif c not in ranked:
            ranked.append(c)
    if not ranked:
        return ParsedRanking(cands, "fallback", len(raw), outside, len(cands))
    rest = [c for c in cands if c not in ranked]
    return ParsedRanking(ranked + rest, "ok", len(raw), outside, len(rest))


def place_at(others: Sequence, item, position: int) -> list:
    """``others`` with ``item`` inserted at 0-based ``position`` (the position-bias probe).

    >>> place_at([1, 2, 3], 9, 0), place_at([1, 2, 3], 9, 3)
    ([9, 1, 2, 3], [1, 2, 3, 9])
    """
    out = [o for o in others if o != item]
    if not 0 <= position <= len(out):
        raise ValueError(f"position must be in 0..{len(out)}, got {position}")
    return out[:position] + [item] + out[position:]


def aggregate_rankings(rankings: Iterable[Sequence], method: str = "borda") -> list:
    """One ranking from several rankings of the same items (e.g. of shuffled prompts).

    ``"borda"``: an item gets ``n - position`` points in each ranking (n items), most points
    first; ``"mean_rank"``: lowest mean position first. Ties are broken by the sorted item ids,
    so the result does not depend on the order the rankings are given in.

    >>> aggregate_rankings([[1, 2, 3], [2, 1, 3], [2, 3, 1]])
    [2, 1, 3]
    """
    if method not in ("borda", "mean_rank"):
        raise ValueError(f"method must be 'borda' or 'mean_rank', got {method!r}")
    rankings = [list(r) for r in rankings]
    if not rankings:
        return []
    items = sorted({i for r in rankings for i in r}, key=lambda x: (str(type(x)), x))
    n = len(items)
    points = {i: 0.0 for i in items}
    for r in rankings:
        for pos, i in enumerate(r):
            points[i] += (n - pos) if method == "borda" else -pos
        for i in items:                     # an item a ranking left out: last place
            if i not in r:
                points[i] += 0.0 if method == "borda" else -n
    return sorted(items, key=lambda i: -points[i])


def shuffled(candidates: Sequence, n: int, seed: int) -> list[list]:
    """``n`` presentations of ``candidates``: the given order first, then seeded shuffles."""
    rng = np.random.default_rng(seed)
    out = [list(candidates)]
    for _ in range(n - 1):
        out.append([candidates[i] for i in rng.permutation(len(candidates))])
    return out


# ------------------------------------------------------------------------------ the model
class LLMReranker(Recommender):
    """Re-rank a retriever's top ``n_candidates`` with an LLM (see the module docstring).

    Parameters
    ----------
    llm : perso_kit.llm.LLM
        The client (offline stand-in if nothing is configured).
    candidates : Recommender
        The retriever; fitted in :meth:`fit`.
    n_candidates : int
        Candidates per user shown to the LLM.
    variant : {"zero-shot", "few-shot", "recency", "pointwise"}
    history_len : int
        Most recent training items shown per user.
    n_permutations : int
        Rank this many presentations (the retriever's order, then seeded shuffles) and
        aggregate them with ``aggregate``: the position-bias mitigation, at n times the cost.
    aggregate : {"borda", "mean_rank"}
    n_examples : int
        In-context examples for ``variant="few-shot"``.
    seed, concurrency, progress
        Seed of shuffles and example users; parallel calls; progress bar.

    Attributes
    ----------
    log_ : DataFrame
        After :meth:`recommend`: one row per user with ``status`` (``ok``/``fallback``/
        ``failed``; with several permutations the worst one), ``n_calls``, ``n_returned``,
        ``n_outside``, ``n_failed_calls``, tokens, ``cost_usd`` and ``latency_s``;
        ``n_presentations`` ranked, ``n_echo`` of them answered in the order shown and
        ``n_tie`` with one score for all (see :func:`flag_non_ranking`).
    ranked_ : dict
        After :meth:`recommend`: each user's whole order of the candidates (before the cut
        at ``k``), to re-rank further without asking the LLM again.

    Example
    -------
    >>> from perso_kit.llm import get_llm
    >>> from perso_kit.recommenders import ALS
    >>> rr = LLMReranker(get_llm(), ALS(seed=42), n_candidates=10)   # doctest: +SKIP
    >>> rr.fit(split.train).recommend([1, 2], k=5)                    # doctest: +SKIP
    """

    def __init__(self, llm, candidates: Recommender, n_candidates: int = 20,
                 variant: str = "zero-shot", history_len: int = 10, n_permutations: int = 1,
                 aggregate: str = "borda", n_examples: int = 2, seed: int = 42,
                 concurrency: int = 8, progress: bool = True, name: str | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if n_candidates < 2 or n_permutations < 1:
            raise ValueError("n_candidates must be >= 2 and n_permutations >= 1")
        self.llm, self.candidates = llm, candidates
        self.n_candidates, self.variant, self.history_len = n_candidates, variant, history_len
        self.n_permutations, self.aggregate, self.n_examples = n_permutations, aggregate, n_examples
        self.seed, self.concurrency, self.progress = seed, concurrency, progress
        self._name = name or f"LLM reranker ({variant})"

    def fit(self, train: Dataset) -> "LLMReranker":
        super().fit(train)
        self.candidates.fit(train)
        return self

    def _requests(self, user_id, shown: list) -> list[dict]:
        """The chat requests for one presentation, each bounded by a ``max_tokens`` fit for
        its answer (see :func:`ranking_max_tokens`)."""
        if self.variant == "pointwise":
            return [{"messages": pointwise_messages(self.train_, user_id, c, self.history_len),
                     "json_schema": RELEVANCE_SCHEMA, "max_tokens": POINTWISE_MAX_TOKENS}
                    for c in shown]
        ex = (few_shot_examples(self.train_, self.n_examples, seed=self.seed, exclude=[user_id])
              if self.variant == "few-shot" else "")
        return [{"messages": listwise_messages(self.train_, user_id, shown, self.variant,
                                               self.history_len, ex),
                 "json_schema": RANKING_SCHEMA, "max_tokens": ranking_max_tokens(len(shown))}]

    def _parse(self, replies: list, shown: list) -> ParsedRanking:
        if self.variant != "pointwise":
            return flag_non_ranking(parse_ranking(replies[0], shown), shown)
        scores = [r.data.get("score") if r.ok and isinstance(r.data, dict) else None
                  for r in replies]
        if any(not isinstance(s, (int, float)) for s in scores):
            return ParsedRanking(list(shown), "failed", len(shown))
        order = sorted(range(len(shown)), key=lambda i: (-scores[i], i))   # ties: shown order
        return flag_non_ranking(ParsedRanking([shown[i] for i in order], "ok", len(shown)),
                                shown, scores)

    def rank_lists(self, lists: dict) -> tuple[dict, pd.DataFrame]:
        """Rank given candidate lists ``{user_id: [item ids in retriever order]}``.
        Returns ``({user_id: ranked ids}, log)``; the building block of :meth:`recommend`.
        A key may also be a tuple whose first element is the user id (several lists of one
        user, as in :func:`position_bias`)."""
        self._check_fitted()
        plan, requests = [], []
        for u, cands in lists.items():
            user = u[0] if isinstance(u, tuple) else u
            seed = self.seed + zlib.crc32(str(u).encode()) % 100_000
            for shown in shuffled(list(cands), self.n_permutations, seed):
                reqs = self._requests(user, shown)
                plan.append((u, shown, len(requests), len(reqs)))
                requests.extend(reqs)
        replies = self.llm.map(requests, concurrency=self.concurrency,
                               desc=f"{self.name}: {len(requests)} calls",
                               progress=self.progress)
        per_user: dict = {u: [] for u in lists}
        logs: dict = {u: {"user_id": u, "status": "ok", "n_calls": 0, "n_returned": 0,
                          "n_outside": 0, "n_failed_calls": 0, "n_presentations": 0,
                          "n_echo": 0, "n_tie": 0, "prompt_tokens": 0,
                          "completion_tokens": 0, "cost_usd": 0.0, "latency_s": 0.0}
                      for u in lists}
        severity = {"ok": 0, "fallback": 1, "failed": 2}
        for u, shown, start, n in plan:
            rs = replies[start:start + n]
            parsed = self._parse(rs, shown)
            log = logs[u]
            if parsed.status != "ok":       # this presentation falls back to the retriever
                parsed.order = list(lists[u])
            per_user[u].append(parsed.order)
            if severity[parsed.status] > severity[log["status"]]:
                log["status"] = parsed.status
            log["n_calls"] += n
            log["n_returned"] += parsed.n_returned
            log["n_outside"] += parsed.n_outside
            log["n_failed_calls"] += sum(not r.ok for r in rs)
            log["n_presentations"] += 1
            log["n_echo"] += int(parsed.echo)
            log["n_tie"] += int(parsed.tie)
            for r in rs:
                log["prompt_tokens"] += r.usage.prompt_tokens
                log["completion_tokens"] += r.usage.completion_tokens
                log["cost_usd"] += r.cost_usd if np.isfinite(r.cost_usd) else 0.0
                log["latency_s"] += r.latency_s
        ranked = {u: (orders[0] if len(orders) == 1
                      else aggregate_rankings(orders, self.aggregate))
                  for u, orders in per_user.items()}
        return ranked, pd.DataFrame(list(logs.values()))

    def recommend(self, users: Iterable | None = None, k: int = 10, exclude_seen: bool = True,
                  items: Iterable | None = None) -> pd.DataFrame:
        """Top-``k`` of the LLM's order of the retriever's candidates (see the class doc)."""
        train = self._check_fitted()
        users = train.user_ids if users is None else list(users)
        cand = self.candidates.recommend(users, k=self.n_candidates, exclude_seen=exclude_seen,
                                         items=items)
        self.candidates_ = cand
        lists = {u: g["item_id"].tolist() for u, g in cand.groupby("user_id", sort=False)}
        ranked, self.log_ = self.rank_lists(lists)
        self.ranked_ = ranked
        rows = []
        for u in users:
            order = ranked.get(u, [])[:k]
            n = len(order)
            rows.append(pd.DataFrame({"user_id": u, "item_id": order,
                                      "score": np.arange(n, 0, -1, dtype=float),
                                      "rank": np.arange(1, n + 1)}))
        if not rows:
            return pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
        return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------------------ evaluation
def summarize_log(log: pd.DataFrame) -> dict:
    """Per-user reliability and cost of a run: failure and fallback rates, the share of
    returned ids outside the candidate list, the shares of ranked presentations answered in
    the order shown (``echo_rate``) or with one score for all (``tie_rate``, pointwise), tokens,
    cost and latency per user."""
    n = max(len(log), 1)
    returned = log["n_returned"].sum()
    shown = log["n_presentations"].sum() if "n_presentations" in log else 0
    flagged = {f"{c}_rate": float(log[f"n_{c}"].sum() / shown) if shown else float("nan")
               for c in ("echo", "tie")}
    return {"parse_failure_rate": float((log["status"] != "ok").sum() / n),
            "hallucination_rate": float(log["n_outside"].sum() / returned) if returned else 0.0,
            **flagged,
            "calls_per_user": float(log["n_calls"].sum() / n),
            "tokens_per_user": float((log["prompt_tokens"] + log["completion_tokens"]).sum() / n),
            "cost_usd_per_user": float(log["cost_usd"].sum() / n),
            "latency_s_per_user": float(log["latency_s"].sum() / n)}


def mean_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` (one number per user) and its Student-t
    interval, ``mean +- t(n-1) * sd / sqrt(n)``. NaN values are left out; fewer than two give
    ``(mean, nan, nan)``.

    The probes' verdicts use this rather than a percentile bootstrap
    (:func:`perso_kit.evaluate.bootstrap_interval`): with a dozen users the bootstrap interval
    is too narrow (simulating the planted control's popularity probe, a 95% bootstrap interval
    excluded 0 in 8-11% of draws at 8-12 users; the t interval in 3.5-5.5%).

    >>> [round(x, 3) for x in mean_interval([1.0, 2.0, 3.0])]  # 2 +- t(2) * 1 / sqrt(3)
    [2.0, -0.484, 4.484]
    >>> mean_interval([0.0, 0.0, 0.0])
    (0.0, 0.0, 0.0)
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    est = float(v.mean())
    if len(v) < 2:
        return est, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return est, est - half, est + half


def _check_k(k: int, n_candidates: int, what: str) -> None:
    if k >= n_candidates:
        warnings.warn(f"{what}: k={k} >= {n_candidates} candidates, so the top-k is the whole "
                      "candidate list: no re-ranking can change its hit rate or popularity "
                      "(only NDCG can move). Use k < n_candidates to compare them.",
                      stacklevel=3)


def evaluate_reranking(rerankers: dict, split, users, k: int = 10, ci: float | None = None,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Compare LLM re-rankers with their retriever on the same users and candidates.

    Each re-ranker must be fitted. The retriever row ("<retriever> (candidates)") is the first
    re-ranker's candidate order cut at ``k``. Columns: ``ndcg@k``, ``hit_rate@k``,
    ``avg_popularity`` (mean training popularity of what is recommended) and, for re-rankers,
    the columns of :func:`summarize_log`.

    With ``ci`` (a confidence level, e.g. ``0.95``), per-user bootstrap intervals from
    :mod:`perso_kit.evaluate` (``n_boot`` resamples of the users, ``seed``): ``ndcg@k_lo``,
    ``ndcg@k_hi``, ``hit_rate@k_lo``, ``hit_rate@k_hi`` around each row, and ``ndcg_gain``
    with ``ndcg_gain_lo``/``ndcg_gain_hi``, the *paired* difference with the retriever row
    (:func:`~perso_kit.evaluate.paired_difference`: same users, same candidates), which is
    what says whether a re-ranker differs from its retriever.

    Warns when ``k`` is not below a re-ranker's ``n_candidates``: the top-k is then the whole
    candidate list, and its hit rate and popularity cannot differ from the retriever's.
    """
    from ..evaluate import paired_difference

    opts = {"ci": ci, "n_boot": n_boot, "seed": seed, "return_per_user": True} if ci else {}

    def score(recs, name):
        out = evaluate_recommendations(recs, split, k, users=users, model=name, **opts)
        table, per_user = out if ci else (out, None)
        return table.iloc[0], per_user

    rows, per_user = [], {}
    first = True
    for name, rr in rerankers.items():
        _check_k(k, rr.n_candidates, f"evaluate_reranking({name!r})")
        recs = rr.recommend(users, k=k)
        if first:
            base = rr.candidates_[rr.candidates_["rank"] <= k]
            base_name = f"{rr.candidates.name} (candidates)"
            row, per_user[base_name] = score(base, base_name)
            rows.append({**row.to_dict(), "parse_failure_rate": 0.0, "hallucination_rate": 0.0,
                         "echo_rate": 0.0, "tie_rate": 0.0,
                         "calls_per_user": 0.0, "tokens_per_user": 0.0,
                         "cost_usd_per_user": 0.0, "latency_s_per_user": 0.0})
            first = False
        row, per_user[name] = score(recs, name)
        rows.append({**row.to_dict(), **summarize_log(rr.log_)})
    ndcg, hit = f"ndcg@{k}", f"hit_rate@{k}"
    cols = ["model", "users", ndcg, hit, "avg_popularity", "parse_failure_rate",
            "hallucination_rate", "echo_rate", "tie_rate", "calls_per_user", "tokens_per_user",
            "cost_usd_per_user",
            "latency_s_per_user"]
    if ci:
        cols[4:4] = [f"{ndcg}_lo", f"{ndcg}_hi", f"{hit}_lo", f"{hit}_hi"]
    table = pd.DataFrame(rows)[cols].set_index("model")
    if ci:
        base_scores = next(iter(per_user.values())).set_index("user_id")[ndcg]
        for name, scores in per_user.items():
            d = paired_difference(scores.set_index("user_id")[ndcg], base_scores, ci, n_boot,
                                  seed)
            table.loc[name, ["ndcg_gain", "ndcg_gain_lo", "ndcg_gain_hi"]] = \
                [d.estimate, d.lo, d.hi]
    return table


def position_bias(reranker: LLMReranker, targets: dict, lists: dict,
                  positions: Sequence[int] | None = None) -> pd.DataFrame:
    """Place each user's known-relevant candidate at every position in turn and rank.

    Parameters
    ----------
    reranker : LLMReranker (fitted)
        Its variant, ``n_permutations`` and aggregation are used (with several permutations,
        the target's position applies to the first presentation; this measures the mitigation).
    targets : {user_id: item_id}
        The known-relevant item of each user (e.g. the held-out test item).
    lists : {user_id: [candidate ids]}
        The other candidates (the target is removed from them if present).
    positions : 0-based positions to probe (default: all).

    Returns
    -------
    DataFrame with ``user_id, item_id, position`` (1-based, where the item was shown),
    ``rank`` (1-based, where it was ranked), ``ok`` (False when the answer fell back: those
    rows say nothing about the model and are left out by :func:`position_curve`), the probe's
    ``n_calls`` and ``tokens``, and ``n_returned``/``n_outside`` (ids the answer returned, and
    how many of them were not candidates).
    """
    probes, keys = {}, []
    for u, target in targets.items():
        others = [c for c in lists[u] if c != target][:reranker.n_candidates - 1]
        for p in (range(len(others) + 1) if positions is None else positions):
            key = (u, p)
            probes[key] = place_at(others, target, p)
            keys.append((u, target, p))
    ranked, log = reranker.rank_lists(probes)        # keys: (user, position)
    log = log.assign(key=log["user_id"].map(tuple)).set_index("key")
    rows = [{"user_id": u, "item_id": t, "position": p + 1,
             "rank": ranked[(u, p)].index(t) + 1, "ok": log.at[(u, p), "status"] == "ok",
             "n_calls": int(log.at[(u, p), "n_calls"]),
             "tokens": int(log.at[(u, p), "prompt_tokens"] + log.at[(u, p), "completion_tokens"]),
             "n_returned": int(log.at[(u, p), "n_returned"]),
             "n_outside": int(log.at[(u, p), "n_outside"])}
            for u, t, p in keys]
    return pd.DataFrame(rows)


def position_curve(probes: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """By the position the probed item was shown at: the rate at which it was ranked first and
    in the top ``k``, its mean rank, and two standard errors of that mean over the probed
    users (answers that fell back are left out; ``n`` counts the rest):

    * ``mean_rank_se``: the plain one, ``sd(rank) / sqrt(n)``;
    * ``within_user_se``: the same after subtracting each user's own average rank over the
      positions. Users differ a lot in how high they rank their item, wherever it is shown;
      that spread is the same at every position and says nothing about position. This is the
      uncertainty of the *differences between positions*, which is what the probe is about.

    >>> probes = pd.DataFrame({"user_id": [1, 1, 2, 2], "position": [1, 2, 1, 2],
    ...                        "rank": [1, 2, 5, 6], "ok": True})
    >>> position_curve(probes)[["mean_rank", "mean_rank_se", "within_user_se"]].to_dict("list")
    {'mean_rank': [3.0, 4.0], 'mean_rank_se': [2.0, 2.0], 'within_user_se': [0.0, 0.0]}
    """
    ok = probes[probes["ok"]]
    dev = ok["rank"] - ok.groupby("user_id")["rank"].transform("mean")
    g = ok.groupby("position")["rank"]
    return pd.DataFrame({"top1_rate": g.apply(lambda r: float((r == 1).mean())),
                         f"top{k}_rate": g.apply(lambda r: float((r <= k).mean())),
                         "mean_rank": g.mean(),
                         "mean_rank_se": g.std(ddof=1) / np.sqrt(g.size()),
                         "within_user_se": dev.groupby(ok["position"]).std(ddof=1)
                         / np.sqrt(g.size()),
                         "n": g.size()})


def position_effect(probes: pd.DataFrame, level: float = 0.95) -> dict:
    """How much the shown position moves the probed item's rank: the position probe's verdict.

    For each user, the least-squares slope of the rank the item got against the position it was
    shown at (answers that fell back left out): ``1`` means the item is ranked wherever it is
    shown (the ranker follows the order), ``0`` that position changes nothing. The slopes are
    averaged over users, with a t interval over users (:func:`mean_interval`).

    Returns
    -------
    dict with ``slope``, ``low``, ``high``, ``n_users`` and ``fires`` (the interval excludes
    0: the probe detects a position effect at this number of users).

    >>> probes = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "position": [1, 2, 3] * 2,
    ...                        "rank": [1, 2, 3, 1, 2, 3], "ok": True})
    >>> position_effect(probes)["slope"], position_effect(probes)["fires"]
    (1.0, True)
    """
    ok = probes[probes["ok"]]
    slopes = []
    for _, g in ok.groupby("user_id"):
        x = g["position"].to_numpy(float)
        y = g["rank"].to_numpy(float)
        if len(np.unique(x)) < 2:
            continue
        dx = x - x.mean()
        slopes.append(float((dx * (y - y.mean())).sum() / (dx * dx).sum()))
    est, low, high = mean_interval(slopes, level)
    fires = bool(np.isfinite(low) and (low > 0 or high < 0))
    return {"slope": est, "low": low, "high": high, "n_users": len(slopes), "fires": fires}


def popularity_probe(reranker: LLMReranker, lists: dict, k: int, shuffle: bool = True,
                     seed: int = 0, popularity: pd.Series | None = None) -> pd.DataFrame:
    """Does the ranker put popular candidates in its top-``k``? One row per user.

    Each user's candidates are shown (in a seeded shuffled order when ``shuffle``, so that a
    ranker that merely follows the shown order cannot look popularity-biased just because the
    retriever put popular items first) and ranked. Per user:

    * ``pool``: mean popularity of all the candidates: what a popularity-blind order puts in
      its top-``k`` on average (the zero line of the probe);
    * ``retriever``: mean popularity of the retriever's top-``k`` (``lists`` as given);
    * ``reranked``: mean popularity of the ranker's top-``k``;
    * ``ok``: False when the answer fell back (left out by :func:`popularity_effect`);
    * ``n_returned``, ``n_outside``: ids the answer returned, and how many were not candidates.

    Popularity is the number of training interactions (``popularity``, default
    ``reranker.train_.item_popularity()``).

    Raises ``ValueError`` when some user has ``k`` candidates or fewer: the top-``k`` of ``k``
    candidates is the whole list, so no ranker can change its popularity and the probe could
    never fire.
    """
    short = {u: len(c) for u, c in lists.items() if len(c) <= k}
    if short:
        u, n = next(iter(short.items()))
        raise ValueError(f"popularity_probe: k={k} but user {u} has {n} candidates: the top-k "
                         "is the whole list and cannot move. Use k < the number of candidates "
                         "(e.g. k = n_candidates // 2).")
    pop = reranker.train_.item_popularity() if popularity is None else popularity
    shown = {}
    for u, cands in lists.items():
        cands = list(cands)
        if shuffle:
            rng = np.random.default_rng(seed + zlib.crc32(str(u).encode()) % 100_000)
            cands = [cands[i] for i in rng.permutation(len(cands))]
        shown[(u, "popularity")] = cands
    ranked, log = reranker.rank_lists(shown)
    log = log.assign(user=log["user_id"].map(lambda key: key[0])).set_index("user")
    rows = []
    for u, cands in lists.items():
        order = ranked[(u, "popularity")]
        rows.append({"user_id": u, "pool": float(pop.reindex(cands).fillna(0).mean()),
                     "retriever": float(pop.reindex(list(cands)[:k]).fillna(0).mean()),
                     "reranked": float(pop.reindex(order[:k]).fillna(0).mean()),
                     "ok": log.at[u, "status"] == "ok",
                     "n_returned": int(log.at[u, "n_returned"]),
                     "n_outside": int(log.at[u, "n_outside"])})
    return pd.DataFrame(rows)


def popularity_effect(table: pd.DataFrame, level: float = 0.95) -> dict:
    """The popularity probe's verdict, from a :func:`popularity_probe` table.

    ``lift`` is the mean over users of ``reranked - pool`` (interactions): how much more popular
    the ranker's top-k is than a popularity-blind order of the same candidates, with a t
    interval over users ``low``/``high`` (:func:`mean_interval`); ``fires`` when the interval
    excludes 0. ``vs_retriever`` (with ``vs_retriever_low``/``_high``) is
    ``reranked - retriever``: what changes for the user compared with the retriever's own
    top-k. It is *not* a bias measure by itself: a retriever
    that ranks popular items first makes any popularity-blind re-ranker look like it "promotes
    less popular items".
    """
    ok = table[table["ok"]]
    lift, low, high = mean_interval(ok["reranked"] - ok["pool"], level)
    vs, vlow, vhigh = mean_interval(ok["reranked"] - ok["retriever"], level)
    fires = bool(np.isfinite(low) and (low > 0 or high < 0))
    return {"lift": lift, "low": low, "high": high, "vs_retriever": vs,
            "vs_retriever_low": vlow, "vs_retriever_high": vhigh, "n_users": int(len(ok)),
            "fires": fires}


def popularity_summary(tables: dict, retriever: str = "retriever",
                       level: float = 0.95) -> pd.DataFrame:
    """A table of :func:`popularity_effect` verdicts, one row per ranker, from
    ``{name: popularity_probe(...)}`` run on the same candidate lists; the first row is the
    retriever's own order (its top-k minus the pool, from the first table), for reference.
    Columns: ``lift``, ``low``, ``high``, ``fires``, ``vs_retriever``, ``n_users``."""
    first = next(iter(tables.values()))
    ok = first[first["ok"]]
    lift, low, high = mean_interval(ok["retriever"] - ok["pool"], level)
    rows = {f"{retriever} (its own order)": {
        "lift": lift, "low": low, "high": high,
        "fires": bool(np.isfinite(low) and (low > 0 or high < 0)), "vs_retriever": 0.0,
        "n_users": int(len(ok))}}
    for name, table in tables.items():
        e = popularity_effect(table, level)
        rows[name] = {k: e[k] for k in ("lift", "low", "high", "fires", "vs_retriever",
                                        "n_users")}
    return pd.DataFrame(rows).T.astype({"lift": float, "low": float, "high": float,
                                        "fires": bool, "vs_retriever": float, "n_users": int})


def hallucination_effect(*frames: pd.DataFrame) -> dict:
    """The share of returned ids that were not candidates, over probe tables (from
    :func:`position_bias` or :func:`popularity_probe`) or re-ranker logs: ``rate`` (0 when
    nothing came back), ``n_returned``, ``n_outside``, and ``fires`` when any returned id was
    not a candidate (an id outside the list is a plain error, not a matter of degree)."""
    returned = int(sum(f["n_returned"].sum() for f in frames))
    outside = int(sum(f["n_outside"].sum() for f in frames))
    return {"rate": outside / returned if returned else 0.0, "n_returned": returned,
            "n_outside": outside, "fires": outside > 0}


def probe_verdicts(probes: pd.DataFrame, popularity: pd.DataFrame,
                   level: float = 0.95) -> dict:
    """The three probes' verdicts as one flat row: ``position_slope`` (with ``_low``,
    ``_high``, ``position_fires``) from :func:`position_effect`, ``popularity_lift`` (with
    ``_low``, ``_high``, ``popularity_fires``) from :func:`popularity_effect`, and
    ``hallucination_rate``, ``hallucination_fires`` from :func:`hallucination_effect` over both
    probes. One such row per model makes a calibration table."""
    pe = position_effect(probes, level)
    pf = popularity_effect(popularity, level)
    he = hallucination_effect(probes, popularity)
    return {"position_slope": pe["slope"], "position_low": pe["low"],
            "position_high": pe["high"], "position_fires": pe["fires"],
            "popularity_lift": pf["lift"], "popularity_low": pf["low"],
            "popularity_high": pf["high"], "popularity_fires": pf["fires"],
            "hallucination_rate": he["rate"], "hallucination_fires": he["fires"]}


# ------------------------------------------------------------------------------ stand-in
def _stand_in_ranking(req):
    """Offline stand-in (not an LLM): candidates by word overlap with the rest of the prompt,
    ties in the order shown."""
    return {"ranking": [c.typed_id for c in req.ctx.ranked_candidates()]}


def _stand_in_relevance(req):
    """Offline stand-in (not an LLM): 0-10 from the candidate's word overlap with the prompt."""
    cands = req.ctx.candidates
    if not cands:
        return None
    s = H.overlap_scores([cands[0].text], req.ctx.context_text)[0]
    return {"score": int(min(10, round(2 * s)))}


register_handler("llm_ranking", _stand_in_ranking)
register_handler("llm_relevance", _stand_in_relevance)
