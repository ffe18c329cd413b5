"""benchmarks/llm_batching.py: its table (wall and CPU time, speed-ups), pointed at a server by
URL, and the sentence that explains a missing speed-up. Timing-dependent values are not
asserted; the verdict is checked on hand-made tables."""
from __future__ import annotations

import pandas as pd
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("llm_batching")


def _table(speed_up: float, ok: int = 16) -> pd.DataFrame:
    return pd.DataFrame({"run": ["sequential chat", "map, concurrency 16", "map again"],
                         "requests": [16, 16, 16], "ok": [16, ok, 16], "cached": [0, 0, 16],
                         "wall_s": [3.2, 3.2 / speed_up, 0.01], "cpu_s": [0.1, 0.1, 0.01],
                         "speed-up vs sequential": [1.0, speed_up, 320.0]})


def test_verdict_explains_a_one_slot_server_and_stays_quiet_otherwise(bench):
    one_slot = bench.verdict(_table(1.01), 16)          # planted: a server with one slot
    assert "one slot" in one_slot and "--parallel" in one_slot and "x1.01" in one_slot
    parallel = bench.verdict(_table(12.0), 16)          # clean control: a parallel server
    assert "one slot" not in parallel and "x12.0" in parallel
    assert bench.verdict(_table(12.0, ok=10), 16).startswith("6 request(s) failed")


def test_the_benchmark_measures_a_server_given_by_url(bench):
    from perso_kit.llm.testing import LocalServer

    with LocalServer(model="imitated-model") as server:
        table = bench.run(n=4, latency=0.0, concurrency=2, base_url=server.base_url,
                          model="imitated-model")
        sent = [r for r in server.requests if r["path"].endswith("/chat/completions")]
    assert table["run"].tolist() == ["sequential chat", "map, concurrency 2",
                                     "map again, from the cache"]
    assert table["ok"].tolist() == [4, 4, 4] and table["cached"].tolist() == [0, 0, 4]
    assert {"wall_s", "cpu_s"} <= set(table.columns) and (table["cpu_s"] >= 0).all()
    assert len(sent) == 1 + 4 + 4                   # warm-up, sequential, map; cache sends none
    assert table.attrs["model"] == "imitated-model"
