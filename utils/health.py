"""What /healthz says: the readiness verdict and its JSON body, from plain values (unit-tested), and the
event-loop lag monitor that feeds it.

The endpoint runs on the bot's own event loop (utils/health_server.py): a loop that is stuck answers
nothing at all, which is what process_manager.py's HEALTH_TIMEOUT and a Kubernetes liveness probe catch;
a loop that is merely late answers 503 with its lag.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

LAG_LIMIT = 0.5  # seconds: a loop this late on its timers is not ready (every command would feel it)
LAG_EVERY = 0.25  # seconds between two lag samples


@dataclass(frozen=True)
class HealthInput:
    """One look at the bot, taken on its loop."""

    bot: int
    pid: int
    uptime: float
    ready: bool  # discord.py's READY received and the gateway connected now
    gateway_latency: float  # seconds; inf/nan before the first heartbeat answer
    nodes: Mapping[str, str]  # node identifier -> wavelink NodeStatus name
    players: int
    queued: int
    loop_lag: float  # seconds
    closing: bool = False


def health_payload(info: HealthInput, lag_limit: float = LAG_LIMIT) -> tuple[int, dict[str, object]]:
    """(HTTP status, JSON body): 200 when ready, 503 with the reasons otherwise."""
    problems = []
    if info.closing:
        problems.append("shutting down")
    elif not info.ready:
        problems.append("not connected to Discord (no READY yet, or the gateway is reconnecting)")
    if not any(status == "CONNECTED" for status in info.nodes.values()):
        problems.append("no Lavalink node connected")
    if info.loop_lag > lag_limit:
        problems.append(f"event loop lags {info.loop_lag * 1000:.0f} ms (limit {lag_limit * 1000:.0f} ms)")
    latency = info.gateway_latency
    body: dict[str, object] = {
        "bot": info.bot,
        "ready": not problems,
        "pid": info.pid,
        "uptime_s": round(info.uptime, 1),
        "gateway_latency_ms": round(latency * 1000, 1) if math.isfinite(latency) else None,
        "nodes": dict(info.nodes),
        "players": info.players,
        "queued_tracks": info.queued,
        "loop_lag_ms": round(info.loop_lag * 1000, 1),
    }
    if problems:
        body["problems"] = problems
    return (200 if not problems else 503), body


class LoopLagMonitor:
    """Sleeps LAG_EVERY again and again and records how late it woke up."""

    def __init__(self, every: float = LAG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self.last_lag = 0.0
        self._due = clock() + every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self._due = self.clock() + self.every
            await asyncio.sleep(self.every)
            self.last_lag = max(0.0, self.clock() - self._due)

    def current(self) -> float:
        """The last sample, or longer if the current sleep is already overdue (a callback hogging the loop)."""
        if self._task is None:
            return self.last_lag
        return max(self.last_lag, self.clock() - self._due)
