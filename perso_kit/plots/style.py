"""One look for every figure of the course: title, labelled axes and a one-line takeaway.

>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots()
>>> _ = ax.plot([1, 2, 3], [3, 2, 1])
>>> fig = finish(ax, "Fewer clicks over time", "week", "clicks", takeaway="Interest fades.")
"""
from __future__ import annotations

import matplotlib.pyplot as plt

#: colours used for the same model in every figure of the course
MODEL_COLORS = {
    "Popularity": "#7f7f7f", "ItemKNN": "#1f77b4", "EASE": "#2ca02c", "ALS": "#d62728",
    "BPR": "#9467bd", "LightGBM ranker": "#ff7f0e", "Content": "#17becf", "Hybrid": "#bcbd22",
    "LLM reranker": "#e377c2",
}


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.0):
    """A figure with ``ncols`` side-by-side axes, sized for a notebook."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, (axes[0, 0] if ncols == 1 else axes[0])


def who_answered(source) -> str:
    """Who produced the LLM results of a figure, in a few words.

    ``source`` is an :class:`~perso_kit.llm.LLM` client, a :class:`~perso_kit.llm.Reply`, a
    call log or usage table (a DataFrame with ``backend``/``model`` columns), or a string.
    The offline stand-in is always named as what it is.

    >>> who_answered("offline")
    'offline stand-in, not an LLM'
    >>> who_answered({"backend": "compatible", "model": "SmolLM2-135M-Instruct"})
    'model: SmolLM2-135M-Instruct'
    """
    from ..llm.reply import STAND_IN_MODEL

    if source is None:
        return ""
    if isinstance(source, str):
        backend, model = (source, "") if source in ("offline", "replay") else ("", source)
    elif isinstance(source, dict):
        backend, model = source.get("backend", ""), source.get("model", "")
    elif hasattr(source, "columns"):  # a call log or usage table
        rows = source[source["backend"] != "total"] if "backend" in source else source
        models = [m for m in dict.fromkeys(rows.get("model", [])) if m]
        backends = list(dict.fromkeys(rows.get("backend", [])))
        model = ", ".join(models)
        backend = backends[0] if len(backends) == 1 else ""
    else:
        backend = getattr(source, "backend", "") or ""
        model = getattr(source, "model", "") or ""
        if getattr(source, "stand_in", False):
            backend = "offline"
    if backend == "offline" or model == STAND_IN_MODEL or model.startswith(STAND_IN_MODEL):
        return "offline stand-in, not an LLM"
    if backend == "replay" and not model:
        return "replayed recording"
    return f"model: {model}" if model else f"backend: {backend}"


def stamp(fig, source) -> None:
    """Write who answered (see :func:`who_answered`) in the figure's top-right corner, so a
    figure of LLM results cannot be lifted without saying whose results they are."""
    text = who_answered(source)
    if text:
        fig.text(0.995, 0.995, text, ha="right", va="top", fontsize=8, color="#8a1c1c",
                 bbox={"boxstyle": "round,pad=0.2", "fc": "#fff4ce", "ec": "none"})


def finish(ax, title: str, xlabel: str, ylabel: str, takeaway: str | None = None,
           legend: bool | None = None, who=None):
    """Give ``ax`` its title and axis labels, a legend if it has labelled artists, and write
    ``takeaway`` in small italics under the figure. ``who`` (an LLM client, a reply, a call
    log or a label) is stamped in the top-right corner: every figure of LLM results says who
    answered. Returns the figure."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend or (legend is None and ax.get_legend_handles_labels()[0]):
        ax.legend(frameon=False)
    fig = ax.figure
    if takeaway:
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.text(0.5, 0.01, takeaway, ha="center", va="bottom", fontsize=9, style="italic")
    else:
        fig.tight_layout()
    if who is not None:
        fig.tight_layout(rect=(0, 0.06 if takeaway else 0, 1, 0.95))
        stamp(fig, who)
    return fig


def color(model_name: str, default: str | None = None) -> str | None:
    """The course colour of a model (by the start of its name), or ``default``."""
    for key, value in MODEL_COLORS.items():
        if model_name.startswith(key):
            return value
    return default
