"""One look for every figure of the course: title, labelled axes and a one-line takeaway.

>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots()
>>> _ = ax.plot([1, 2, 3], [3, 2, 1])
>>> finish(ax, "Fewer clicks over time", "week", "clicks", takeaway="Interest fades.")
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


def finish(ax, title: str, xlabel: str, ylabel: str, takeaway: str | None = None,
           legend: bool | None = None):
    """Give ``ax`` its title and axis labels, a legend if it has labelled artists, and write
    ``takeaway`` in small italics under the figure. Returns the figure."""
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
    return fig


def color(model_name: str, default: str | None = None) -> str | None:
    """The course colour of a model (by the start of its name), or ``default``."""
    for key, value in MODEL_COLORS.items():
        if model_name.startswith(key):
            return value
    return default
