"""Many chat requests at once: :func:`run_batch`, behind :meth:`perso_kit.llm.client.LLM.map`.

Requests run in a pool of threads (the waiting is on the network, so threads are enough) and
the results come back **in input order**. A batch never loses a result:

* a failed request comes back as a Reply with ``error`` set, beside the successes (a bug in one
  request becomes ``error_kind="error"`` instead of stopping the batch);
* on KeyboardInterrupt (the stop button), the requests not yet done are cancelled and marked
  ``error_kind="interrupted"``; the completed ones are kept (and cached, so running the batch
  again only sends the rest). The list is returned, or carried by :class:`BatchInterrupted`.

The local backend runs one request at a time: its llama.cpp server answers them one after
another, so more threads would only wait in its queue (and could time out there).
"""
from __future__ import annotations

import concurrent.futures as cf
import warnings
from typing import Iterable

from tqdm.auto import tqdm

from .backends import scrub
from .reply import Reply


class BatchInterrupted(KeyboardInterrupt):
    """Raised by ``map(..., on_interrupt="raise")``; ``.replies`` holds every result so far."""

    def __init__(self, replies: list[Reply]):
        super().__init__(f"interrupted: {sum(r.error_kind != 'interrupted' for r in replies)} "
                         f"of {len(replies)} requests completed")
        self.replies = replies


def normalize_requests(requests: Iterable) -> list[dict]:
    """Each request as a dict of chat keyword arguments (a string or a list of messages
    becomes ``{"messages": ...}``)."""
    reqs = []
    for r in requests:
        if isinstance(r, dict) and "messages" in r:
            reqs.append(dict(r))
        elif isinstance(r, (str, list, tuple)):
            reqs.append({"messages": r})
        else:
            raise TypeError("each request must be a dict of chat arguments with "
                            f"'messages', a list of messages, or a string; got {r!r:.80}")
    return reqs


def safe_chat(llm, kw: dict) -> Reply:
    """``llm.chat(**kw)``, with any exception turned into a failed Reply."""
    try:
        return llm.chat(**kw)
    except Exception as e:  # noqa: BLE001 -- a batch never loses results to one bug
        return Reply(backend=llm.backend, model=llm.model, error_kind="error",
                     error=scrub(f"{type(e).__name__}: {e}"))


def run_batch(llm, requests: Iterable, concurrency: int = 8, desc: str = "LLM calls",
              progress: bool = True, on_interrupt: str = "return") -> list[Reply]:
    """Run ``requests`` through ``llm.chat`` in parallel; see the module docstring.

    ``llm.last_batch`` is the results list from the start (it fills in as requests complete),
    so an interrupted notebook cell still has it.
    """
    reqs = normalize_requests(requests)
    results: list[Reply | None] = [None] * len(reqs)
    llm.last_batch = results
    if not reqs:
        return []
    if llm.backend == "local":
        concurrency = 1  # llama.cpp's Python server answers one request at a time
    pool = cf.ThreadPoolExecutor(max_workers=max(1, int(concurrency)),
                                 thread_name_prefix="perso-kit-llm")
    bar = tqdm(total=len(reqs), desc=desc, unit="call", disable=not progress)
    futures = {pool.submit(safe_chat, llm, kw): i for i, kw in enumerate(reqs)}
    failed = 0
    try:
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for f in done:
                results[futures[f]] = f.result()
                failed += not results[futures[f]].ok
            if done:
                bar.update(len(done))
                bar.set_postfix(failed=failed, refresh=False)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for f, i in futures.items():
            if results[i] is None and f.done() and not f.cancelled():
                results[i] = f.result()
        n_done = sum(r is not None for r in results)
        for i, r in enumerate(results):
            if r is None:
                results[i] = Reply(backend=llm.backend, model=llm.model,
                                   error="the batch was interrupted before this request "
                                         "completed", error_kind="interrupted")
        bar.close()
        message = (f"interrupted: {n_done} of {len(reqs)} requests completed and are kept "
                   "(and cached); run map() again to finish the rest")
        warnings.warn(message, RuntimeWarning, stacklevel=3)  # the caller of LLM.map
        llm.last_batch = results
        if on_interrupt == "raise":
            raise BatchInterrupted(results) from None  # type: ignore[arg-type]
        return results  # type: ignore[return-value]
    bar.close()
    pool.shutdown(wait=True)
    llm.last_batch = results
    return results  # type: ignore[return-value]
