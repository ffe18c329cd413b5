"""Many chat requests through OpenAI's **Batch API**, collected into the answer cache.

A batch trades waiting for price: the requests go up as one file, are answered within 24 hours,
and cost half the standard price (:data:`BATCH_DISCOUNT`). The answers land in the kit's cache
under the **same keys a direct** :meth:`~perso_kit.llm.client.LLM.chat` **call would use**, so
a notebook run afterwards (or a replay of the cache file) finds every one of them with no miss.

The path, one function per step (:func:`run_batch_api` runs them all, and resumes):

====  ==============================================================  ======================
step  what happens                                                    function
====  ==============================================================  ======================
1     each request becomes the body ``LLM.chat`` would send, and its  :func:`prepare`
      cache key; requests already in the cache are left out,
      duplicates are sent once
2     the budget books the whole batch's worst case at the batch      :meth:`BatchJob.submit`
      price (or nothing is sent); the request file is written (JSONL:
      ``custom_id`` = the cache key, ``method``, ``url``, ``body``),
      uploaded (``files.create(purpose="batch")``) and the batch
      created (``batches.create(endpoint="/v1/chat/completions",
      completion_window="24h")``); its id is saved at once in a small
      JSON state file beside the cache
3     poll ``batches.retrieve`` with a growing wait and a progress    :meth:`BatchJob.wait`
      bar until a final status (completed, failed, expired,
      cancelled); stopping the poll loses nothing: run again and it
      resumes from the state file
4     read the output **and** error files; store every answer in the  :meth:`BatchJob.collect`
      cache; count failed lines, lines an expired or cancelled batch
      never answered, and answers that are not the JSON asked for --
      never raise on one bad line
====  ==============================================================  ======================

The API key is used only in the HTTP header: it never enters the request file, the state file,
the cache or a log. With a real key (``get_llm("openai")``), the same code talks to OpenAI; the
course runs it against :class:`~perso_kit.llm.batch_fake.FakeBatchAPI`, whose lines the offline
stand-in answers (the mechanics of a batch, not an LLM's answers). Azure OpenAI's batches
(global-batch deployments, their own endpoint) are not covered.

>>> BATCH_DISCOUNT
0.5
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
from tqdm.auto import tqdm

from . import ledger
from .backends import scrub
from .batch import normalize_requests
from .cache import canonical_json
from .parse import parse_completion
from .pricing import FREE, Price, PriceTable
from .reply import Usage
from .request import normalize_messages, normalize_tools, wire_body

log = logging.getLogger("perso_kit.llm")
_sleep = time.sleep  # the wait between polls (tests replace it)

#: OpenAI prices Batch API calls at 50% of the standard (synchronous) price, input and output
#: tokens alike ("50% cost discount compared to synchronous APIs", OpenAI's Batch API guide and
#: pricing page). The kit's price table (``data/llm_prices.csv``) holds standard prices only;
#: the batch price is that table's price times this factor.
BATCH_DISCOUNT = 0.5
ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
FINAL_STATUSES = ("completed", "failed", "expired", "cancelled")
MAX_LINES = 50_000  # OpenAI's limit of requests per batch file
#: error codes of lines a batch never ran (counted as unanswered, not failed)
UNANSWERED_CODES = ("batch_expired", "batch_cancelled")


def batch_price(price: Price | None) -> Price | None:
    """``price`` at the Batch API's discount (None stays None: an unknown price).

    >>> p = batch_price(Price("gpt-4o-mini", 0.15, 0.60, 0.075))
    >>> round(p.cost(1_000_000, 1_000_000), 3)       # standard: 0.15 + 0.60
    0.375
    """
    if price is None or price is FREE:
        return price
    cached = None if price.cached_input_per_1m is None \
        else price.cached_input_per_1m * BATCH_DISCOUNT
    return Price(f"{price.model} (batch)", price.input_per_1m * BATCH_DISCOUNT,
                 price.output_per_1m * BATCH_DISCOUNT, cached, price.as_of)


# --------------------------------------------------------------------------------- reports
@dataclass
class BatchReport:
    """What a batch did. Counts are of distinct requests (a request asked twice is sent once).

    ``status`` is the batch's last status (``"nothing to send"`` when every request was already
    in the cache, ``"submitted"``/``"in_progress"``... when the poll stopped before the end).
    ``stored``: answers written to the cache (``invalid_json`` of them are not the JSON asked
    for: a replay reproduces them as such). ``failed``: lines answered with an error.
    ``unanswered``: lines never run (an expired, cancelled or failed batch: error code
    ``batch_expired``/``batch_cancelled``, or absent from both files).
    ``cost_usd`` is at the batch price (``standard_cost_usd``: the same tokens at the standard
    price); both are 0 when the stand-in or a local server answered.
    """

    name: str
    status: str
    requested: int = 0
    already_cached: int = 0
    sent: int = 0
    stored: int = 0
    invalid_json: int = 0
    failed: int = 0
    unanswered: int = 0
    refused: int = 0
    batch_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    stand_in: bool = False
    cost_usd: float = 0.0
    standard_cost_usd: float = 0.0
    errors: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    state_path: str | None = None
    request_path: str | None = None

    @property
    def done(self) -> bool:
        """True when the batch reached a final status and was collected."""
        return self.status in FINAL_STATUSES or self.status == "nothing to send"

    def cost_at(self, model: str, prices: str | Path | None = None) -> dict:
        """What this batch's tokens would cost at ``model``'s table price: standard and batch
        (for answers the stand-in gave, its tokens are estimates, and no model answered)."""
        price = PriceTable(prices).lookup(model)
        if price is None:
            raise ValueError(f"no price for {model!r} in the price table (data/llm_prices.csv)")
        usage = (self.prompt_tokens, self.completion_tokens)
        return {"model": price.model, "as_of": price.as_of,
                "standard_usd": price.cost(*usage), "batch_usd": batch_price(price).cost(*usage)}

    def summary(self) -> pd.Series:
        """The counts, tokens and costs as one column."""
        keys = ["status", "batch_id", "requested", "already_cached", "sent", "stored",
                "invalid_json", "failed", "unanswered", "refused", "prompt_tokens",
                "completion_tokens", "cost_usd", "standard_cost_usd"]
        s = pd.Series({k: getattr(self, k) for k in keys}, name=self.name, dtype=object)
        if self.stand_in:
            s["answered by"] = "offline stand-in (not an LLM)"
        return s

    def __str__(self) -> str:
        who = " by the offline stand-in (not an LLM)" if self.stand_in else ""
        text = (f"batch {self.name} ({self.batch_id or 'not submitted'}): {self.status}; "
                f"{self.requested} requests, {self.already_cached} already cached, "
                f"{self.sent} sent, {self.stored} answers stored{who}, {self.failed} failed, "
                f"{self.unanswered} unanswered")
        if self.invalid_json:
            text += f", {self.invalid_json} not the JSON asked for"
        return text + "".join(f"\n  note: {n}" for n in self.notes)


# --------------------------------------------------------------------------------- the job
@dataclass
class _Line:
    key: str
    request: dict      # the backend-neutral request (what the key hashes)
    body: dict         # what LLM.chat would send
    tools: list | None
    json_schema: dict | None


class BatchJob:
    """One batch: its lines, its files, its state. Build it with :func:`prepare`."""

    def __init__(self, llm, lines: list[_Line], name: str, folder: Path, report: BatchReport):
        self.llm = llm
        self.lines = {line.key: line for line in lines}
        self.name = name
        self.folder = folder
        self.report = report
        self.state_path = folder / f"{name}.state.json"
        self.request_path = folder / f"{name}.requests.jsonl"
        report.state_path, report.request_path = str(self.state_path), str(self.request_path)
        self.state: dict = {}
        if self.state_path.is_file():
            try:
                self.state = json.loads(self.state_path.read_text())
            except (OSError, ValueError):
                report.notes.append(f"the state file {self.state_path.name} could not be read; "
                                    "a new batch will be submitted")
        if self.state.get("collected"):  # the same lines again: that batch missed them
            self.state = {}
        report.batch_id = self.state.get("batch_id")
        if report.batch_id:
            report.status = self.state.get("status") or "submitted"
            report.sent = len(self.lines)

    # ------------------------------------------------------------------ state
    def _save_state(self, **changes) -> None:
        self.state.update(changes)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.state_path)  # never half-written

    def write_request_file(self) -> Path:
        """The JSONL file OpenAI takes: one request per line, ``custom_id`` = its cache key."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.request_path, "w", encoding="utf-8") as f:
            for key, line in self.lines.items():
                f.write(json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT,
                                    "body": line.body}, ensure_ascii=False) + "\n")
        return self.request_path

    # ------------------------------------------------------------------ step 2
    def submit(self) -> str | None:
        """Upload the request file and create the batch; the batch id is saved at once. A job
        whose state file already names a batch is not submitted again (it resumes)."""
        if self.report.batch_id or not self.lines:
            return self.report.batch_id
        client = self.llm._client
        self._book_budget()
        path = self.write_request_file()
        server = ledger.server_name(self.llm.settings, self.llm.backend)
        for line in self.lines.values():  # the sent log: what leaves the process
            self.llm.ledger.record_sent(self.llm.backend, f"{server} (batch file)", line.body)
        uploaded = client.files.create(file=(path.name, path.read_bytes()), purpose="batch")
        self._save_state(name=self.name, input_file_id=uploaded.id, status="uploaded",
                         model=self.llm.model, backend=self.llm.backend, server=server,
                         requests=len(self.lines), request_file=path.name)
        batch = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT,
                                      completion_window=COMPLETION_WINDOW,
                                      metadata={"perso_kit_batch": self.name})
        self._save_state(batch_id=batch.id, status=batch.status, submitted_at=time.time())
        self.report.batch_id, self.report.status = batch.id, batch.status
        self.report.sent = len(self.lines)
        log.info("batch %s submitted: %s, %d requests", self.name, batch.id, len(self.lines))
        return batch.id

    def _book_budget(self) -> None:
        """Book every line's worst case at the batch price before anything is sent; raise
        ``ValueError`` (nothing sent) when the whole batch would not fit the budget."""
        llm, booked = self.llm, 0.0
        price = batch_price(ledger.price_for(llm.prices, llm.settings, llm.model))
        for line in self.lines.values():
            refusal, reserved = ledger.reserve_call(llm.budget, line.body, price, llm.model)
            if refusal:
                llm.budget.settle(booked, 0.0)
                raise ValueError(f"the batch of {len(self.lines)} requests was not sent: "
                                 f"{refusal} (the worst case of the whole batch at the batch "
                                 f"price is booked before sending)")
            booked += reserved
        llm.budget.settle(booked, 0.0)  # released: each answer's real cost is settled later

    # ------------------------------------------------------------------ step 3
    def wait(self, poll_s: float = 5.0, max_poll_s: float = 120.0,
             max_wait_s: float | None = None, progress: bool = True,
             max_poll_errors: int = 5):
        """Poll until the batch reaches a final status; returns the last batch object (None if
        none could be read).

        The wait between polls starts at ``poll_s`` and grows by half each time, up to
        ``max_poll_s``. ``max_wait_s`` stops polling after that many seconds of waiting (the
        batch goes on at the provider; call again, or run again: the state file resumes it).
        The stop button (KeyboardInterrupt) also stops the poll and says how to resume.
        """
        bid = self.report.batch_id
        if not bid:
            return None
        client, batch, waited, delay, errors = self.llm._client, None, 0.0, poll_s, 0
        bar = tqdm(total=len(self.lines), desc=f"batch {bid}", unit="req", disable=not progress)
        try:
            while True:
                try:
                    batch = client.batches.retrieve(bid)
                    errors = 0
                except Exception as e:  # noqa: BLE001 -- a poll failure is retried, not fatal
                    errors += 1
                    self.report.notes.append(f"poll failed: {scrub(str(e))[:160]}")
                    if errors >= max_poll_errors:
                        self.report.notes.append(
                            f"stopped polling after {errors} failures in a row; the batch id "
                            f"is saved in {self.state_path.name}: run again to resume")
                        break
                else:
                    counts = getattr(batch, "request_counts", None)
                    done = (counts.completed + counts.failed) if counts else 0
                    bar.n = min(done, bar.total)
                    bar.set_postfix(status=batch.status, refresh=False)
                    bar.refresh()
                    self._save_state(status=batch.status)
                    self.report.status = batch.status
                    if batch.status in FINAL_STATUSES:
                        break
                if max_wait_s is not None and waited + delay > max_wait_s:
                    self.report.notes.append(
                        f"stopped waiting after {waited:g} s (status {self.report.status}); "
                        f"the batch goes on: run again to resume from {self.state_path.name}")
                    break
                _sleep(delay)
                waited += delay
                delay = min(delay * 1.5, max_poll_s)
        except KeyboardInterrupt:
            message = (f"polling stopped; batch {bid} goes on at the provider. Run the same "
                       f"call again to resume (the id is saved in {self.state_path})")
            self.report.notes.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        finally:
            bar.close()
        return batch

    # ------------------------------------------------------------------ step 4
    def collect(self, batch=None) -> BatchReport:
        """Read the output and error files of a finished batch and store every answer in the
        cache (the same keys a direct chat call uses). Counts what failed; raises for nothing
        that one line or one file does."""
        r, llm = self.report, self.llm
        if batch is None and r.batch_id:
            try:
                batch = llm._client.batches.retrieve(r.batch_id)
            except Exception as e:  # noqa: BLE001
                r.notes.append(f"could not read batch {r.batch_id}: {scrub(str(e))[:160]}")
                return r
        if batch is None or batch.status not in FINAL_STATUSES:
            return r
        r.status = batch.status
        r.stored = r.invalid_json = r.failed = r.unanswered = 0  # collecting twice counts once
        r.prompt_tokens = r.completion_tokens = 0
        r.cost_usd = r.standard_cost_usd = 0.0
        r.errors = []
        if batch.status == "failed" and getattr(batch, "errors", None) is not None:
            for e in (batch.errors.data or []):
                r.notes.append(f"the batch failed: {e.code}: {e.message} (line {e.line})")
        seen: set[str] = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            try:
                text = llm._client.files.content(file_id).text
            except Exception as e:  # noqa: BLE001
                r.notes.append(f"could not download file {file_id}: {scrub(str(e))[:160]}")
                continue
            for raw in text.splitlines():
                if raw.strip():
                    self._collect_line(raw, seen)
        r.unanswered += sum(k not in seen for k in self.lines)
        r.tokens_estimated = r.tokens_estimated or r.stand_in
        self._save_state(status=batch.status, collected=True, stored=r.stored,
                         failed=r.failed, unanswered=r.unanswered)
        return r

    def _collect_line(self, raw: str, seen: set[str]) -> None:
        r, llm = self.report, self.llm
        try:
            row = json.loads(raw)
            key = row.get("custom_id")
            line = self.lines.get(key)
            if line is None:
                r.notes.append(f"an answer for an unknown custom_id {str(key)[:20]} was skipped")
                return
            seen.add(key)
            response = row.get("response") or {}
            body = response.get("body") or {}
            if response.get("status_code") != 200 or not body.get("choices"):
                error = row.get("error") or body.get("error") or {}
                code = error.get("code") or error.get("type")
                if code in UNANSWERED_CODES:
                    r.unanswered += 1   # never run: the batch expired or was cancelled
                else:
                    r.failed += 1
                r.errors.append({"custom_id": key, "status_code": response.get("status_code"),
                                 "code": code,
                                 "message": scrub(str(error.get("message") or ""))[:200]})
                return
            reply = parse_completion(body, backend=llm.backend, model=llm.model,
                                     tools=line.tools, json_schema=line.json_schema)
            price = batch_price(ledger.price_for(llm.prices, llm.settings, llm.model,
                                                 reply.model))
            cost = ledger.call_cost(price, reply.usage)
            standard = ledger.call_cost(ledger.price_for(llm.prices, llm.settings, llm.model,
                                                         reply.model), reply.usage)
            stored = dict(body)
            stored["usage"] = {"prompt_tokens": reply.usage.prompt_tokens,
                               "completion_tokens": reply.usage.completion_tokens}
            if llm.cache is not None and not llm.cache.broken:
                llm.cache.put(key, stored, model=llm.model, backend=llm.backend,
                              request=line.request, cost_usd=0.0 if math.isnan(cost) else cost)
            r.stored += 1
            r.invalid_json += reply.error_kind == "invalid_json"
            r.stand_in = r.stand_in or reply.stand_in
            r.prompt_tokens += reply.usage.prompt_tokens
            r.completion_tokens += reply.usage.completion_tokens
            r.cost_usd += cost
            r.standard_cost_usd += standard
            reply.key, reply.cost_usd, reply.attempts = key, cost, 0
            llm.ledger.log_call(ledger.chat_record(reply, llm.backend, llm.model))
            if not math.isnan(cost):
                llm.budget.settle(0.0, cost)
        except Exception as e:  # noqa: BLE001 -- one unreadable line never stops the rest
            r.failed += 1
            r.errors.append({"custom_id": None, "status_code": None, "code": "unreadable",
                             "message": scrub(f"{type(e).__name__}: {e}")[:200]})


# --------------------------------------------------------------------------------- step 1
def prepare(llm, requests: Iterable, name: str | None = None) -> BatchJob:
    """The job for ``requests`` (chat keyword dicts, lists of messages, or strings, as for
    :meth:`~perso_kit.llm.client.LLM.map`): each becomes the body ``llm.chat`` would send and
    its cache key; requests already cached are left out, duplicates are sent once.

    ``name`` names the job's files (default: a hash of the requests to send, so running the
    same cell again finds the same job and resumes it). They live in a folder beside the
    cache file: ``<cache name>-batches/``. Raises ``ValueError`` when ``llm`` has no writable
    cache (the answers would have nowhere to go) or a request is malformed.
    """
    cache = llm.cache
    if cache is None or cache.broken or cache.readonly or llm.backend == "replay":
        raise ValueError("the Batch API path stores its answers in the LLM cache: use a client "
                         "with a writable cache (cache_path=... or PERSO_KIT_LLM_CACHE), not "
                         "replay and not cache_path='off'")
    report = BatchReport(name="", status="prepared")
    lines: list[_Line] = []
    keys: set[str] = set()
    mode = llm.structured_mode if llm.structured_mode != "auto" else "response_format"
    for kw in normalize_requests(requests):
        kw = dict(kw)
        sample = int(kw.pop("sample", 0) or 0)
        kw.pop("cache", None)
        messages = normalize_messages(kw.pop("messages"))
        tools = normalize_tools(kw.pop("tools", None))
        json_schema = kw.pop("json_schema", None)
        if json_schema is not None:
            from . import structured
            structured.check_schema(json_schema)
        req = llm._request(messages, json_schema, tools, kw.pop("tool_choice", None),
                           kw.pop("temperature", 0.0), kw.pop("max_tokens", None), kw)
        key = llm._key(req, sample)
        report.requested += 1
        if key in keys:
            continue
        keys.add(key)
        if llm.settings.titles_only:
            from .privacy import check_titles_only
            if check_titles_only(messages):
                report.refused += 1
                continue
        if cache.get(key) is not None:
            report.already_cached += 1
            continue
        lines.append(_Line(key, req, wire_body(req, mode, llm.backend, llm._notice),
                           tools, json_schema))
    report.requested = len(keys)
    if len(lines) > MAX_LINES:
        raise ValueError(f"{len(lines)} requests: a batch file holds at most {MAX_LINES:,}; "
                         "split the requests into several batches")
    if name is None:
        digest = hashlib.sha256(canonical_json(sorted(x.key for x in lines)).encode())
        name = f"batch-{digest.hexdigest()[:12]}"
    report.name = name
    if not lines:
        report.status = "nothing to send"
    folder = Path(cache.path).with_name(f"{Path(cache.path).stem}-batches")
    return BatchJob(llm, lines, name, folder, report)


def run_batch_api(llm, requests: Iterable, *, name: str | None = None, poll_s: float = 5.0,
                  max_poll_s: float = 120.0, max_wait_s: float | None = None,
                  progress: bool = True) -> BatchReport:
    """Send ``requests`` as one batch, wait, and collect the answers into ``llm``'s cache.

    Runs :func:`prepare`, :meth:`BatchJob.submit`, :meth:`BatchJob.wait` and
    :meth:`BatchJob.collect`. Running it again with the same requests resumes the same batch
    (its id is in the state file) instead of sending it twice; once collected, a new run sends
    only what is still missing from the cache (the failed lines). Returns a
    :class:`BatchReport`; ``report.done`` is False when the poll stopped before the end.
    """
    job = prepare(llm, requests, name=name)
    if not job.lines:
        return job.report
    job.submit()
    batch = job.wait(poll_s=poll_s, max_poll_s=max_poll_s, max_wait_s=max_wait_s,
                     progress=progress)
    if batch is not None and batch.status in FINAL_STATUSES:
        job.collect(batch)
    log.info("%s", scrub(str(job.report)))
    return job.report
