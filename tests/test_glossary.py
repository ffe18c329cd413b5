"""docs/GLOSSARY.md: every term the course names is there, every link from a notebook lands on a
term, every term is linked from a notebook, and what the definitions say matches the code."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from perso_kit.tour import NOTEBOOK_DIR, notebooks

GLOSSARY = Path(__file__).resolve().parents[1] / "docs" / "GLOSSARY.md"
LINK = re.compile(r"\]\(\.\./docs/GLOSSARY\.md(#[^)\s]*)?\)")

#: the terms the course promised to define (the issue's list and the course's own)
REQUIRED = ("shrunk-cosine-shrinkage", "novelty-in-bits", "z-score", "borda-count", "symlog",
            "pareto-front", "lambdarank", "ndcg-and-its-discount", "stand-in", "replay",
            "grounding", "candidate-recall", "leakage", "hallucination", "position-bias",
            "long-tail", "gini-coefficient-and-lorenz-curve", "cold-start", "density")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> list[str]:
    """The anchors of the ``###`` term headings of a glossary text."""
    return [slug(m) for m in re.findall(r"^### (.+)$", text, re.M)]


def linked(sources) -> list[str]:
    """Every glossary anchor linked from markdown ``sources`` ("" for a link without one)."""
    return [(m.group(1) or "#")[1:] for s in sources for m in LINK.finditer(s)]


def _notebook_markdown() -> dict[str, list[str]]:
    out = {}
    for p in notebooks(NOTEBOOK_DIR):
        nb = nbformat.read(p, as_version=4)
        out[p.name] = [c.source for c in nb.cells if c.cell_type == "markdown"]
    return out


def test_slugs_are_githubs():
    assert slug("Shrunk cosine (shrinkage)") == "shrunk-cosine-shrinkage"
    assert slug("NDCG and its discount") == "ndcg-and-its-discount"
    assert slug("z-score") == "z-score" and slug("EASE, ALS and BPR") == "ease-als-and-bpr"


def test_the_link_check_sees_a_planted_broken_link():
    text = "### Borda count\n\ntext"
    found = linked(["see [Borda](../docs/GLOSSARY.md#borda-count) and "
                    "[x](../docs/GLOSSARY.md#no-such-term), [all](../docs/GLOSSARY.md)"])
    assert found == ["borda-count", "no-such-term", ""]
    assert set(found) - set(anchors(text)) - {""} == {"no-such-term"}


def test_every_required_term_is_defined_once():
    terms = anchors(GLOSSARY.read_text(encoding="utf-8"))
    assert len(terms) == len(set(terms)), "a term is defined twice"
    assert not set(REQUIRED) - set(terms)


def test_every_glossary_link_in_a_notebook_lands_on_a_term():
    terms = set(anchors(GLOSSARY.read_text(encoding="utf-8")))
    broken = {name: sorted(set(linked(md)) - terms - {""})
              for name, md in _notebook_markdown().items()}
    assert not any(broken.values()), broken


def test_every_term_is_linked_from_some_notebook():
    terms = anchors(GLOSSARY.read_text(encoding="utf-8"))
    used = {a for md in _notebook_markdown().values() for a in linked(md)}
    assert not [t for t in terms if t not in used]


# ------------------------------------------------- the definitions, against the code they name
def test_novelty_is_bits_of_self_information():
    from perso_kit.metrics import novelty
    # "among 1,000 users, an item one user saw scores about 9 bits": -log2(2 / 1001)
    assert novelty(np.array([[0]]), np.array([1]), 1000) == pytest.approx(8.967, abs=1e-3)
    assert novelty(np.array([[0]]), np.array([1000]), 1000) == pytest.approx(0.0)


def test_the_ndcg_discount_is_one_over_log2_of_rank_plus_one():
    from perso_kit.metrics import ndcg_at_k
    # one held-out item found at rank 2 (of 3): 1/log2(3) over the ideal 1/log2(2)
    hits = np.array([[False, True, False]])
    assert ndcg_at_k(hits, np.array([1]))[0] == pytest.approx(0.6309, abs=1e-4)


def test_shrunk_cosine_pulls_a_one_viewer_pair_towards_zero():
    import pandas as pd

    from perso_kit.data.dataset import make_dataset
    from perso_kit.recommenders import ItemKNN
    # items 10 and 11 share their single viewer: cosine 1, shrunk 1 / (1 + 10)
    ds = make_dataset("t", pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 12]}),
                      pd.DataFrame({"item_id": [10, 11, 12], "title": list("abc"),
                                    "genres": [()] * 3}))
    shrunk = ItemKNN(shrinkage=10).fit(ds).similarity_.toarray()
    plain = ItemKNN(shrinkage=0).fit(ds).similarity_.toarray()
    assert plain[0, 1] == pytest.approx(1.0) and shrunk[0, 1] == pytest.approx(1 / 11)
    assert shrunk[0, 2] == 0                   # no shared viewer, no similarity


def test_borda_gives_n_minus_position_points():
    from perso_kit.roles.ranker import aggregate_rankings
    # points: 1 -> 3+2+1 = 6, 2 -> 2+3+3 = 8, 3 -> 1+1+2 = 4
    assert aggregate_rankings([[1, 2, 3], [2, 1, 3], [2, 3, 1]]) == [2, 1, 3]


def test_the_pareto_front_keeps_what_nothing_beats_on_both():
    from perso_kit.costs import pareto_front
    # free and weak, costly and best: both on the front; costlier and worse than the best: off
    assert pareto_front(np.array([0.1, 0.3, 0.2]), np.array([0.0, 5.0, 9.0])).tolist() == \
        [True, True, False]


# ------------------------------------------------------------------------- the syllabus
SYLLABUS = GLOSSARY.with_name("SYLLABUS.md")


def test_the_syllabus_plans_12_to_16_sessions_and_three_paths():
    text = SYLLABUS.read_text(encoding="utf-8")
    sessions = re.findall(r"^\| (\d+) \| ", text, re.M)
    assert [int(s) for s in sessions] == list(range(1, len(sessions) + 1))
    assert 12 <= len(sessions) <= 16
    assert all(f"| {p} " in text for p in ("**One afternoon**", "**LLM track only**",
                                            "**Classic RecSys only**"))
    # every notebook has a measured run time in the table
    for p in notebooks(NOTEBOOK_DIR):
        assert re.search(rf"^\| {p.name[:2]} [^|]*\| \d[\d.]* s \(", text, re.M), p.name


def test_the_syllabus_is_linked_from_the_readme_and_00():
    readme = (GLOSSARY.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "docs/SYLLABUS.md" in readme and "docs/GLOSSARY.md" in readme
    start = _notebook_markdown()[notebooks(NOTEBOOK_DIR)[0].name]
    assert any("../docs/SYLLABUS.md" in s for s in start)


@pytest.mark.parametrize("number", ("04", "06", "12"))
def test_the_heavy_notebooks_have_the_stopping_point_the_syllabus_names(number):
    path = next(p for p in notebooks(NOTEBOOK_DIR) if p.name.startswith(number))
    stops = [s for s in _notebook_markdown()[path.name]
             if s.startswith("**Stopping point: end of part 1.**")]
    assert len(stops) == 1
    assert f"{number} part 1" in SYLLABUS.read_text(encoding="utf-8")
