"""Grounding written titles to catalog ids: MovieLens title forms, years, near misses and
hallucinations; on hand-made examples and on the real ml-latest-small catalog."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import movielens_dir
from perso_kit.llm.grounding import (extract_titles, ground_text, ground_titles,
                                     grounding_rate, normalize_title)

CATALOG = pd.DataFrame({
    "item_id": [1, 2, 3, 4, 5, 6],
    "title": ["Matrix, The (1999)", "Alien (1979)", "Aliens (1986)", "Psycho (1960)",
              "Psycho (1998)", "City of Lost Children, The (Cité des enfants perdus, La) (1995)"],
    "year": [1999, 1979, 1986, 1960, 1998, 1995]})


@pytest.mark.parametrize("title, key, year", [
    ("Matrix, The (1999)", "matrix", 1999),
    ("The Matrix", "matrix", None),
    ("  **the MATRIX** (1999) ", "matrix", 1999),
    ("Amélie (2001)", "amelie", 2001),
    ("Romeo & Juliet", "romeo and juliet", None),
    ("Godfather: Part II, The (1974)", "godfather part ii", 1974),
])
def test_normalize_title(title, key, year):
    p = normalize_title(title)
    assert (p.key, p.year) == (key, year)


def test_alternative_titles_are_indexed():
    p = normalize_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)")
    assert p.key == "city of lost children" and p.alternatives == ("cite des enfants perdus",)
    assert normalize_title("Seven (a.k.a. Se7en) (1995)").alternatives == ("se7en",)


def test_ground_titles_hand_computed():
    texts = ["The Matrix (1999)", "the matrix", "Alien (1980)", "Alien (1990)", "Psycho (1998)",
             "Psycho", "The City of Lost Children", "Cité des enfants perdus", "The Matrx (1999)",
             "Space Llamas Strike Back (1994)", ""]
    g = ground_titles(texts, CATALOG)
    assert list(g.columns) == ["text", "item_id", "matched_title", "confidence", "hallucinated"]
    got = dict(zip(g["text"], zip(g["item_id"], g["confidence"], g["hallucinated"])))
    assert got["The Matrix (1999)"] == (1, 1.0, False)
    assert got["the matrix"] == (1, 0.97, False)                  # no year to confirm: x0.97
    assert got["Alien (1980)"] == (2, 1.0, False)                 # within the 1-year tolerance
    assert got["Alien (1990)"][2] is True                         # a contradicting year: x0.75
    assert got["Alien (1990)"][1] == 0.75
    assert got["Psycho (1998)"][0] == 5 and got["Psycho"][0] == 4  # remake chosen by the year
    assert got["The City of Lost Children"][0] == 6 and got["Cité des enfants perdus"][0] == 6
    assert got["The Matrx (1999)"][0] == 1 and round(got["The Matrx (1999)"][1], 4) == 0.9091
    assert got["Space Llamas Strike Back (1994)"][2] is True
    assert pd.isna(got["Space Llamas Strike Back (1994)"][0])
    assert got[""][2] is True and g["item_id"].dtype == "Int64"
    assert grounding_rate(g) == pytest.approx(8 / 11)


def test_extract_titles_from_a_free_answer():
    answer = ("Here are some picks you may enjoy:\n"
              "1. **The Matrix (1999)** - a hacker learns the truth\n"
              "2. Alien (1979), Aliens (1986)\n"
              "- Psycho: a motel with a secret\n"
              "Enjoy!")
    assert extract_titles(answer) == ["The Matrix (1999)", "Alien (1979)", "Aliens (1986)",
                                      "Psycho"]
    g = ground_text(answer, CATALOG)
    assert g["item_id"].tolist() == [1, 2, 3, 4]


def _ml_latest_small():
    folder = movielens_dir() or Path("/work/shared/data/movielens")
    if not (folder / "ml-latest-small.zip").exists() and not (folder / "ml-latest-small").exists():
        pytest.skip("ml-latest-small not available (set PERSO_KIT_DATA_DIR)")
    from perso_kit.data.movielens import load_movielens
    return load_movielens("ml-latest-small", data_dir=folder, download=False)


@pytest.mark.movielens
def test_ground_titles_on_the_real_movielens_catalog():
    items = _ml_latest_small().items
    texts = ["The Matrix (1999)", "Star Wars (1977)", "Amelie (2001)", "The Shawshank Redemption",
             "Se7en (1995)", "The Godfather Part II", "Psycho (1998)", "Jurassic Park 7 (2031)",
             "Godfather: Part IV (1994)"]
    g = ground_titles(texts, items)
    assert g["item_id"].tolist()[:7] == [2571, 260, 4973, 318, 47, 1221, 2389]
    assert g["hallucinated"].tolist() == [False] * 7 + [True, True]
    assert g.loc[7, "matched_title"] == "Jurassic Park (1993)"   # the near miss is shown


def test_a_reply_with_no_title_grounds_to_a_typed_empty_table(demo):
    import pandas as pd

    from perso_kit.llm.grounding import ground_titles

    empty = ground_titles([], demo.items)
    assert len(empty) == 0 and empty["hallucinated"].dtype == bool
    some = ground_titles([demo.items["title"].iloc[0]], demo.items)
    both = pd.concat([empty, some], ignore_index=True)
    assert both["hallucinated"].dtype == bool
    assert both.loc[~both["hallucinated"], "text"].tolist() == [demo.items["title"].iloc[0]]


def test_an_invented_title_holding_a_real_one_does_not_ground():
    items = pd.DataFrame({"item_id": [1, 2], "title": ["Velvet Harbor, The (1993)",
                                                       "Star Wars: Episode IV - A New Hope (1977)"],
                          "year": [1993, 1977]})
    g = ground_titles(["Midnight in Velvet Harbor (1994)",      # planted: extra words, invented
                       "The Velvet Harbor (1993)", "velvet harbor, the (1993)",  # clean variants
                       "Velvet Harbour (1993)", "Star Wars (1977)", "Star Wars",
                       "Velvet Harbour"], items)
    assert g["hallucinated"].tolist() == [True, False, False, False, False, True, True]
    assert g.loc[0, "matched_title"] == "Velvet Harbor, The (1993)"  # the near miss is shown
    assert g["item_id"].tolist()[1:5] == [1, 1, 1, 2]
    assert g.loc[5, "confidence"] == pytest.approx(0.9 * 0.75)    # near-exact needs the year


def test_echoes_of_the_history_are_reported_apart():
    g = ground_titles(["The Matrix (1999)", "Alien (1979)", "Aliens (1986)", "Zorvex (1990)"],
                      CATALOG, history=[1, 2])
    from perso_kit.llm.grounding import grounding_summary
    s = grounding_summary(g)
    assert g["echo"].tolist() == [True, True, False, False]
    assert (s["new"], s["echo"], s["hallucinated"]) == (1, 2, 1)
    assert s["echo_rate"] == 0.5 and grounding_rate(g) == 0.75    # 75% "grounded", half echoes
    clean = grounding_summary(ground_titles(["Aliens (1986)", "Psycho (1960)"], CATALOG,
                                            history=[1, 2]))
    assert (clean["echo"], clean["new_rate"]) == (0, 1.0)
    empty = grounding_summary(ground_titles([], CATALOG, history=[1]))
    assert empty["titles"] == 0 and np.isnan(empty["echo_rate"])
