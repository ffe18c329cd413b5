"""The "check your answer" helper: right, wrong (too high, too low, by how much), no answer yet,
the tolerance's edge, and bad input; and the check cells of the notebooks."""
from __future__ import annotations

import math
import re

import nbformat
import pytest

from perso_kit.exercises import Check, check
from perso_kit.tour import NOTEBOOK_DIR, notebooks


def test_a_right_answer_is_right():
    c = check(0.251, 0.25, tol=0.005, name="precision")
    assert c.ok is True and c.difference == pytest.approx(0.001)
    assert c.message == "precision: 0.251 is right (this run: 0.25, tolerance 0.005)."


def test_a_wrong_answer_says_which_way_and_by_how_much():
    high = check(0.30, 0.25, tol=0.005, name="precision", hint="count hits over k")
    assert high.ok is False and high.difference == pytest.approx(0.05)
    assert high.message == ("precision: 0.3 is too high by 0.05 (20% above the expected value; "
                            "tolerance 0.005). Hint: count hits over k")
    low = check(40, 50, tol=1)
    assert low.ok is False and low.difference == -10
    assert "too low by 10 (20% below" in low.message and low.message.endswith("Try again.")


def test_no_answer_yet_explains_and_does_not_fail():
    c = check(None, 0.25, name="NDCG@10")
    assert c.ok is None and c.difference is None
    assert c.message.startswith("NDCG@10: no answer yet. Replace None with a number")
    assert "a bool" in check(None, True).message


def test_the_tolerance_edge_counts_as_right_and_just_beyond_does_not():
    assert check(0.30, 0.25, tol=0.05).ok is True            # exactly on the edge
    assert check(0.2, 0.25, tol=0.05).ok is True
    assert check(0.3001, 0.25, tol=0.05).ok is False
    # without tol, 1% of the expected value: 101 is right for 100, 101.5 is not
    assert check(101, 100).ok is True and check(101.5, 100).ok is False
    assert check(0.0, 0.0).ok is True and check(1e-6, 0.0).ok is False
    assert check(3, 3, tol=0).ok is True                     # integers, exact


def test_a_percentage_given_for_a_share_is_named():
    c = check(62, 0.62, tol=0.01, name="Gini")
    assert c.ok is False and "looks like a percentage" in c.message
    assert "percentage" not in check(0.7, 0.62, tol=0.01).message


def test_non_numbers_compare_by_equality():
    assert check(True, True).ok is True
    assert check("EASE", "EASE").ok is True
    wrong = check("ALS", "EASE", hint="look at the ndcg column")
    assert wrong.ok is False and wrong.message.endswith("Hint: look at the ndcg column")


def test_bad_input_is_said_plainly():
    assert "is not a number" in check("abc", 0.5).message
    assert check("0.5", 0.5).ok is True                      # a number typed as text
    assert "expected a number, got list" in check([0.5], 0.5).message
    assert check(float("nan"), 0.5).ok is False
    with pytest.raises(ValueError, match="expected value is NaN"):
        check(0.5, math.nan)
    assert check(None, math.nan).ok is None     # an exercise left alone never stops a run
    with pytest.raises(ValueError, match="tol must be a number >= 0"):
        check(0.5, 0.5, tol=-1)


def test_the_verdict_shows_its_message():
    c = check(1, 2)
    assert isinstance(c, Check) and str(c) == repr(c) == c.message


# ------------------------------------------------------------------ the notebooks' check cells
CHECK = re.compile(r"check\(\s*answer\b")


@pytest.mark.parametrize("path", notebooks(NOTEBOOK_DIR), ids=lambda p: p.name[:2])
def test_every_notebook_has_a_check_cell_left_at_none(path):
    """At least one exercise per notebook is checkable; its answer is left at None (so the
    tour and the student edition run it and it says how to answer), and it is not a solution
    cell (the student edition keeps it)."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and CHECK.search(c.source)]
    assert cells, f"{path.name} has no check cell"
    for c in cells:
        assert "solution" not in c.metadata.get("tags", [])
        assert re.search(r"^answer = None\b", c.source, re.M), c.source
        assert "from perso_kit.exercises import check" in c.source or any(
            "from perso_kit.exercises import check" in d.source for d in nb.cells
            if d.cell_type == "code"), path.name
