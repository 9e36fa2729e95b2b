"""What keeps /play's autocomplete from flooding the audio server: a short cache and a per-member throttle.

Discord sends an autocomplete request for nearly every keystroke. Each bot keeps:
- `ChoiceCache`: the answers to recent searches by normalized query ("  Velvet  SKY" = "velvet sky"), for
  `ttl` seconds, at most `size` of them (least recently used dropped first); shared by all members.
- `SearchThrottle`: at most one search per member per `gap` seconds (300 ms). A keystroke inside the gap
  waits for its end; if a newer keystroke of the same member arrived meanwhile, it is superseded and
  answers from the cache or with nothing, never with a search of its own. So a burst of typing costs a
  search at its start and one for its last keystroke, whose suggestions are the ones the member sees.
The gap is counted with discord.py's `app_commands.Cooldown` (1 use per `gap`), fed our clock.
Both take a `clock` (seconds, monotonic, > 0) so tests can drive time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from discord import app_commands

V = TypeVar("V")
Clock = Callable[[], float]


def normalize_query(text: str) -> str:
    """The cache key of a query: case and runs of whitespace do not change search results."""
    return " ".join(text.casefold().split())


class ChoiceCache(Generic[V]):
    def __init__(self, *, ttl: float = 120.0, size: int = 512, clock: Clock = time.monotonic) -> None:
        self.ttl, self.size, self._clock = ttl, size, clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, query: str) -> V | None:
        key = normalize_query(query)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] > self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, query: str, value: V) -> None:
        key = normalize_query(query)
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Ticket:
    """One keystroke of one member: `wait` seconds until it may search (0: now)."""

    user_id: int
    number: int
    wait: float


class SearchThrottle:
    def __init__(self, *, gap: float = 0.3, clock: Clock = time.monotonic) -> None:
        self.gap, self._clock = gap, clock
        self._buckets: dict[int, app_commands.Cooldown] = {}
        self._latest: dict[int, int] = {}  # member -> number of their newest keystroke
        self._numbers = 0

    def arrive(self, user_id: int) -> Ticket:
        """Record a keystroke; it supersedes the member's earlier ones still waiting."""
        now = self._clock()
        self._prune(now)
        self._numbers += 1
        self._latest[user_id] = self._numbers
        bucket = self._buckets.get(user_id)
        wait = bucket.get_retry_after(now) if bucket is not None else 0.0
        return Ticket(user_id, self._numbers, wait)

    def claim(self, ticket: Ticket) -> bool:
        """May this keystroke search now? Only the member's newest, and only once the gap has passed."""
        if self._latest.get(ticket.user_id, ticket.number) != ticket.number:
            return False
        bucket = self._buckets.setdefault(ticket.user_id, app_commands.Cooldown(1, self.gap))
        return bucket.update_rate_limit(self._clock()) is None

    def _prune(self, now: float) -> None:
        """Forget members whose gap is over (forgetting them changes no answer), once there are many."""
        if len(self._buckets) < 1024:
            return
        for user_id, bucket in list(self._buckets.items()):
            if bucket.get_tokens(now) == bucket.rate:
                del self._buckets[user_id]
                self._latest.pop(user_id, None)
