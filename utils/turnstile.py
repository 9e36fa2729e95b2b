"""Serve concurrent requests in the order they arrived."""

from __future__ import annotations

import asyncio


class Turnstile:
    """Tickets are served in the order they were taken.

    /play searches run concurrently (a slow search must not hold up the others), but their results
    join the queue in the order the commands were sent: each takes a ticket on arrival and waits
    for its turn only to enqueue. A ticket must always be handed back with `done`, even on failure.
    """

    def __init__(self) -> None:
        self._next = 0
        self._serving = 0
        self._finished: set[int] = set()
        self._changed = asyncio.Condition()

    def take(self) -> int:
        ticket, self._next = self._next, self._next + 1
        return ticket

    async def wait(self, ticket: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._serving == ticket)

    async def done(self, ticket: int) -> None:
        async with self._changed:
            self._finished.add(ticket)
            while self._serving in self._finished:
                self._finished.discard(self._serving)
                self._serving += 1
            self._changed.notify_all()

    @property
    def idle(self) -> bool:
        return self._serving == self._next
