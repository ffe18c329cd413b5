"""Check your answer: compare a number you worked out with the one this run computed.

An exercise cell in the notebooks looks like this::

    answer = None   # replace None with your number, then run the cell
    check(answer, expected=float(table["ndcg@10"][0]), tol=0.005, name="NDCG@10 of popularity")

Left at ``None``, :func:`check` says how to use it and nothing fails. Given a number, it says
whether it lies within ``tol`` of the expected value and, if not, whether it is too high or too
low, by how much, and a hint when one is given (or when the answer looks like a percentage given
for a share). The expected value is recomputed from the run, so it follows the parameters
(``SMALL``, ``DATASET``, ``SEED``) the notebook ran with.

>>> check(0.251, 0.25, tol=0.005, name="precision").ok
True
>>> print(check(0.30, 0.25, tol=0.005, name="precision"))
precision: 0.3 is too high by 0.05 (20% above the expected value; tolerance 0.005). Try again.
>>> check(None, 0.25).ok is None
True
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """The verdict of :func:`check`: ``ok`` is True (right), False (off) or None (no answer
    yet); ``difference`` is answer minus expected (numbers only); ``message`` says it in words.
    A notebook shows the message when the check is the last line of a cell."""

    ok: bool | None
    message: str
    difference: float | None = None

    def __str__(self) -> str:
        return self.message

    __repr__ = __str__


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def check(value, expected, tol: float | None = None, rel: float = 0.01,
          name: str = "your answer", hint: str | None = None) -> Check:
    """Compare ``value`` (the student's answer) with ``expected`` (recomputed from the run).

    Numbers are right when ``|value - expected| <= max(tol, rel * |expected|)`` (the edge counts
    as right); ``tol`` defaults to 0, so only the relative tolerance ``rel`` (1%) applies.
    Anything else (a bool, a string, a list) must be equal. ``value=None`` gives a message on how
    to answer, with ``ok=None``: an exercise left alone never stops a run. ``hint`` is added to a
    wrong answer's message.
    """
    if value is None:
        kind = "a number" if _number(expected) else f"a {type(expected).__name__}"
        return Check(None, f"{name}: no answer yet. Replace None with {kind} (e.g. "
                           f"`answer = ...`) and run the cell again; it is compared with the "
                           f"value this run computed.")
    if _number(expected) and math.isnan(float(expected)):
        raise ValueError(f"check({name!r}): the expected value is NaN; the run did not "
                         "compute it (look at the cells above)")
    if tol is not None and (not _number(tol) or tol < 0):
        raise ValueError(f"check({name!r}): tol must be a number >= 0, got {tol!r}")
    if not _number(expected):
        if value == expected:
            return Check(True, f"{name}: {value!r} is right.")
        return Check(False, f"{name}: {value!r} is not right."
                            + (f" Hint: {hint}" if hint else " Try again."))
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return Check(False, f"{name}: {value!r} is not a number; give a number such as "
                                f"0.25 (without quotes).")
    if not _number(value):
        return Check(False, f"{name}: expected a number, got {type(value).__name__} "
                            f"{value!r}.")
    value, expected = float(value), float(expected)
    allowed = max(tol or 0.0, rel * abs(expected))
    diff = value - expected
    if math.isnan(value):
        return Check(False, f"{name}: your answer is NaN.", diff)
    # the edge counts as right (a small slack absorbs floating point, e.g. 0.3 - 0.25)
    if abs(diff) <= allowed * (1 + 1e-9) + 1e-12:
        return Check(True, f"{name}: {_fmt(value)} is right (this run: {_fmt(expected)}, "
                           f"tolerance {_fmt(allowed)}).", diff)
    side = "too high" if diff > 0 else "too low"
    where = "above" if diff > 0 else "below"
    share = (f"{abs(diff) / abs(expected):.0%} {where} the expected value; "
             if expected else "")
    text = (f"{name}: {_fmt(value)} is {side} by {_fmt(abs(diff))} "
            f"({share}tolerance {_fmt(allowed)}).")
    if expected and 0 < abs(expected) <= 1 and math.isclose(value, 100 * expected, rel_tol=0.02,
                                                             abs_tol=100 * allowed):
        text += " It looks like a percentage: give a share between 0 and 1."
    text += f" Hint: {hint}" if hint else " Try again."
    return Check(False, text, diff)
