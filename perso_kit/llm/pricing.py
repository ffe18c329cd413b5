"""Tokens, prices and the budget.

* :func:`load_prices` reads the dated, editable price table ``data/llm_prices.csv`` (USD per
  million tokens; a snapshot to check against the provider's page).
* :func:`estimate_tokens` counts tokens *before* sending, without a tokenizer: about one token
  per 4 characters of English; :func:`worst_case_tokens` errs on the safe side (one per 3).
* :class:`Budget` refuses a call before it is sent when its worst case -- estimated prompt tokens
  plus ``max_tokens`` of answer, at the table price -- would cross the limit. Reservations are
  made under a lock, so a batch of parallel calls cannot overshoot together.

>>> price = PriceTable().lookup("gpt-4o-mini-2024-07-18")   # longest prefix: gpt-4o-mini
>>> round(price.cost(prompt_tokens=1_000_000, completion_tokens=0), 2)
0.15
>>> b = Budget(0.01)
>>> b.reserve(0.004), b.reserve(0.007)      # the second would cross 1 cent
(True, False)
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import config

PRICE_FILE = config.SHIPPED_DATA_DIR / "llm_prices.csv"
CHARS_PER_TOKEN = 4.0  # typical for English with OpenAI tokenizers
SAFE_CHARS_PER_TOKEN = 3.0  # what the budget assumes, to err on the safe side
TOKENS_PER_MESSAGE = 4  # role and separators


def load_prices(path: str | Path | None = None) -> pd.DataFrame:
    """The price table (lines starting with ``#`` are comments)."""
    path = Path(path) if path else PRICE_FILE
    if not path.exists():
        raise FileNotFoundError(f"price table {path} not found; it ships in the kit's data/ "
                                "folder (pass prices=... to use another file)")
    table = pd.read_csv(path, comment="#", skipinitialspace=True)
    need = {"model", "input_usd_per_1m", "output_usd_per_1m", "as_of"}
    if not need <= set(table.columns):
        raise ValueError(f"{path}: the price table needs the columns {sorted(need)}")
    return table


@dataclass(frozen=True)
class Price:
    """USD per million tokens for one model, with the date the price was noted."""

    model: str
    input_per_1m: float
    output_per_1m: float
    cached_input_per_1m: float | None = None
    as_of: str = ""

    def cost(self, prompt_tokens: int, completion_tokens: int,
             cached_prompt_tokens: int = 0) -> float:
        cached_rate = (self.cached_input_per_1m if self.cached_input_per_1m is not None
                       else self.input_per_1m)
        fresh = max(0, prompt_tokens - cached_prompt_tokens)
        return (fresh * self.input_per_1m + cached_prompt_tokens * cached_rate
                + completion_tokens * self.output_per_1m) / 1e6


FREE = Price("free", 0.0, 0.0, 0.0, "")


class PriceTable:
    """Prices by model name: an exact match, else the longest table entry that prefixes it."""

    def __init__(self, path: str | Path | None = None):
        self.table = load_prices(path)

    def lookup(self, model: str) -> Price | None:
        names = self.table["model"].astype(str)
        hits = self.table[names == model]
        if hits.empty:
            prefixes = [m for m in names if model.startswith(m)]
            if not prefixes:
                return None
            hits = self.table[names == max(prefixes, key=len)]
        row = hits.iloc[0]
        cached = row.get("cached_input_usd_per_1m")
        return Price(str(row["model"]), float(row["input_usd_per_1m"]),
                     float(row["output_usd_per_1m"]),
                     None if cached is None or pd.isna(cached) else float(cached),
                     str(row["as_of"]))


def estimate_tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """About how many tokens ``text`` is (no tokenizer: characters / 4, rounded up)."""
    return int(math.ceil(len(text or "") / chars_per_token))


def request_text(messages: list[dict], tools: list | None = None,
                 response_format: dict | None = None) -> str:
    """All the text of a request that counts as prompt tokens."""
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(content or "")
        if m.get("tool_calls"):
            parts.append(json.dumps(m["tool_calls"]))
    if tools:
        parts.append(json.dumps(tools))
    if response_format:
        parts.append(json.dumps(response_format))
    return "\n".join(parts)


def estimate_prompt_tokens(messages: list[dict], tools: list | None = None,
                           response_format: dict | None = None, safe: bool = False) -> int:
    """Estimated prompt tokens of a request; ``safe=True`` over-estimates (for the budget)."""
    cpt = SAFE_CHARS_PER_TOKEN if safe else CHARS_PER_TOKEN
    return (estimate_tokens(request_text(messages, tools, response_format), cpt)
            + TOKENS_PER_MESSAGE * len(messages))


class Budget:
    """A spending limit in USD, shared by every call that holds it (thread-safe).

    :meth:`reserve` books a call's worst case before it is sent and says whether it fits;
    :meth:`settle` replaces the booking by what the call really cost.
    """

    def __init__(self, limit_usd: float | None):
        if limit_usd is not None and (math.isnan(limit_usd) or limit_usd < 0):
            raise ValueError(f"budget must be a non-negative number of dollars, got {limit_usd}")
        self.limit_usd = limit_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.refused = 0
        self._lock = threading.Lock()

    def reserve(self, worst_case_usd: float) -> bool:
        with self._lock:
            if self.limit_usd is None:
                self.reserved_usd += worst_case_usd
                return True
            if self.spent_usd + self.reserved_usd + worst_case_usd > self.limit_usd + 1e-12:
                self.refused += 1
                return False
            self.reserved_usd += worst_case_usd
            return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
            if not math.isnan(actual_usd):
                self.spent_usd += actual_usd

    @property
    def remaining_usd(self) -> float:
        if self.limit_usd is None:
            return math.inf
        return self.limit_usd - self.spent_usd - self.reserved_usd

    def __repr__(self) -> str:
        limit = "none" if self.limit_usd is None else f"${self.limit_usd:.4f}"
        return f"Budget(limit={limit}, spent=${self.spent_usd:.6f}, refused={self.refused})"
