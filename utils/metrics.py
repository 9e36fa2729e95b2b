"""The bot's Prometheus metrics: module-level prometheus_client objects any module may update.

One process is one bot, so the default registry is the bot's registry; it also carries prometheus_client's
process collector (process_resident_memory_bytes, open fds, CPU) and GC collector. Code that counts an event
calls e.g. `VOICE_REJOINS.inc()`; counting costs nothing when METRICS_PORT is unset (nobody scrapes).
Gauges that describe the present (players, queued tracks, budget use) are read at scrape time from the
bot (`bind`). Served by utils/health_server.py; the names are documented in the README.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

if TYPE_CHECKING:
    import discord

    from utils.request_budget import FailureBudget

disable_created_metrics()  # no *_created series: half the samples of a scrape, nothing a dashboard uses

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

INTERACTIONS = Counter("musicbot_interactions_total", "Slash commands handled, by command and outcome "
                       "(ok; refused: an expected answer such as 'join a voice channel first'; error: a bug)",
                       ["command", "outcome"])
ACK_LATENCY = Histogram("musicbot_interaction_ack_seconds", "From receiving an interaction to Discord accepting "
                        "its first response (Discord drops interactions not acknowledged within 3 s)",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0))
LAVALINK_REQUESTS = Counter("musicbot_lavalink_requests_total", "Lavalink REST requests made by commands and "
                            "recovery")
LAVALINK_ERRORS = Counter("musicbot_lavalink_errors_total", "Lavalink requests that failed, by reason "
                          "(timeout, unreachable, refused)", ["reason"])
LAVALINK_LATENCY = Histogram("musicbot_lavalink_request_seconds", "Lavalink request duration (up to the "
                             "caller's timeout)", buckets=_LATENCY_BUCKETS)
RATE_LIMITED = Counter("musicbot_discord_429_total", "Discord answers 429 Too Many Requests (all scopes)")
FAILED_REQUESTS = Counter("musicbot_discord_failed_requests_total", "Discord answers 401/403/429 that count "
                          "towards the IP ban limit (shared-scope 429s excluded)")
RESTORES = Counter("musicbot_restores_total", "Players resumed from a snapshot after a restart")
VOICE_REJOINS = Counter("musicbot_voice_rejoins_total", "Dropped voice connections brought back by rejoining")
VOICE_REJOIN_FAILURES = Counter("musicbot_voice_rejoin_failures_total", "Dropped voice connections given up on "
                                "after every rejoin attempt failed")
GATEWAY_CONNECTS = Counter("musicbot_gateway_connects_total", "New gateway sessions (READY; the first one included, "
                           "resumes not)")
GATEWAY_DISCONNECTS = Counter("musicbot_gateway_disconnects_total", "Gateway connections lost")
GATEWAY_RESUMES = Counter("musicbot_gateway_resumes_total", "Gateway sessions resumed after a reconnect (RESUMED)")

READY = Gauge("musicbot_ready", "1 when /healthz answers 200 (ready, audio server up, event loop responsive)")
GATEWAY_LATENCY = Gauge("musicbot_gateway_latency_seconds", "Last heartbeat round trip (NaN before the first)")
LOOP_LAG = Gauge("musicbot_event_loop_lag_seconds", "How late the event loop woke a periodic timer, last sample")
PLAYERS = Gauge("musicbot_players", "Voice connections (one player per guild)")
QUEUED = Gauge("musicbot_queued_tracks", "Tracks waiting in every queue, current tracks excluded")
NODES_UP = Gauge("musicbot_lavalink_nodes_connected", "Lavalink nodes this bot is connected to")
BUDGET_USED = Gauge("musicbot_failed_request_budget_used", "Failed Discord requests in the last 10 minutes")
BUDGET_LIMIT = Gauge("musicbot_failed_request_budget", "FAILED_REQUEST_BUDGET: failures allowed per 10 minutes "
                     "before this bot holds back its requests")


def bind(client: discord.Client, budget: FailureBudget, nodes_connected: Callable[[], int]) -> None:
    """Read the present-state gauges from `client` at scrape time."""
    PLAYERS.set_function(lambda: len(client.voice_clients))
    QUEUED.set_function(lambda: sum(len(getattr(vc, "queue", ())) for vc in client.voice_clients))
    NODES_UP.set_function(nodes_connected)
    BUDGET_USED.set_function(lambda: budget.used)
    BUDGET_LIMIT.set(budget.limit)


def count_discord_answer(status: int, counted: bool) -> None:
    """Called by utils/request_budget.py for every Discord HTTP answer."""
    if status == 429:
        RATE_LIMITED.inc()
    if counted:
        FAILED_REQUESTS.inc()


class AckClock:
    """Acknowledgement latency: an interaction's arrival (on_interaction) to the end of its callback request.

    discord.py has no hook for "the response was sent"; the bot's aiohttp trace (see utils/request_budget.py)
    sees the POST /interactions/{id}/{token}/callback finish and hands its path here (the token never leaves)."""

    _CALLBACK = re.compile(r"/interactions/(\d+)/[^/]+/callback$")
    KEEP = 1000  # interactions awaiting their acknowledgement; older ones are forgotten (never answered)

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._received: OrderedDict[int, float] = OrderedDict()

    def received(self, interaction_id: int) -> None:
        self._received[interaction_id] = self.clock()
        while len(self._received) > self.KEEP:
            self._received.popitem(last=False)

    def request_done(self, path: str, status: int) -> float | None:
        """Observe the latency if `path` is an interaction callback Discord accepted; returns it."""
        match = self._CALLBACK.search(path)
        if match is None:
            return None
        if status >= 400:
            return None  # not acknowledged (yet): discord.py retries a 429, and the retry that passes counts
        started = self._received.pop(int(match.group(1)), None)
        if started is None:
            return None
        seconds = self.clock() - started
        ACK_LATENCY.observe(seconds)
        return seconds


ACKS = AckClock()
