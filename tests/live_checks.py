"""Checks shared by the opt-in live tests: code that ran is not enough, the model must have
answered. A live test whose every LLM call failed (HTTP 500, timeouts, invalid JSON) passes on
plumbing alone; these helpers make it fail and show the usage table."""
from __future__ import annotations


def assert_calls_succeeded(llm, min_share: float = 0.5) -> float:
    """Assert that more than ``min_share`` of ``llm``'s calls succeeded (a valid answer, JSON
    included where a schema was asked); return the share."""
    log = llm.call_log()
    assert len(log), "no LLM call was made"
    share = float(log["ok"].mean())
    assert share > min_share, (
        f"only {share:.0%} of {len(log)} LLM calls succeeded (need more than {min_share:.0%}):\n"
        + llm.usage_table().to_string())
    return share
