"""Fault injection for the emulated Lavalink node: slow answers, hung requests and forced error statuses.

Rules match a regular expression searched in the request path with its query string (the websocket
handshake included), so one search can be slowed by its identifier; the server applies them before
authentication and routing, as a slow or failing network path would.
"""

from __future__ import annotations

import asyncio
import logging
import re

log = logging.getLogger(__name__)


class FaultPlan:
    """The active fault rules; ``apply`` enacts them for one request."""

    def __init__(self) -> None:
        self._latency: dict[str | None, float] = {}
        self._hangs: dict[str, asyncio.Event] = {}
        self._failures: list[list[object]] = []  # [pattern, status, remaining]

    def set_latency(self, seconds: float, path_pattern: str | None = None) -> None:
        """Delay matching requests (every request when the pattern is None); 0 clears that rule, and
        ``set_latency(0)`` clears every latency rule."""
        if seconds <= 0:
            if path_pattern is None:
                self._latency.clear()
            else:
                self._latency.pop(path_pattern, None)
            return
        self._latency[path_pattern] = seconds

    def hang(self, path_pattern: str) -> None:
        self._hangs.setdefault(path_pattern, asyncio.Event())

    def unhang(self, path_pattern: str | None = None) -> None:
        for pattern in [p for p in self._hangs if path_pattern is None or p == path_pattern]:
            self._hangs.pop(pattern).set()

    def fail_next(self, path_pattern: str, status: int = 500, count: int = 1) -> None:
        self._failures.append([path_pattern, status, count])

    def clear(self) -> None:
        self._latency.clear()
        self._failures.clear()
        self.unhang()

    async def apply(self, method: str, path: str) -> int | None:
        """Sleep for latency, wait while hung; return the status to fail with, if any."""
        delays = [s for p, s in self._latency.items() if p is None or re.search(p, path)]
        if delays:
            await asyncio.sleep(max(delays))
        for pattern, released in list(self._hangs.items()):
            if re.search(pattern, path):
                log.info("Holding %s %s until unhang()", method, path)
                await released.wait()
        for rule in self._failures:
            pattern, status, remaining = rule
            if re.search(str(pattern), path):
                rule[2] = int(remaining) - 1  # type: ignore[call-overload]
                if rule[2] <= 0:
                    self._failures.remove(rule)
                return int(status)  # type: ignore[call-overload]
        return None
