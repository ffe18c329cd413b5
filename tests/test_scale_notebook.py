"""Notebook 13 (the road past one machine), sections 1-2, the exercise and "What we measured":
the numbers it records at SMALL (a 600 x 900 demo world; a 25,000-item world for EASE's
refusal), and the measured table it reads (data/benchmarks/scale_one_machine.json).

The Spark (3) and batch (4) sections have their own tests."""
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest


NB = "13_past_one_machine.ipynb"
ROOT = Path(__file__).parents[1]
BENCH = ROOT / "data" / "benchmarks" / "scale_one_machine.json"


def cell(cell_id: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / NB, as_version=4)
    return next(c.source for c in nb.cells if c.get("id") == cell_id)


@pytest.mark.notebook
def test_the_lean_layout_costs_20_bytes_a_rating_in_the_table_and_8_in_the_matrix(rec):
    # 4 (int32 user) + 4 (int32 item) + 4 (float32 rating) + 8 (int64 time); CSR: 4 + 4
    assert rec["bytes_per_rating_table"] == 20.0 and rec["bytes_per_rating_matrix"] == 8.0
    assert (rec["world_users"], rec["world_items"]) == (600, 900)
    assert rec["world_interactions"] == pytest.approx(35_768, rel=0.01)


@pytest.mark.notebook
def test_every_model_fits_and_is_scored_on_the_sample(rec):
    ndcg = rec["live_ndcg"]
    assert set(ndcg) == {"Popularity", "ItemKNN", "ALS", "EASE", "HeadEASE (300 items)"}
    assert rec["live_eval_users"] == 300
    # ALS's factors may differ in the last digits across BLAS builds: a small tolerance
    assert ndcg == pytest.approx({"Popularity": 0.335, "ItemKNN": 0.323, "ALS": 0.339,
                                  "EASE": 0.383, "HeadEASE (300 items)": 0.378}, abs=0.01)
    assert ndcg["EASE"] >= ndcg["HeadEASE (300 items)"] > ndcg["Popularity"]
    assert rec["head_share"] == pytest.approx(0.802, abs=0.005)    # 300 of 900 items


@pytest.mark.notebook
def test_ease_refuses_25000_items_and_head_ease_fits_them(rec, run):
    assert rec["ease_refuses_25000"] is True
    out = json.dumps(json.loads(run.output.read_text())["cells"])
    assert "EASE keeps a dense 25,000 x 25,000 matrix; that is above max_items=20,000" in out
    # 1,000 of 25,000 items, watched by only 200 users: a flat popularity, a thin head
    assert rec["wide_head_share"] == pytest.approx(0.267, abs=0.005)


@pytest.mark.notebook
def test_the_solution_answers(rec):
    # (b) by hand: 62,423^2 * 8 bytes = 31.17 GB; 10,000^2 * 8 = 0.8 GB
    assert rec["solution_ease_gb_ml25m"] == pytest.approx(31.173, abs=0.001)
    assert rec["solution_head_gb"] == pytest.approx(0.8)
    # (a) on the SMALL world: recomputed here from the same world and split
    from perso_kit import split as splits
    from perso_kit.data.demo import make_world
    ds = make_world(seed=42, n_users=600, n_items=900, mean_activity=60).dataset
    train = splits.random_per_user(ds, test_fraction=0.2, seed=0).train
    pop = np.sort(np.asarray(train.matrix().sum(axis=0)).ravel())[::-1]
    n90 = int(np.argmax(np.cumsum(pop) >= 0.9 * pop.sum())) + 1
    assert rec["solution_head_for_90"] == n90


def test_the_solution_cell_is_tagged_and_the_parameters_cell_too():
    nb = nbformat.read(ROOT / "notebooks" / NB, as_version=4)
    tags = {c.get("id"): c.metadata.get("tags", []) for c in nb.cells}
    assert "solution" in tags["scale-solution"] and "parameters" in tags["scale-parameters"]


# ------------------------------------------------------------------ the measured table
def bench() -> dict:
    return json.loads(BENCH.read_text())


def test_the_measured_table_keeps_protocol_command_machine_and_load():
    doc = bench()
    assert "random_per_user" in doc["protocol"] and "ru_maxrss" in doc["protocol"]
    assert doc["runs"], "no run recorded"
    for label, run in doc["runs"].items():
        assert run["command"].startswith("python benchmarks/scale_one_machine.py"), label
        m = run["machine"]
        assert m["date"].startswith("2026-") and m["cores"] >= 1 and len(m["load_average"]) == 3
        assert all("failed" not in r for r in run["models"]), label
        names = [r["model"] for r in run["models"]]
        assert "data only" in names and "HeadEASE" in names and "EASE" in names, label


def test_at_ml25m_catalog_size_ease_refuses_and_the_head_is_measured():
    big = [run for run in bench()["runs"].values() if run["world"]["items"] == 62_423]
    assert big, "no run at ML-25M's catalog size"
    for run in big:
        by = {r["model"]: r for r in run["models"]}
        assert "refused" in by["EASE"]
        assert by["EASE"]["would_need_gb"] == pytest.approx(62_423 ** 2 * 8 / 1e9)
        head = by["HeadEASE"]
        assert 0 < head["tail_share_test"] < 1 and 0 < head["head_share_train"] < 1
        # the test tail share is about one minus the train head share (same random split)
        assert head["tail_share_test"] == pytest.approx(1 - head["head_share_train"], abs=0.02)
        for r in run["models"]:
            if "fit_cpu_s" in r:
                assert r["eval_users"] > 0 and 0 <= r["ndcg@10"] <= 1
                assert r["peak_mb"] > 0


def test_what_we_measured_states_the_numbers_of_the_file():
    text = " ".join(cell("scale-summary").split())            # line breaks do not matter
    run = next(r for r in bench()["runs"].values() if r["world"]["items"] == 62_423)
    by = {r["model"]: r for r in run["models"]}
    assert f"{run['world']['interactions']:,} interactions" in text
    for name in ("Popularity", "ItemKNN", "ALS", "HeadEASE"):
        r = by[name]
        assert f"fit {r['fit_cpu_s']:.1f} CPU s" in text, name
        assert f"NDCG@10 {r['ndcg@10']:.3f}" in text, name
    head = by["HeadEASE"]
    assert f"{head['head_share_train']:.1%} of the training interactions" in text
    assert f"{head['tail_share_test']:.1%} of the test interactions" in text
    assert "would need 31 GB" in text and "20 bytes in the table and 8" in text


def test_what_we_measured_states_every_larger_run_of_the_file():
    text = " ".join(cell("scale-summary").split())
    runs = [r for r in bench()["runs"].values() if r["world"]["items"] == 62_423]
    for run in runs[1:]:
        by = {r["model"]: r for r in run["models"]}
        assert f"With {run['world']['users']:,} users ({run['world']['interactions']:,}" in text
        assert f"ALS fitted in {by['ALS']['fit_cpu_s']:.1f} CPU s" in text
        assert f"HeadEASE in {by['HeadEASE']['fit_cpu_s']:.1f} CPU s" in text
    peak = max(r["peak_mb"] for run in runs for r in run["models"]) / 1024
    assert f"No model's process (data, split and model together) needed more than {peak:.1f} GB" \
        in text
    build = max(r["world"]["rss_mb"] for r in runs) / 1024
    assert f"building the largest world took {build:.1f} GB" in text
