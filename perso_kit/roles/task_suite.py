"""A task suite for agents, with a programmatic success check per task and results by family.

The tasks live in a data file (``data/agent_tasks.json``), each a request, the task *family* it
belongs to, how many items it wants and what a correct answer must satisfy, checked against the
demo catalog:

* ``{"constraints": {...}}``: the first ``n`` items of the answer (its titles grounded to the
  catalog) all pass the constraints -- the keys of the tools' filters
  (:data:`perso_kit.roles.tools.FILTERS`) plus ``shares_genre_with`` (a title: at least one
  genre in common with it, and not that movie itself); fewer than ``n`` items fail;
* ``{"ask": true}``: the request cannot be answered as it stands; the agent succeeds when it
  asks a clarifying question and names no item.

A success is all or nothing per task; :func:`family_success` gives the share per family with a
Wilson interval (few tasks per family: the intervals are wide, as they should be), and
:func:`design_summary` compares designs on calls, tokens, latency and success, with a bootstrap
interval over tasks.

The checks read the catalog; the agents never see them (nor the file's expected answers).

>>> from perso_kit.data.demo import make_world
>>> ds = make_world(seed=42).dataset
>>> tasks = load_tasks(dataset=ds)
>>> len(tasks) >= 20, sorted({t.family for t in tasks})[:3]
(True, ['clarify', 'like X but newer', 'multi-step'])
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..evaluate import bootstrap_interval, wilson_interval
from .tools import filter_mask, resolve_item

TASK_FILE = config.SHIPPED_DATA_DIR / "agent_tasks.json"
#: task families in the order figures show them
FAMILIES = ("plain", "paraphrase", "like X but newer", "negation", "multi-step", "clarify")


@dataclass
class SuiteTask:
    """One task: ``id``, ``family``, ``request``, ``n`` items wanted and its ``check``."""

    id: str
    family: str
    request: str
    n: int
    check: dict


def load_tasks(path: str | Path | None = None, dataset=None,
               per_family: int | None = None) -> list[SuiteTask]:
    """The tasks of ``path`` (default: the kit's ``data/agent_tasks.json``).

    With ``dataset``, every title and user the checks name must exist in it (the file is written
    for the demo world of seed 42); a clear error otherwise. ``per_family`` keeps the first
    tasks of each family (fewer LLM calls), in the order of :data:`FAMILIES`.
    """
    path = Path(path) if path is not None else TASK_FILE
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    tasks = []
    for t in raw["tasks"]:
        missing = {"id", "family", "request", "check"} - set(t)
        if missing:
            raise ValueError(f"task {t.get('id', '?')} in {path} lacks {sorted(missing)}")
        if t["family"] not in FAMILIES:
            raise ValueError(f"task {t['id']}: unknown family {t['family']!r}; one of "
                             f"{FAMILIES}")
        tasks.append(SuiteTask(t["id"], t["family"], t["request"], int(t.get("n", 0)),
                               t["check"]))
    if dataset is not None:
        users = set(dataset.user_ids)
        for t in tasks:
            c = t.check.get("constraints", {})
            for key in ("shares_genre_with", "newer_than"):
                if key in c:
                    try:
                        resolve_item(dataset, c[key])
                    except ValueError as e:
                        raise ValueError(f"task {t.id}: {e} (the suite is written for the demo "
                                         "world of seed 42)") from None
            unknown = set(c.get("not_seen_by", [])) - users
            if unknown:
                raise ValueError(f"task {t.id}: no user(s) {sorted(unknown)} in this dataset")
    if per_family is not None:
        if per_family < 1:
            raise ValueError(f"per_family must be at least 1, got {per_family}")
        tasks = [t for f in FAMILIES for t in [t for t in tasks if t.family == f][:per_family]]
    return tasks


def passing_items(constraints: dict, dataset) -> set:
    """The catalog ids that pass ``constraints`` (filters plus ``shares_genre_with``)."""
    c = dict(constraints)
    like = c.pop("shares_genre_with", None)
    items = dataset.items
    mask = filter_mask(dataset, c)
    if like is not None:
        i = resolve_item(dataset, like)
        genres = set(items.loc[items["item_id"] == i, "genres"].iloc[0])
        mask &= items["genres"].map(lambda g: bool(genres & set(g))).to_numpy()
        mask &= (items["item_id"] != i).to_numpy()
    return set(items["item_id"].to_numpy()[mask])


def check_task(result, task: SuiteTask, dataset) -> dict:
    """Score one run (an :class:`~perso_kit.roles.agent.AgentResult`) on ``task``: ``success``
    (all or nothing), ``satisfaction`` (share of the ``n`` wanted items that pass), ``asked``
    (a clarifying question), and the run's calls, tokens, latency and cost."""
    asked = bool(result.asks_question)
    if task.check.get("ask"):
        success, satisfaction = asked, float(asked)
    else:
        ok = passing_items(task.check["constraints"], dataset)
        items = result.answer_items[: task.n]
        satisfaction = sum(i in ok for i in items) / task.n
        success = satisfaction == 1.0
    issues = getattr(result, "plan_issues", None)
    return {"design": result.design, "task": task.id, "family": task.family,
            "success": bool(success), "satisfaction": float(satisfaction), "asked": asked,
            "llm_calls": result.steps, "tools_run": len(result.executed),
            "tokens": result.tokens, "latency_s": result.latency_s, "cost_usd": result.cost_usd,
            "stop": result.stop_reason, "plan_issues": 0 if issues is None else len(issues),
            "reflected": getattr(result, "reflected", 0), "capped_calls": result.capped_calls,
            "truncated": result.truncated}


def run_suite(designs: dict, tasks: list[SuiteTask], dataset, progress: bool = True
              ) -> pd.DataFrame:
    """Run every design (name -> object with ``run(request)``) on every task; one row per
    (design, task), the ``design`` column holding the dict's name."""
    from tqdm.auto import tqdm

    rows = []
    jobs = [(name, d, t) for name, d in designs.items() for t in tasks]
    for name, design, task in tqdm(jobs, desc="task suite", disable=not progress):
        row = check_task(design.run(task.request), task, dataset)
        row["design"] = name
        rows.append(row)
    return pd.DataFrame(rows)


def family_success(table: pd.DataFrame, z: float = 1.96) -> pd.DataFrame:
    """Success per (design, family): ``tasks``, ``successes``, ``rate`` and its Wilson
    interval (``low``, ``high``; 95 % for ``z = 1.96``).

    >>> t = pd.DataFrame({"design": ["a"] * 4, "family": ["plain"] * 4,
    ...                   "success": [True, True, True, False]})
    >>> family_success(t)[["tasks", "successes", "rate"]].values.tolist()
    [[4.0, 3.0, 0.75]]
    """
    rows = []
    for (design, family), g in table.groupby(["design", "family"], sort=False):
        k, n = int(g["success"].sum()), len(g)
        low, high = wilson_interval(k, n, z)
        rows.append({"design": design, "family": family, "tasks": n, "successes": k,
                     "rate": k / n, "low": low, "high": high})
    return pd.DataFrame(rows).set_index(["design", "family"])


def design_summary(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per design: success over all tasks with a bootstrap interval (resampling tasks), and
    mean LLM calls, tokens, latency (s), plan issues and reflections per task."""
    rows = {}
    for design, g in table.groupby("design", sort=False):
        ci = bootstrap_interval(g["success"].astype(float).to_numpy(), seed=seed)
        rows[design] = {"success": ci.estimate, "low": ci.lo, "high": ci.hi,
                        "llm_calls": g["llm_calls"].mean(), "tokens": g["tokens"].mean(),
                        "latency_s": g["latency_s"].mean(), "cost_usd": g["cost_usd"].sum(),
                        "plan_issues": g["plan_issues"].sum(),
                        "reflections": g["reflected"].sum()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("design")


def plot_family_success(fam: pd.DataFrame, ax, designs=None, colors=None):
    """Grouped horizontal bars: success per family (rows) and design (bars), Wilson intervals
    as error bars. ``fam`` is :func:`family_success`'s table."""
    designs = list(designs or dict.fromkeys(fam.index.get_level_values("design")))
    families = [f for f in FAMILIES if f in set(fam.index.get_level_values("family"))]
    height = 0.8 / len(designs)
    y = np.arange(len(families))
    for k, d in enumerate(designs):
        part = fam.loc[d].reindex(families)
        err = np.vstack([part["rate"] - part["low"], part["high"] - part["rate"]])
        ax.barh(y + (k - (len(designs) - 1) / 2) * height, part["rate"], height=height,
                xerr=err, capsize=2, label=d, color=(colors or {}).get(d),
                error_kw={"elinewidth": 0.8, "alpha": 0.6})
    ax.set_yticks(y, families)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    return ax
