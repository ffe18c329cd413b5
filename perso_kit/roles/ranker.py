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
position in turn), :func:`aggregate_rankings` (Borda or mean rank over several permutations,
the usual mitigation).

The offline stand-in answers these prompts with a registered heuristic that reads only the
prompt: it orders candidates by word overlap with the rest of the prompt, ties in prompt order.
It is not an LLM; its numbers show the mechanics, not what a language model does.
"""
from __future__ import annotations

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
    ``n_returned`` ids came back, ``n_outside`` of them were not candidates."""

    order: list
    status: str
    n_returned: int = 0
    n_outside: int = 0
    n_missing: int = 0


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
        ``n_outside``, ``n_failed_calls``, tokens, ``cost_usd`` and ``latency_s``.

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
        if self.variant == "pointwise":
            return [{"messages": pointwise_messages(self.train_, user_id, c, self.history_len),
                     "json_schema": RELEVANCE_SCHEMA} for c in shown]
        ex = (few_shot_examples(self.train_, self.n_examples, seed=self.seed, exclude=[user_id])
              if self.variant == "few-shot" else "")
        return [{"messages": listwise_messages(self.train_, user_id, shown, self.variant,
                                               self.history_len, ex),
                 "json_schema": RANKING_SCHEMA}]

    def _parse(self, replies: list, shown: list) -> ParsedRanking:
        if self.variant != "pointwise":
            return parse_ranking(replies[0], shown)
        scores = [r.data.get("score") if r.ok and isinstance(r.data, dict) else None
                  for r in replies]
        if any(not isinstance(s, (int, float)) for s in scores):
            return ParsedRanking(list(shown), "failed", len(shown))
        order = sorted(range(len(shown)), key=lambda i: (-scores[i], i))   # ties: shown order
        return ParsedRanking([shown[i] for i in order], "ok", len(shown))

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
                          "n_outside": 0, "n_failed_calls": 0, "prompt_tokens": 0,
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
    returned ids outside the candidate list, tokens, cost and latency per user."""
    n = max(len(log), 1)
    returned = log["n_returned"].sum()
    return {"parse_failure_rate": float((log["status"] != "ok").sum() / n),
            "hallucination_rate": float(log["n_outside"].sum() / returned) if returned else 0.0,
            "calls_per_user": float(log["n_calls"].sum() / n),
            "tokens_per_user": float((log["prompt_tokens"] + log["completion_tokens"]).sum() / n),
            "cost_usd_per_user": float(log["cost_usd"].sum() / n),
            "latency_s_per_user": float(log["latency_s"].sum() / n)}


def evaluate_reranking(rerankers: dict, split, users, k: int = 10) -> pd.DataFrame:
    """Compare LLM re-rankers with their retriever on the same users and candidates.

    Each re-ranker must be fitted. The retriever row ("<retriever> (candidates)") is the first
    re-ranker's candidate order cut at ``k``. Columns: ``ndcg@k``, ``hit_rate@k``,
    ``avg_popularity`` (mean training popularity of what is recommended) and, for re-rankers,
    the columns of :func:`summarize_log`.
    """
    rows = []
    first = True
    for name, rr in rerankers.items():
        recs = rr.recommend(users, k=k)
        if first:
            base = rr.candidates_[rr.candidates_["rank"] <= k]
            row = evaluate_recommendations(base, split, k, users=users,
                                           model=f"{rr.candidates.name} (candidates)").iloc[0]
            rows.append({**row.to_dict(), "parse_failure_rate": 0.0, "hallucination_rate": 0.0,
                         "calls_per_user": 0.0, "tokens_per_user": 0.0,
                         "cost_usd_per_user": 0.0, "latency_s_per_user": 0.0})
            first = False
        row = evaluate_recommendations(recs, split, k, users=users, model=name).iloc[0]
        rows.append({**row.to_dict(), **summarize_log(rr.log_)})
    cols = ["model", "users", f"ndcg@{k}", f"hit_rate@{k}", "avg_popularity",
            "parse_failure_rate", "hallucination_rate", "calls_per_user", "tokens_per_user",
            "cost_usd_per_user", "latency_s_per_user"]
    return pd.DataFrame(rows)[cols].set_index("model")


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
    rows say nothing about the model and are left out by :func:`position_curve`), and the
    probe's ``n_calls`` and ``tokens``.
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
             "tokens": int(log.at[(u, p), "prompt_tokens"] + log.at[(u, p), "completion_tokens"])}
            for u, t, p in keys]
    return pd.DataFrame(rows)


def position_curve(probes: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Rate at which the probed item is ranked first and in the top ``k``, by the position it
    was shown at (answers that fell back are left out; ``n`` counts the rest)."""
    ok = probes[probes["ok"]]
    g = ok.groupby("position")["rank"]
    return pd.DataFrame({"top1_rate": g.apply(lambda r: float((r == 1).mean())),
                         f"top{k}_rate": g.apply(lambda r: float((r <= k).mean())),
                         "mean_rank": g.mean(), "n": g.size()})


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
