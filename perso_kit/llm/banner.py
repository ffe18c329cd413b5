"""Who answers, in words: the label of a backend and the banner a notebook shows on top.

Every figure and number of LLM results is stamped with who produced it, so these words matter:
the offline stand-in always says it is not an LLM, a replay names the model that was recorded,
and a small local model says that its behaviour is evidence about that model only.

>>> from perso_kit.llm import get_llm
>>> print(get_llm("offline", cache_path="off").banner())  # doctest: +ELLIPSIS
offline stand-in — plain text heuristics, not an LLM. Its answers come from word overlap ...
"""
from __future__ import annotations

import html
from pathlib import Path

from .reply import STAND_IN_LABEL


class Banner:
    """A one-line statement of the backend in use, for notebooks (text and HTML)."""

    def __init__(self, text: str, kind: str):
        self.text, self.kind = text, kind

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colors = {"stand-in": "#fff4ce", "replay": "#e5f0ff", "live": "#e6f4ea"}
        return (f'<div style="padding:6px 10px;border-left:4px solid #888;background:'
                f'{colors.get(self.kind, "#eee")};font-family:sans-serif">'
                f'<b>LLM backend:</b> {html.escape(self.text)}</div>')


def backend_label(settings, model: str) -> str:
    """Which backend answers, in words (the stand-in says it is not an LLM)."""
    s = settings
    if s.backend == "offline":
        return STAND_IN_LABEL
    if s.backend == "replay":
        return f"replay of {Path(s.replay_path).name} (recorded answers of {model})"
    if s.backend == "azure":
        return f"Azure OpenAI · deployment {model}"
    if s.backend == "local":
        return f"local model {model} (llama.cpp server on this machine, no key)"
    if s.backend == "openai" and s.base_url.rstrip("/") == "https://api.openai.com/v1":
        return f"OpenAI · {model}"
    where = "local " if s.is_local else ""
    return f"OpenAI-compatible {where}server at {s.base_url} · {model}"


def backend_banner(label: str, settings, budget, cache) -> Banner:
    """The banner of a client: its ``label`` plus what-if prices, budget, privacy mode and
    caching, and what the stand-in's or a small local model's numbers can mean."""
    backend = settings.backend
    extra = []
    if settings.price_as:
        extra.append(f"priced as {settings.price_as} (what-if prices)")
    if budget.limit_usd is not None:
        extra.append(f"budget ${budget.limit_usd:.2f}")
    if settings.titles_only:
        extra.append("titles-only privacy mode")
    if cache is not None and not cache.broken and backend != "replay":
        extra.append("answers cached")
    kind = {"offline": "stand-in", "replay": "replay"}.get(backend, "live")
    if backend == "local":
        text_note = (". A real language model running on this CPU; a small model's "
                     "behaviour is evidence about that model, not about LLMs in general.")
    else:
        text_note = ""
    text = label + (f" ({'; '.join(extra)})" if extra else "") + text_note
    if kind == "stand-in":
        text += (". Its answers come from word overlap and templates over the prompt; "
                 "numbers measured with it describe the plumbing, not a language model.")
    return Banner(text, kind)
