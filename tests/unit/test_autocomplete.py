"""The autocomplete cache and per-member search throttle (utils/autocomplete.py), driven by a fake clock."""

from __future__ import annotations

from utils.autocomplete import ChoiceCache, SearchThrottle, normalize_query


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0  # discord.py's Cooldown reads a falsy time as "use time.time()"

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_queries_differing_in_case_and_spacing_share_an_entry():
    assert normalize_query("  Velvet \t SKY ") == "velvet sky"
    cache = ChoiceCache(clock=Clock())
    cache.put("Velvet Sky", ["a"])
    assert cache.get("velvet   sky") == ["a"] and cache.get("velvet") is None


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = ChoiceCache(ttl=120.0, clock=clock)
    cache.put("velvet", ["a"])
    clock.advance(120.0)
    assert cache.get("velvet") == ["a"]
    clock.advance(0.5)
    assert cache.get("velvet") is None and len(cache) == 0


def test_the_least_recently_used_entry_goes_first_when_full():
    cache = ChoiceCache(size=2, clock=Clock())
    cache.put("one", [1])
    cache.put("two", [2])
    assert cache.get("one") == [1]  # "two" is now the least recently used
    cache.put("three", [3])
    assert cache.get("two") is None and cache.get("one") == [1] and cache.get("three") == [3]


def test_an_empty_result_is_cached_too():
    cache = ChoiceCache(clock=Clock())
    cache.put("nothing matches", [])
    assert cache.get("nothing matches") == []


def test_first_keystroke_searches_at_once_and_a_second_within_the_gap_waits_for_its_end():
    clock = Clock()
    throttle = SearchThrottle(gap=0.3, clock=clock)
    first = throttle.arrive(1)
    assert first.wait == 0 and throttle.claim(first)
    clock.advance(0.1)
    second = throttle.arrive(1)
    assert abs(second.wait - 0.2) < 1e-9
    assert not throttle.claim(second)  # claiming early never searches
    clock.advance(0.21)
    assert throttle.claim(second)


def test_a_newer_keystroke_supersedes_a_waiting_one_so_a_burst_costs_two_searches():
    clock = Clock()
    throttle = SearchThrottle(gap=0.3, clock=clock)
    searches = 0
    tickets = []
    for _ in range(6):  # six keystrokes 40 ms apart
        ticket = throttle.arrive(7)
        if ticket.wait == 0 and throttle.claim(ticket):
            searches += 1
        else:
            tickets.append(ticket)
        clock.advance(0.04)
    clock.advance(0.3)  # every waiting keystroke wakes up after the gap
    allowed = [throttle.claim(t) for t in tickets]
    assert allowed == [False] * 4 + [True]  # only the last keystroke searches
    assert searches + sum(allowed) == 2


def test_members_are_throttled_separately():
    clock = Clock()
    throttle = SearchThrottle(gap=0.3, clock=clock)
    assert throttle.claim(throttle.arrive(1))
    assert throttle.claim(throttle.arrive(2))
    clock.advance(0.1)
    assert throttle.arrive(1).wait > 0 and throttle.arrive(2).wait > 0


def test_at_most_one_search_per_gap_even_when_keystrokes_claim_late():
    clock = Clock()
    throttle = SearchThrottle(gap=0.3, clock=clock)
    times = []
    for step in range(40):  # a keystroke every 70 ms, each claiming after its wait
        ticket = throttle.arrive(3)
        clock.advance(ticket.wait)
        if throttle.claim(ticket):
            times.append(clock.now)
        clock.advance(0.07)
    assert len(times) >= 5
    assert all(b - a >= 0.3 for a, b in zip(times, times[1:])), times


def test_forgotten_members_are_pruned_only_once_their_gap_is_over():
    clock = Clock()
    throttle = SearchThrottle(gap=0.3, clock=clock)
    for user in range(1024):
        assert throttle.claim(throttle.arrive(user))
    busy = throttle.arrive(5000)  # prunes nothing yet: every gap is still running
    assert throttle.claim(busy)
    assert throttle.arrive(0).wait > 0  # member 0 was not forgotten while inside its gap
    clock.advance(1.0)
    throttle.arrive(9999)
    assert len(throttle._buckets) <= 1
