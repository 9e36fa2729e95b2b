from __future__ import annotations

import pytest

from utils.request_budget import FailureBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_invalid_requests_count():
    budget = FailureBudget(limit=10, clock=Clock())
    for status in (200, 204, 404, 500, 502):
        budget.record(status)
    budget.record(429, "shared")  # Discord does not count shared-scope 429s
    assert budget.used == 0
    for status in (401, 403, 429):
        budget.record(status, "user")
    assert budget.used == 3


def test_over_budget_waits_until_old_failures_leave_the_window():
    clock = Clock()
    budget = FailureBudget(limit=3, window=600, clock=clock)
    budget.record(401)
    clock.now += 100
    budget.record(401)
    assert budget.wait_time() == 0
    clock.now += 100
    budget.record(401)  # the third failure uses the budget up
    assert budget.wait_time() == pytest.approx(400)  # the first one leaves at t+600
    clock.now += 400
    assert budget.wait_time() == 0 and budget.used == 2


async def test_before_request_holds_back_and_logs_once(caplog, monkeypatch):
    clock = Clock()
    budget = FailureBudget(limit=1, window=10, clock=clock)
    budget.record(403)
    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr("utils.request_budget.asyncio.sleep", fake_sleep)
    with caplog.at_level("INFO"):
        await budget.before_request()
        await budget.before_request()
    assert slept == [pytest.approx(10)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("holding back requests" in m for m in messages) == 1
    assert any("recovered" in m for m in messages)
