"""The accounts: what each call cost, what the budget allows, and what left the machine.

Three things are kept here, so "where is X counted" has one answer:

* **The budget** -- before a call is sent, :func:`reserve_call` books its worst case (estimated
  prompt tokens, counted safely, plus ``max_tokens`` of answer, at the price of
  :func:`price_for`) on the :class:`~perso_kit.llm.pricing.Budget`, or refuses the call; after
  the answer, the client *settles* the booking with what the call really cost
  (:func:`call_cost`). :func:`reserve_embedding` does the same for a batch of texts to embed.
  Clients built from ``PERSO_KIT_LLM_BUDGET_USD`` share one budget per limit
  (:func:`process_budget`), so the cap is the kernel's, not one object's.
* **The usage of one client** -- a :class:`Ledger` keeps one record per call (tokens, cost,
  cache hit, error kind, retries; :meth:`Ledger.call_log`, :meth:`Ledger.usage_table`) and a
  copy of every request body sent (:meth:`Ledger.sent_log`: what left the process).
* **The session** -- every record of every client also goes to one process-wide log, summed up
  by :func:`session_summary` (a notebook records it last, so a run can be checked from outside).

>>> budget = Budget(0.001)
>>> price = Price("m", input_per_1m=1.0, output_per_1m=2.0)
>>> body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
>>> refusal, booked = reserve_call(budget, body, price, "m")
>>> refusal is None, round(booked, 6)   # (4 per message + 1 for "hi") * $1/M + 100 * $2/M
(True, 0.000205)
>>> refusal, booked = reserve_call(budget, dict(body, max_tokens=1000), price, "m")
>>> refusal[:44], booked                # $0.002005 > the $0.000795 left: nothing is sent
('budget: this call could cost up to $0.002005', 0.0)
"""
from __future__ import annotations

import os

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .pricing import (FREE, Budget, Price, PriceTable, estimate_prompt_tokens,
                      estimate_tokens)
from .reply import STAND_IN_MODEL, LLMError, Reply, Usage
from .request import DEFAULT_MAX_TOKENS

_PROCESS_BUDGETS: dict[float, Budget] = {}
_SESSION_LOG: list[dict] = []  # every call of every client in this process (the kernel)


# --------------------------------------------------------------------------------- the budget
def process_budget(limit_usd: float | None) -> Budget:
    """The budget shared by every client of this process with this limit (a fresh unlimited
    one when ``limit_usd`` is None)."""
    if limit_usd is None:
        return Budget(None)
    return _PROCESS_BUDGETS.setdefault(limit_usd, Budget(limit_usd))


def price_for(prices: PriceTable, settings, model: str, reported: str | None = None
              ) -> Price | None:
    """The price of a call: the what-if model (``price_as``) if set; free for the stand-in and
    for servers on this machine; else the table price of the model the server reported, or of
    the one asked for; None when the table knows neither."""
    if settings.price_as:
        return prices.lookup(settings.price_as)
    if settings.is_local or model == STAND_IN_MODEL or reported == STAND_IN_MODEL:
        return FREE
    for name in (reported, model):
        if name:
            p = prices.lookup(name)
            if p is not None:
                return p
    return None


def call_cost(price: Price | None, usage: Usage) -> float:
    """What a call cost in USD (NaN when its price is unknown)."""
    return (price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_prompt_tokens)
            if price else math.nan)


def reserve_call(budget: Budget, body: dict, price: Price | None, model: str
                 ) -> tuple[str | None, float]:
    """Book the worst case of sending ``body``: ``(None, booked_usd)``, or ``(reason, 0.0)``
    when the budget refuses (then nothing may be sent). Free calls book nothing; a call of
    unknown price is refused only when there is a limit (its worst case cannot be bounded)."""
    if price is FREE:
        return None, 0.0
    if price is None:
        if budget.limit_usd is None:
            return None, 0.0
        with budget._lock:
            budget.refused += 1
        return (f"budget: no price is known for model {model!r}, so the worst case "
                "cannot be bounded; add it to data/llm_prices.csv or pass price_as=...; "
                "nothing was sent"), 0.0
    prompt = estimate_prompt_tokens(body.get("messages", []), body.get("tools"),
                                    body.get("response_format"), safe=True)
    out = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    worst = price.cost(prompt, int(out))
    if not budget.reserve(worst):
        return (f"budget: this call could cost up to ${worst:.6f} ({prompt} prompt tokens "
                f"est. + {out} max answer tokens at {price.model} prices), and only "
                f"${max(0.0, budget.remaining_usd):.6f} of the "
                f"${budget.limit_usd:.4f} budget is left; nothing was sent"), 0.0
    return None, worst


def reserve_embedding(budget: Budget, texts: list[str], price: Price | None, model: str
                      ) -> float:
    """Book the worst case of embedding ``texts`` (one token per 3 characters); returns the
    booked USD, or raises :class:`~perso_kit.llm.reply.LLMError` (kind ``"budget"``)."""
    if price is FREE:
        return 0.0
    worst = price.cost(sum(estimate_tokens(t, 3.0) for t in texts), 0) if price else None
    if worst is None and budget.limit_usd is not None:
        raise LLMError(f"budget: no price known for {model}; add it to "
                       "data/llm_prices.csv", "budget")
    if worst is not None and not budget.reserve(worst):
        raise LLMError(f"budget: embedding {len(texts)} texts could cost "
                       f"${worst:.6f}, more than is left", "budget")
    return worst or 0.0


# --------------------------------------------------------------------------------- records
def chat_record(reply: Reply, backend: str, model: str, saved_usd: float = 0.0) -> dict:
    """The record of one chat call (one row of :meth:`Ledger.call_log`)."""
    return {"backend": backend, "model": model,
            "served_model": reply.model or model, "stand_in": reply.stand_in,
            "cached": reply.cached, "ok": reply.ok, "error_kind": reply.error_kind,
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "cost_usd": reply.cost_usd, "saved_usd": saved_usd,
            "invalid_tool_calls": sum(not c.valid for c in reply.tool_calls),
            "latency_s": reply.latency_s, "attempts": reply.attempts,
            "truncated": reply.truncated}


def embedding_record(backend: str, model: str, stand_in: bool, prompt_tokens: int,
                     cost_usd: float = 0.0, cached: bool = False) -> dict:
    """The record of one :meth:`~perso_kit.llm.client.LLM.embed` call."""
    return {"backend": backend, "model": model, "served_model": model, "stand_in": stand_in,
            "cached": cached, "ok": True, "prompt_tokens": prompt_tokens,
            "completion_tokens": 0, "cost_usd": cost_usd, "saved_usd": 0.0,
            "invalid_tool_calls": 0, "latency_s": 0.0, "attempts": 1, "error_kind": None}


def server_name(settings, backend: str) -> str:
    """Where a request goes, for the sent log (never a key)."""
    return (settings.base_url or settings.azure_endpoint
            or ("in-process stand-in" if backend == "offline" else ""))


class Ledger:
    """The accounts of one client: a record per call and a copy of every request sent.

    Thread-safe: :meth:`~perso_kit.llm.client.LLM.map` calls from several threads.
    """

    def __init__(self):
        self.records: list[dict] = []
        self.sent: list[dict] = []
        self.lock = threading.Lock()

    def log_call(self, record: dict) -> None:
        """Keep one call's record here and in the process-wide log."""
        with self.lock:
            self.records.append(record)
            _SESSION_LOG.append(record)

    def record_sent(self, backend: str, server: str, body: dict) -> None:
        """Keep a copy of a request body as it leaves the process."""
        with self.lock:
            self.sent.append({"time": time.time(), "backend": backend, "server": server,
                              "body": json.loads(json.dumps(body, default=str))})

    def call_log(self) -> pd.DataFrame:
        """One row per call (see :meth:`~perso_kit.llm.client.LLM.call_log`)."""
        with self.lock:
            return pd.DataFrame(list(self.records))

    @property
    def spent_usd(self) -> float:
        """What the calls cost so far (cache hits cost nothing; unknown prices are skipped)."""
        return float(np.nansum([r["cost_usd"] for r in self.records]))

    def usage_table(self, total: bool = True, price_as: str | None = None,
                    structured_fallback: str | None = None) -> pd.DataFrame:
        """Calls, failures, retries, tokens and cost per backend and model (and a total row).

        ``price_as`` and ``structured_fallback`` (the JSON form the client fell back to, if it
        did) add notes; stand-in rows say they are not an LLM.
        """
        log_ = self.call_log()
        cols = ["backend", "model", "calls", "cached_calls", "errors", "invalid_json",
                "invalid_tool_calls", "retries", "truncated", "prompt_tokens",
                "completion_tokens", "cost_usd", "saved_by_cache_usd", "note"]
        if log_.empty:
            return pd.DataFrame(columns=cols)
        log_["invalid_json"] = log_["error_kind"].eq("invalid_json")
        log_["errors"] = ~log_["ok"]
        log_["retries"] = (log_["attempts"].fillna(0) - 1).clip(lower=0).astype(int)
        log_["truncated"] = log_.get("truncated", pd.Series(False, index=log_.index)) \
            .fillna(False).astype(bool)
        g = log_.groupby(["backend", "model"], sort=False)
        table = g.agg(calls=("ok", "size"), cached_calls=("cached", "sum"),
                      errors=("errors", "sum"), invalid_json=("invalid_json", "sum"),
                      invalid_tool_calls=("invalid_tool_calls", "sum"),
                      retries=("retries", "sum"), truncated=("truncated", "sum"),
                      prompt_tokens=("prompt_tokens", "sum"),
                      completion_tokens=("completion_tokens", "sum"),
                      cost_usd=("cost_usd", lambda s: s.sum(min_count=1)),
                      saved_by_cache_usd=("saved_usd", "sum"),
                      stand_in=("stand_in", "any")).reset_index()
        note = np.where(table["stand_in"], "offline stand-in, not an LLM; tokens estimated", "")
        if price_as:
            note = [f"{n + '; ' if n else ''}priced as {price_as} (what-if)" for n in note]
        if structured_fallback:
            note = [f"{n + '; ' if n else ''}JSON asked in the {structured_fallback} form "
                    "(the server refused response_format)" if b not in ("offline",) else n
                    for n, b in zip(note, table["backend"])]
        table["note"] = [n if not pd.isna(c) else
                         f"{n + '; ' if n else ''}price unknown: add the model to "
                         "data/llm_prices.csv" for n, c in zip(note, table["cost_usd"])]
        table = table.drop(columns="stand_in")
        if total and len(table) > 1:
            row = {c: table[c].sum() for c in cols if c not in ("backend", "model", "note")}
            row.update(backend="total", model="", note="")
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        return table[cols]

    def sent_log(self) -> pd.DataFrame:
        """One row per request sent: time, backend, server, model, body as JSON."""
        with self.lock:
            rows = [{"time": pd.Timestamp(r["time"], unit="s"), "backend": r["backend"],
                     "server": r["server"], "model": r["body"].get("model"),
                     "body": json.dumps(r["body"], ensure_ascii=False)} for r in self.sent]
        return pd.DataFrame(rows, columns=["time", "backend", "server", "model", "body"])

    def save_sent_log(self, path: str | Path) -> Path:
        """Write the sent requests as JSON lines (one request per line)."""
        path = Path(path)
        with self.lock:
            lines = [json.dumps(r, ensure_ascii=False) for r in self.sent]
        path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        return path


# --------------------------------------------------------------------------------- the session
def _local_server_cpu() -> dict:
    """CPU seconds the local model servers of this process used so far (Linux), if any ran:
    the tour's CPU count misses them, since the kernel does not wait for its servers."""
    from . import local
    total = 0.0
    for server in list(local._SERVERS.values()):
        try:
            with open(f"/proc/{server.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return {"llm_local_server_cpu_s": round(total, 1)} if local._SERVERS else {}


def session_summary() -> dict:
    """What every LLM client of this process (the kernel) did, in a few numbers: calls, failed
    calls, replay misses, invalid JSON answers, answers cut at max_tokens, retries, and who
    answered (``llm_models``), in total and per model that answered (``llm_by_model``: a
    notebook may also call scripted planted models or the offline vectorizer). A notebook records it last, so a run can be checked from outside (the tour, the
    tests: a replay must have no miss).

    >>> from perso_kit.llm import get_llm
    >>> _ = get_llm("offline", cache_path="off").chat("hello")
    >>> session_summary()["llm_calls"] >= 1
    True
    """
    log_ = pd.DataFrame(list(_SESSION_LOG))
    if log_.empty:
        return {"llm_calls": 0, "llm_failed": 0, "llm_refused": 0, "llm_replay_misses": 0,
                "llm_invalid_json": 0, "llm_truncated": 0, "llm_retries": 0, "llm_models": [],
                "llm_by_model": {}}
    log_["truncated"] = log_.get("truncated", pd.Series(False, index=log_.index)) \
        .fillna(False).astype(bool)
    log_["served_model"] = log_["served_model"].fillna(log_["model"]).astype(str)

    def counts(part: pd.DataFrame) -> dict:
        kinds = part["error_kind"]
        refused = kinds.isin(["budget", "privacy"])  # stopped before sending, by design
        return {"calls": int(len(part)),
                "failed": int((~part["ok"].astype(bool) & ~refused).sum()),
                "refused": int(refused.sum()),
                "replay_misses": int(kinds.eq("replay_miss").sum()),
                "invalid_json": int(kinds.eq("invalid_json").sum()),
                "truncated": int(part["truncated"].sum()),
                "retries": int((part["attempts"].fillna(0) - 1).clip(lower=0).sum())}

    total = counts(log_)
    return {**{f"llm_{k}": v for k, v in total.items()}, **_local_server_cpu(),
            "llm_models": sorted(set(log_["served_model"])),
            "llm_by_model": {m: counts(g) for m, g in log_.groupby("served_model", sort=True)}}
