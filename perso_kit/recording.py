"""Real answers with no key and no build: the shipped recording of a local model.

The kit ships, in ``data/recordings/``, the answers SmolLM2-135M-Instruct (a real, very small
language model) gave when the Act-3 notebooks ran with the local backend at their ``local``
size, and the numbers those runs recorded. Anyone can remake it::

    python -m perso_kit record                     # needs pip install -r requirements-local.txt

* ``<name>.sqlite`` is a replayable cache (see :mod:`perso_kit.llm.cache`): with
  ``PERSO_KIT_LLM_BACKEND=replay PERSO_KIT_LLM_REPLAY=data/recordings/smollm2-135m.sqlite`` the
  Act-3 notebooks run against those answers instantly. Its ``meta`` table holds the model, the
  SHA-256 of the model file, the date and the notebooks recorded.
* ``<name>.json`` holds the same metadata and every number each notebook recorded in that run,
  so a notebook running on the stand-in can show the real model's numbers beside its own
  (:func:`beside`). The test suite replays the recording through every Act-3 notebook, checks
  that no request misses, and that the replayed numbers are the ones stored here.

A replay that misses a request (a partial recording, or one made for other parameters) stops
the notebook with one clear message (:func:`stop_on_replay_miss`), not with whatever error the
missing answers would cause later.

What a 135M-parameter model does is evidence about that model, not about LLMs in general.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sqlite3
from pathlib import Path

import pandas as pd

from .config import SHIPPED_DATA_DIR, environment

RECORDING_DIR = SHIPPED_DATA_DIR / "recordings"
DEFAULT_RECORDING = "smollm2-135m"
#: the notebooks a recording covers (Act 3)
ACT3 = ("05", "06", "07", "08", "09", "10", "11", "12")


def recording_path(name: str = DEFAULT_RECORDING, folder: str | Path | None = None) -> Path:
    """The ``.sqlite`` file of the recording ``name``."""
    return Path(folder or RECORDING_DIR) / f"{name}.sqlite"


def load(name: str = DEFAULT_RECORDING, folder: str | Path | None = None) -> dict | None:
    """The recording's metadata and recorded numbers (``{"meta": ..., "results": {notebook:
    {name: value}}}``), or None when it is not there."""
    path = recording_path(name, folder).with_suffix(".json")
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def who(name: str = DEFAULT_RECORDING, folder: str | Path | None = None) -> str:
    """The recorded model in words, e.g. ``"SmolLM2-135M-Instruct (135M parameters, local,
    recorded 2026-12-02)"``."""
    rec = load(name, folder)
    if rec is None:
        return "no recording"
    m = rec["meta"]
    return f"{m['model']} ({m['parameters']} parameters, run locally, recorded {m['date'][:10]})"


def beside(stand_in: dict, notebook: str, keys: dict[str, str] | list[str],
           name: str = DEFAULT_RECORDING, folder: str | Path | None = None) -> pd.DataFrame:
    """A table of the same numbers from this run and from the shipped recording.

    Parameters
    ----------
    stand_in : dict
        This run's values (e.g. what the notebook passed to :func:`~perso_kit.report.record`).
    notebook : str
        The notebook's number, e.g. ``"07"``.
    keys : dict or list
        The record names to show (a dict maps them to row labels).

    The recorded column is named after the model; a value the recording lacks is left empty.
    The recording ran at the notebook's ``local`` size, which the column header says.
    """
    rec = load(name, folder)
    keys = dict(keys) if isinstance(keys, dict) else {k: k for k in keys}
    recorded = (rec or {}).get("results", {}).get(notebook, {})
    header = (f"{rec['meta']['model']} (recorded, local size)" if rec else "no recording")
    rows = [{"measure": label, "this run": stand_in.get(k), header: recorded.get(k)}
            for k, label in keys.items()]
    return pd.DataFrame(rows).set_index("measure")


def calls_sentence(notebook: str, name: str = DEFAULT_RECORDING,
                   folder: str | Path | None = None) -> str:
    """One sentence on the recorded model's calls in ``notebook``'s run: how many, how many
    failed and why (JSON that did not parse or validate, answers cut at ``max_tokens``).

    Built from the recording's numbers, so it is true of the shipped recording by construction.
    """
    rec = load(name, folder)
    if rec is None or notebook not in rec["results"]:
        return f"No recording of notebook {notebook} (run: python -m perso_kit record)."
    r, model = rec["results"][notebook], rec["meta"]["model"]
    mine = r.get("llm_by_model", {}).get(model)
    if mine is None:  # no breakdown: the totals (every call of the run)
        mine = {k: r.get(f"llm_{k}", 0) for k in ("calls", "failed", "invalid_json",
                                                   "truncated")}
    parts = [f"{mine['failed']} failed" + (f" ({mine['invalid_json']} with JSON that did not "
                                           "parse or validate)" if mine["invalid_json"] else "")]
    if mine.get("refused"):
        parts.append(f"{mine['refused']} were refused before sending (budget or privacy)")
    if mine.get("truncated"):
        parts.append(f"{mine['truncated']} were cut at max_tokens")
    others = [m for m in r.get("llm_models", []) if m != model]
    extra = f" (the run also called: {', '.join(others)})" if others else ""
    return (f"In the recorded run ({who(name, folder)}), the model answered {mine['calls']} "
            f"calls: " + "; ".join(parts) + "." + extra)


def stop_on_replay_miss(summary: dict | None = None) -> None:
    """Stop a notebook with the kit's replay-miss message when any LLM call of this kernel asked
    a recording for a request it does not hold (a partial or outdated recording).

    A missed request gets a failed reply, and what a notebook builds on failed replies (a probe
    with no answer, a table of empty rankings) would otherwise break later with an error that
    says nothing of the cause. Notebooks call this right after their LLM calls; it does nothing
    unless a replay missed, so a run with a real model or the stand-in never stops here.

    Raises :class:`~perso_kit.llm.ReplayMiss` naming the recorded file, how many calls missed and
    how to record them. ``summary`` is :func:`~perso_kit.llm.session_summary` by default (every
    call of this kernel).

    >>> stop_on_replay_miss({"llm_calls": 12, "llm_replay_misses": 0})    # nothing happens
    >>> stop_on_replay_miss({"llm_calls": 12, "llm_replay_misses": 3})
    Traceback (most recent call last):
    ...
    perso_kit.llm.reply.ReplayMiss: replay miss: 3 of 12 LLM calls so far asked for a request ...
    """
    from .llm import ReplayMiss, session_summary

    summary = session_summary() if summary is None else summary
    misses = summary["llm_replay_misses"]
    if not misses:
        return
    path = os.environ.get("PERSO_KIT_LLM_REPLAY") or "the recorded file"
    raise ReplayMiss(
        f"replay miss: {misses} of {summary['llm_calls']} LLM calls so far asked for a request "
        f"that is not in the recorded file {path}, so the results below would be built on "
        "missing answers; the notebook stops here. The recording lacks these requests (it was "
        "made for other notebooks, other parameters or an older version of them). Record "
        "them: run this notebook once with a real backend and PERSO_KIT_LLM_CACHE=<that file>, "
        "then replay with PERSO_KIT_LLM_BACKEND=replay PERSO_KIT_LLM_REPLAY=<that file>; or run "
        "without PERSO_KIT_LLM_BACKEND=replay.", "replay_miss")


def _write_meta(path: Path, meta: dict) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
        con.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        con.close()


def make_recording(model: str | None = None, name: str = DEFAULT_RECORDING,
                   notebooks: tuple[str, ...] = ACT3, folder: str | Path | None = None,
                   out_dir: str | Path | None = None) -> pd.DataFrame:
    """Run the ``notebooks`` with the local backend and ``model`` (a preset or ``.gguf``;
    default ``PERSO_KIT_LOCAL_MODEL`` or SmolLM2-135M-Instruct), caching every answer into a
    new recording, then store the numbers each notebook recorded. The old recording is
    replaced only when every notebook ran. Returns the tour summary.

    Re-recording some notebooks (``notebooks`` not all of :data:`ACT3`) with the same model
    file starts from a copy of the old recording: answers already in it are reused and only
    new requests reach the model, so the times stored for those notebooks are those of their
    new calls.
    """
    from .llm import local
    from .report import read_records
    from .tour import REPO_DIR, run_tour

    path, alias = local.resolve_model(model)
    folder = Path(folder or RECORDING_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    target = recording_path(name, folder)
    partial = target.with_name(target.name + ".partial")
    for p in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm")):
        p.unlink(missing_ok=True)
    previous = load(name, folder) if set(notebooks) != set(ACT3) else None
    if previous is not None and previous["meta"].get("model_file") == path.name:
        shutil.copyfile(target, partial)  # re-record some notebooks, keep the others
    else:
        previous = None
    spec = model or os.environ.get("PERSO_KIT_LOCAL_MODEL", "").strip() or local.DEFAULT_PRESET
    out_dir = Path(out_dir or REPO_DIR / "build" / f"record-{name}")
    with environment(PERSO_KIT_LLM_BACKEND="local", PERSO_KIT_LLM_CACHE=str(partial),
                     PERSO_KIT_LOCAL_MODEL=spec):  # a preset keeps its model name
        summary = run_tour(out_dir, only=list(notebooks), html=False)
    if (summary["status"] != "ok").any():
        raise RuntimeError("the recording was not replaced: some notebooks failed\n"
                           + summary.to_string(index=False))
    results = dict(previous["results"]) if previous else {}
    for nb in sorted(out_dir.glob("[0-9][0-9]_*.ipynb")):
        if nb.name[:2] in notebooks:
            results[nb.name[:2]] = read_records(nb)
    meta = {"model": alias, "parameters": _parameters(alias), "model_file": path.name,
            "model_sha256": local.sha256_of(path),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "notebooks": sorted(results), "size": "local",
            "command": "python -m perso_kit record"
                       + (f" --model {model}" if model else ""),
            "seconds": {**(previous["meta"].get("seconds", {}) if previous else {}),
                        **{r.notebook[:2]: r.seconds for r in summary.itertuples()}},
            "cpu_seconds": {**(previous["meta"].get("cpu_seconds", {}) if previous else {}),
                            **{r.notebook[:2]: r.cpu_seconds for r in summary.itertuples()}},
            "machine": f"{platform.platform()}, {os.cpu_count()} cores, load average "
                       f"{os.getloadavg()[0]:.1f} at the end"}
    _write_meta(partial, meta)
    os.replace(partial, target)
    target.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8")
    return summary


def _parameters(alias: str) -> str:
    import re
    m = re.search(r"(\d+(?:\.\d+)?[MB])", alias, re.I)
    return m.group(1).upper() if m else "unknown"
