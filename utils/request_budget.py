"""Keep one misbehaving bot from getting the whole host banned.

Discord bans an IP for an hour after 10,000 invalid requests (401, 403 and 429, except 429s of
"shared" scope) within 10 minutes. Every bot of a host shares that IP, so each bot counts its own
failures and, once it has used its share (FAILED_REQUEST_BUDGET, default 500 per 10 minutes),
holds back its own requests until old failures leave the window. It hooks discord.py's HTTP
session through aiohttp's tracing, which sees every request, including the 429s discord.py retries.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp

from utils import metrics

log = logging.getLogger(__name__)

WINDOW = 600.0
COUNTED = frozenset({401, 403, 429})


class FailureBudget:
    def __init__(self, limit: int, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: collections.deque[float] = collections.deque()
        self._holding = False

    def record(self, status: int, scope: str | None = None) -> None:
        counted = status in COUNTED and not (status == 429 and scope == "shared")
        if counted:
            self._failures.append(self.clock())
        metrics.count_discord_answer(status, counted)

    def _expire(self, now: float) -> None:
        while self._failures and now - self._failures[0] >= self.window:
            self._failures.popleft()

    @property
    def used(self) -> int:
        self._expire(self.clock())
        return len(self._failures)

    def wait_time(self) -> float:
        """0 while under budget, else how long until enough old failures have left the window."""
        now = self.clock()
        self._expire(now)
        excess = len(self._failures) - self.limit + 1
        if excess <= 0:
            return 0.0
        return max(0.0, self._failures[excess - 1] + self.window - now)

    async def before_request(self) -> None:
        delay = self.wait_time()
        if delay > 0:
            if not self._holding:
                log.error("%d failed Discord requests (401/403/429) in %.0f min: holding back requests for %.0f s "
                          "so the host's IP is not banned", len(self._failures), self.window / 60, delay)
            self._holding = True
            await asyncio.sleep(delay)
        elif self._holding:
            self._holding = False
            log.info("failed-request budget recovered; requests flow again")

    def trace_config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                           params: aiohttp.TraceRequestStartParams) -> None:
            await self.before_request()

        async def on_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                         params: aiohttp.TraceRequestEndParams) -> None:
            self.record(params.response.status, params.response.headers.get("X-RateLimit-Scope"))
            metrics.ACKS.request_done(params.url.path, params.response.status)  # interaction callbacks only

        trace.on_request_start.append(on_start)
        trace.on_request_end.append(on_end)
        return trace
