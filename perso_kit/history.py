"""Long histories in a limited context: three ways to fit a user's history into a token budget.

Every LLM prompt of the course shows a user's last 10 watches. A user with 300 watches has more
to say than that, but a prompt has a budget. This module gives three strategies that each turn a
whole history into prompt lines of at most ``budget`` tokens (counted with the kit's estimator,
:func:`perso_kit.llm.pricing.estimate_tokens`), and a re-ranker that shows them to the LLM:

* ``"last-n"`` (:func:`truncate_history`): the most recent watches that fit, oldest first;
* ``"summary"`` (:func:`summary_profile`): an *extractive* profile of the whole history -- its
  top genres, moods and decades with their shares, then its most representative titles (those
  closest to the history's mean attribute vector). No extra LLM call;
* ``"retrieval"`` (:func:`retrieve_history`): the history items most similar to each
  candidate (catalog attribute vectors, :func:`perso_kit.recency.attribute_vectors`), taken in
  turn over the candidates until the budget is used, shown oldest first.

:class:`HistoryReranker` is :class:`~perso_kit.roles.ranker.LLMReranker` (zero-shot, listwise)
with the history block replaced by a strategy's lines; :func:`compare_strategies` runs every
strategy at every budget on the same users and candidates and returns tokens per user against
NDCG with paired bootstrap intervals; :func:`plot_budgets` draws tokens vs quality, one line per
strategy, stamped with who answered::

    lines = truncate_history(train, user_id, budget=100)
    table = compare_strategies(llm, ALS(seed=42), split, users, budgets=[50, 150, 400])
    plot_budgets(table, who=llm)

With the offline stand-in (word overlap, not an LLM) the comparison shows the mechanics --
what each strategy puts in the prompt, what it costs -- and how an overlap scorer reacts to each
text; it says nothing about how a language model uses a long history.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from .data.dataset import Dataset
from .llm.pricing import estimate_tokens
from .roles.ranker import (RANKING_SCHEMA, SYSTEM, LLMReranker, evaluate_reranking, item_line,
                           ranking_max_tokens)

STRATEGIES = ("last-n", "summary", "retrieval")

#: the sentence that introduces each strategy's lines in the prompt
HEADERS = {"last-n": "This viewer's most recent watches, oldest first:",
           "summary": "A summary of everything this viewer watched:",
           "retrieval": "From this viewer's history, the watches closest to the candidates, "
                        "oldest first:"}


def line_tokens(line: str) -> int:
    """Tokens of one prompt line, its line break included (the kit's estimate: chars / 4).

    >>> line_tokens("- Title — Drama")
    4
    """
    return estimate_tokens(line + "\n")


def fit_lines(lines: Sequence[str], budget: int) -> list[str]:
    """The longest prefix of ``lines`` whose tokens (:func:`line_tokens`) stay within ``budget``.

    >>> fit_lines(["a" * 7, "b" * 7, "c" * 7], budget=4)
    ['aaaaaaa', 'bbbbbbb']
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0 tokens, got {budget}")
    out, used = [], 0
    for ln in lines:
        t = line_tokens(ln)
        if used + t > budget:
            break
        out.append(ln)
        used += t
    return out


def block_tokens(lines: Sequence[str]) -> int:
    """Tokens of a history block of ``lines`` (the sum of :func:`line_tokens`)."""
    return int(sum(line_tokens(ln) for ln in lines))


def _history_ids(train: Dataset, user_id) -> list:
    hist = train.history(user_id)["item_id"].tolist()
    if not hist:
        raise ValueError(f"user {user_id!r} has no history in {train.name}")
    return hist


# ------------------------------------------------------------------------------ strategies
def truncate_history(train: Dataset, user_id, budget: int) -> list[str]:
    """(a) Last-N truncation: the user's most recent watches that fit in ``budget`` tokens, as
    item lines (title and genres), oldest first. N follows from the budget."""
    items = train.items.set_index("item_id")
    newest_first = [item_line(items, i, with_id=False) for i in _history_ids(train, user_id)][::-1]
    return fit_lines(newest_first, budget)[::-1]


def _shares(counter: Counter, n: int, top: int) -> str:
    return ", ".join(f"{k} ({v / n:.0%})" for k, v in counter.most_common(top))


def profile_facts(train: Dataset, user_id) -> dict:
    """The counts an extractive profile reads off a history: ``n`` watches, and Counters of
    ``genres``, ``mood``, ``themes`` (the catalog columns present) and ``decades``."""
    items = train.items.set_index("item_id")
    hist = _history_ids(train, user_id)
    facts: dict = {"n": len(hist)}
    for col in ("genres", "mood", "themes"):
        if col in items.columns:
            c: Counter = Counter()
            for i in hist:
                v = items.at[i, col]
                vals = [v] if isinstance(v, str) else list(v) if v is not None else []
                c.update(str(x) for x in vals if str(x).strip())
            facts[col] = c
    if "year" in items.columns:
        years = pd.to_numeric(items.loc[hist, "year"], errors="coerce").dropna()
        facts["decades"] = Counter(f"{int(y) // 10 * 10}s" for y in years)
    return facts


def representative_items(train: Dataset, user_id, vectors: np.ndarray | None = None) -> list:
    """The user's history items, most representative first: by cosine similarity of their
    attribute vector to the mean vector of the whole history (ties: the more recent first)."""
    V = _vectors(train, vectors)
    hist = _history_ids(train, user_id)
    H = V[pd.Index(train.items["item_id"]).get_indexer(hist)]
    mean = H.mean(axis=0)
    norm = np.linalg.norm(mean)
    sims = H @ (mean / norm) if norm > 0 else np.zeros(len(hist))
    recency = np.arange(len(hist))
    order = np.lexsort((-recency, -np.round(sims, 12)))
    seen, out = set(), []
    for j in order:
        if hist[j] not in seen:
            seen.add(hist[j])
            out.append(hist[j])
    return out


def summary_profile(train: Dataset, user_id, budget: int, top: int = 3,
                    vectors: np.ndarray | None = None) -> list[str]:
    """(b) An extractive summary profile within ``budget`` tokens: one line each for the number
    of watches, the ``top`` genres, moods, themes and decades with their shares, then the most
    representative titles (:func:`representative_items`) while the budget lasts. Everything is
    read off the catalog; no LLM writes it."""
    f = profile_facts(train, user_id)
    lines = [f"{f['n']} watches in all."]
    names = {"genres": "Top genres", "mood": "Top moods", "themes": "Top themes",
             "decades": "Top decades"}
    for key, label in names.items():
        if f.get(key):
            lines.append(f"{label}: {_shares(f[key], f['n'], top)}.")
    items = train.items.set_index("item_id")
    head = fit_lines(lines, budget)
    if len(head) < len(lines):
        return head
    titles = fit_lines([item_line(items, i, with_id=False)
                        for i in representative_items(train, user_id, vectors)],
                       budget - block_tokens(head) - line_tokens("Most typical titles:"))
    return head + (["Most typical titles:"] + titles if titles else [])


def retrieve_history(train: Dataset, user_id, candidates: Sequence, budget: int,
                     vectors: np.ndarray | None = None) -> list[str]:
    """(c) Retrieval: for each candidate, the history items most similar to it (cosine of
    attribute vectors; ties: the more recent first). Candidates take turns (each adds its
    next-best item not yet chosen) until the next line would exceed ``budget`` tokens; the
    chosen items are shown oldest first."""
    V = _vectors(train, vectors)
    hist = _history_ids(train, user_id)
    index = pd.Index(train.items["item_id"])
    H, C = V[index.get_indexer(hist)], V[index.get_indexer(list(candidates))]
    sims = H @ C.T                                        # history x candidates
    recency = np.arange(len(hist))
    queues = [list(np.lexsort((-recency, -np.round(sims[:, c], 12))))
              for c in range(C.shape[0])]
    items = train.items.set_index("item_id")
    chosen: dict = {}                                     # history position -> line
    used = 0
    while any(queues):
        for q in queues:
            while q and hist[q[0]] in {hist[p] for p in chosen}:
                q.pop(0)
            if not q:
                continue
            p = q.pop(0)
            ln = item_line(items, hist[p], with_id=False)
            if used + line_tokens(ln) > budget:
                return [chosen[k] for k in sorted(chosen)]
            chosen[p] = ln
            used += line_tokens(ln)
    return [chosen[k] for k in sorted(chosen)]


def _vectors(train: Dataset, vectors):
    if vectors is not None:
        return vectors
    from .recency import attribute_vectors
    return attribute_vectors(train.items)


def history_lines(train: Dataset, user_id, strategy: str, budget: int,
                  candidates: Sequence = (), vectors: np.ndarray | None = None) -> list[str]:
    """The prompt lines of one ``strategy`` (see :data:`STRATEGIES`) within ``budget`` tokens."""
    if strategy == "last-n":
        return truncate_history(train, user_id, budget)
    if strategy == "summary":
        return summary_profile(train, user_id, budget, vectors=vectors)
    if strategy == "retrieval":
        return retrieve_history(train, user_id, candidates, budget, vectors)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def shown_items(train: Dataset, user_id, lines: Sequence[str]) -> list:
    """The ids of the user's history items that ``lines`` show (their item lines), in the
    order shown; profile lines (counts, shares) name no item and are skipped."""
    items = train.items.set_index("item_id")
    by_line = {item_line(items, i, with_id=False): i for i in _history_ids(train, user_id)}
    return [by_line[ln] for ln in lines if ln in by_line]


def long_history_users(train: Dataset, users: Sequence, min_items: int = 100) -> list:
    """The ``users`` with at least ``min_items`` training interactions (sorted)."""
    activity = train.user_activity()
    return sorted(u for u in users if activity.get(u, 0) >= min_items)


# ------------------------------------------------------------------------------ the ranker
class HistoryReranker(LLMReranker):
    """The zero-shot listwise re-ranker with the history block written by a ``strategy``
    within ``budget`` tokens (see the module docstring); everything else -- candidates,
    answer schema, parsing, fallback, log -- is :class:`~perso_kit.roles.ranker.LLMReranker`.
    ``history_tokens_`` holds each user's history-block tokens after :meth:`recommend`."""

    def __init__(self, llm, candidates, strategy: str = "last-n", budget: int = 100,
                 n_candidates: int = 20, seed: int = 42, concurrency: int = 8,
                 progress: bool = True, name: str | None = None):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if budget < 1:
            raise ValueError(f"budget must be at least 1 token, got {budget}")
        super().__init__(llm, candidates, n_candidates, "zero-shot", seed=seed,
                         concurrency=concurrency, progress=progress,
                         name=name or f"{strategy} @ {budget} tokens")
        self.strategy, self.budget = strategy, int(budget)
        self.history_tokens_: dict = {}

    def fit(self, train: Dataset) -> "HistoryReranker":
        super().fit(train)
        self.vectors_ = _vectors(train, None)
        return self

    def messages(self, user_id, shown: list) -> list[dict]:
        """The chat messages for one user and candidate list: the zero-shot prompt of the
        ranker, with the strategy's lines as the history."""
        items = self.train_.items.set_index("item_id")
        lines = history_lines(self.train_, user_id, self.strategy, self.budget, shown,
                              self.vectors_)
        self.history_tokens_[user_id] = block_tokens(lines)
        parts = [HEADERS[self.strategy] + "\n" + ("\n".join(lines) or "(nothing fits)"),
                 "Candidates:\n" + "\n".join(item_line(items, c) for c in shown),
                 f"Rank all {len(shown)} candidates, most likely next watch first. Answer as "
                 "JSON {\"ranking\": [candidate ids]}, using only the ids in brackets."]
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": "\n\n".join(parts)}]

    def _requests(self, user_id, shown: list) -> list[dict]:
        return [{"messages": self.messages(user_id, shown), "json_schema": RANKING_SCHEMA,
                 "max_tokens": ranking_max_tokens(len(shown))}]


# ------------------------------------------------------------------------------ comparison
def compare_strategies(llm, retriever, split, users: Sequence, budgets: Sequence[int],
                       strategies: Sequence[str] = STRATEGIES, n_candidates: int = 20,
                       k: int = 10, ci: float = 0.95, n_boot: int = 1000, seed: int = 42,
                       progress: bool = False) -> pd.DataFrame:
    """Every strategy at every budget, on the same ``users`` and the same candidates (the
    retriever's top ``n_candidates``): one row per (strategy, budget) plus the retriever's
    row (budget 0, no call).

    Columns: ``strategy``, ``budget``, ``history_tokens`` (mean tokens of the history block),
    ``tokens_per_user`` (prompt + answer, from the log), ``ndcg@k`` with ``_lo``/``_hi``
    (per-user bootstrap), ``ndcg_gain`` with ``_lo``/``_hi`` (paired, against the retriever),
    ``vs_last_n`` with ``_lo``/``_hi`` (paired difference with last-N at the same budget: same
    users, same candidates), ``parse_failure_rate`` and ``calls_per_user``.
    """
    from .evaluate import evaluate_recommendations, paired_difference

    rerankers = {}
    for b in budgets:
        for s in strategies:
            rerankers[(s, b)] = HistoryReranker(llm, retriever, s, b, n_candidates, seed=seed,
                                                progress=progress).fit(split.train)
    named = {rr.name: rr for rr in rerankers.values()}
    table = evaluate_reranking(named, split, users, k=k, ci=ci, n_boot=n_boot, seed=seed)
    ndcg = f"ndcg@{k}"
    per_user = {}
    for (s, b), rr in rerankers.items():
        recs = rr.ranked_
        rows = [{"user_id": u, "item_id": i, "score": float(-r), "rank": r + 1}
                for u in users for r, i in enumerate(recs.get(u, [])[:k])]
        scores = evaluate_recommendations(pd.DataFrame(rows), split, k, users=users,
                                          model=rr.name, return_per_user=True, ci=ci,
                                          n_boot=n_boot, seed=seed)[1]
        per_user[(s, b)] = scores.set_index("user_id")[ndcg]
    out = []
    base = table.iloc[0]
    out.append({"strategy": "retriever", "budget": 0, "history_tokens": 0.0,
                **{c: base[c] for c in table.columns}})
    for (s, b), rr in rerankers.items():
        row = table.loc[rr.name]
        d = paired_difference(per_user[(s, b)], per_user[("last-n", b)], ci, n_boot, seed) \
            if ("last-n", b) in per_user else None
        out.append({"strategy": s, "budget": b,
                    "history_tokens": float(np.mean(list(rr.history_tokens_.values()))),
                    **{c: row[c] for c in table.columns},
                    "vs_last_n": d.estimate if d else np.nan,
                    "vs_last_n_lo": d.lo if d else np.nan,
                    "vs_last_n_hi": d.hi if d else np.nan})
    cols = ["strategy", "budget", "history_tokens", "tokens_per_user", ndcg, f"{ndcg}_lo",
            f"{ndcg}_hi", "ndcg_gain", "ndcg_gain_lo", "ndcg_gain_hi", "vs_last_n",
            "vs_last_n_lo", "vs_last_n_hi", "parse_failure_rate", "calls_per_user"]
    return pd.DataFrame(out).reindex(columns=cols)


def plot_budgets(table: pd.DataFrame, metric: str = "ndcg@10", who=None,
                 takeaway: str | None = None):
    """Tokens per user against ``metric``, one line per strategy (one point per budget, with
    its interval when the table has ``<metric>_lo``/``_hi``); the retriever (no tokens) as a
    dotted reference. ``who`` (the LLM client or a label) is stamped on the figure."""
    from .plots.style import color, finish, new_figure

    fig, ax = new_figure(width=6.5)
    marks = {"last-n": "o", "summary": "s", "retrieval": "^"}
    for n, (s, g) in enumerate(table[table["strategy"] != "retriever"].groupby(
            "strategy", sort=False)):
        g = g.sort_values("tokens_per_user")
        c = color(s, ["#1f77b4", "#ff7f0e", "#2ca02c"][n % 3])
        if f"{metric}_lo" in g:
            ax.vlines(g["tokens_per_user"], g[f"{metric}_lo"], g[f"{metric}_hi"], color=c,
                      lw=1, alpha=0.5)
        ax.plot(g["tokens_per_user"], g[metric], marker=marks.get(s, "o"), color=c, label=s)
    base = table[table["strategy"] == "retriever"]
    if len(base):
        ax.axhline(base[metric].iloc[0], ls=":", color="0.4", label="retriever (no tokens)")
    return finish(ax, "Long histories: what each strategy buys per token", "tokens per user",
                  metric, takeaway, who=who)
