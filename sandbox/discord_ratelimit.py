"""Per-route rate-limit buckets (Discord's real headers and 429s) and injectable REST faults."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# (method, route template) -> (limit, per seconds). Values mirror what Discord answers today.
ROUTE_LIMITS: dict[tuple[str, str], tuple[int, float]] = {
    ("POST", "/channels/{channel_id}/messages"): (5, 5.0),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"): (5, 5.0),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"): (5, 1.0),
    ("POST", "/channels/{channel_id}/typing"): (5, 5.0),
    ("PUT", "/applications/{application_id}/commands"): (5, 20.0),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"): (5, 20.0),
    ("POST", "/applications/{application_id}/commands"): (5, 20.0),
    ("POST", "/applications/{application_id}/guilds/{guild_id}/commands"): (5, 20.0),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"): (5, 2.0),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): (5, 2.0),
}
DEFAULT_LIMIT = (50, 1.0)
GLOBAL_LIMIT = 50  # requests per second per bot, across routes (interaction routes are exempt)
RATE_LIMIT_MESSAGE = "You are being rate limited."


@dataclass
class Bucket:
    limit: int
    per: float
    count: int = 0
    reset_at: float = 0.0


@dataclass
class Verdict:
    """The outcome of counting one request: its headers, and a 429 body if it went over."""

    headers: dict[str, str]
    limited: bool = False
    retry_after: float = 0.0


def bucket_hash(method: str, template: str) -> str:
    return hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:32]


def rate_headers(limit: int, remaining: int, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def too_many_body(retry_after: float, global_: bool) -> dict[str, Any]:
    return {"message": RATE_LIMIT_MESSAGE, "retry_after": round(retry_after, 3), "global": global_, "code": 0}


def too_many_headers(retry_after: float, global_: bool) -> dict[str, str]:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after))), "Via": "1.1 google",
               "X-RateLimit-Scope": "global" if global_ else "user"}
    if global_:
        headers["X-RateLimit-Global"] = "true"
    return headers


class RateLimiter:
    """Fixed-window buckets keyed by (who, method, template, major parameter)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[Any, ...], Bucket] = {}
        self._global: dict[Any, tuple[float, int]] = {}
        self.enabled = True

    def hit(self, who: Any, method: str, template: str, major: str) -> Verdict:
        limit, per = ROUTE_LIMITS.get((method, template), DEFAULT_LIMIT)
        now = self._clock()
        key = (who, method, template, major)
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = self._buckets[key] = Bucket(limit=limit, per=per, reset_at=now + per)
        reset_after = max(0.0, bucket.reset_at - now)
        name = bucket_hash(method, template)
        if not self.enabled:
            return Verdict(rate_headers(limit, limit, reset_after, name))
        if bucket.count >= bucket.limit:
            return Verdict(rate_headers(limit, 0, reset_after, name), limited=True, retry_after=reset_after)
        bucket.count += 1
        return Verdict(rate_headers(limit, bucket.limit - bucket.count, reset_after, name))

    def hit_global(self, who: Any) -> float:
        """Seconds to wait if this bot went over the global limit, else 0."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        start, count = self._global.get(who, (now, 0))
        if now - start >= 1.0:
            start, count = now, 0
        if count >= GLOBAL_LIMIT:
            return max(0.001, 1.0 - (now - start))
        self._global[who] = (start, count + 1)
        return 0.0


@dataclass
class FaultRule:
    method: str
    pattern: re.Pattern[str]
    count: int
    status: int
    retry_after: float = 0.0
    global_: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.pattern.search(path) is not None


@dataclass
class Faults:
    """Injected 429s / 5xx (each used `count` times) and latencies, matched by method + path regex."""

    rules: list[FaultRule] = field(default_factory=list)
    latencies: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, method: str, pattern: str, *, count: int, status: int, retry_after: float = 0.0,
            global_: bool = False) -> None:
        self.rules.append(FaultRule(method.upper(), re.compile(pattern), count, status, retry_after, global_))

    def set_latency(self, method: str, pattern: str, seconds: float) -> None:
        key = (method.upper(), pattern)
        if seconds <= 0:
            self.latencies.pop(key, None)
        else:
            self.latencies[key] = seconds

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.count > 0 and rule.matches(method, path):
                rule.count -= 1
                return rule
        return None

    def latency(self, method: str, path: str) -> float:
        total = 0.0
        for (m, pattern), seconds in self.latencies.items():
            if m in ("*", method) and re.search(pattern, path):
                total = max(total, seconds)
        return total
