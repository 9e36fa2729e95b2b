from __future__ import annotations

import asyncio
import random

from utils.turnstile import Turnstile


async def test_results_are_served_in_ticket_order_whatever_order_they_finish_in():
    random.seed(7)
    turnstile = Turnstile()
    served: list[int] = []

    async def request(ticket: int, work: float, fail: bool) -> None:
        try:
            await asyncio.sleep(work)  # the search: finishes in any order
            if fail:
                raise RuntimeError("search failed")
            await turnstile.wait(ticket)
            served.append(ticket)
        finally:
            await turnstile.done(ticket)

    tickets = [turnstile.take() for _ in range(20)]
    failing = {3, 11}
    results = await asyncio.gather(*(request(t, random.uniform(0, 0.02), t in failing) for t in tickets),
                                   return_exceptions=True)
    assert served == [t for t in tickets if t not in failing]
    assert sum(isinstance(r, RuntimeError) for r in results) == 2
    assert turnstile.idle


async def test_a_turnstile_with_a_ticket_out_is_not_idle():
    turnstile = Turnstile()
    ticket = turnstile.take()
    assert not turnstile.idle
    await turnstile.done(ticket)
    assert turnstile.idle
