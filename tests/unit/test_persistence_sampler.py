"""The snapshot sampler (commands/persistence.py) over real MusicPlayers without a network: it writes when, and
only when, something a restore needs changed, and every way a queue or player changes counts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time

import pytest
import wavelink

from commands.persistence import DRIFT_MS, Persistence
from tests.offline_player import offline_bot, offline_node, offline_player, playable
from utils.player import tag_requester, track_payload
from utils.tracklist import LoopMode, move, remove_at, skip_to
from utils.versioned_queue import VersionedQueue

WAIT = 10.0
GUILD = 42


@pytest.fixture
async def cog(tmp_path):
    node = offline_node()
    cog = Persistence(offline_bot(node, tmp_path / "bot-1"))
    cog._loop = asyncio.get_running_loop()
    cog.writer.start()
    yield cog
    cog.writer.close(WAIT)
    await node._session.close()


@pytest.fixture
async def player(cog):
    player = offline_player(cog.bot.lavalink.nodes[0], GUILD)
    player.queue.put([playable(f"queued-{i}") for i in range(5)])
    await player.play(playable("now-playing"), start=30_000)
    return player


def tick(cog: Persistence) -> int:
    """One sampler pass, waited out; returns how many files the writer has written so far."""
    cog.save_all()
    assert cog.writer.flush(WAIT)
    return cog.writer.writes


def on_disk(cog: Persistence) -> dict:
    return json.loads(cog.store.path(GUILD).read_text())


def played_on(cog: Persistence, player, seconds: float) -> None:
    """As if `seconds` passed with the track playing and Lavalink reporting the position: shift both clocks."""
    cog._saved[GUILD] = dataclasses.replace(cog._saved[GUILD], at=cog._saved[GUILD].at - seconds)
    player._last_update -= int(seconds * 1e9)


async def test_a_track_that_just_plays_on_is_not_rewritten(cog, player):
    assert tick(cog) == 1
    assert on_disk(cog)["position"] == pytest.approx(30_000, abs=500)
    for _ in range(5):
        played_on(cog, player, 2.0)
        assert tick(cog) == 1
    player._last_position, player._last_update = player.position, time.monotonic_ns()  # an agreeing playerUpdate
    assert tick(cog) == 1


async def test_a_position_that_leaves_the_clock_is_rewritten(cog, player):
    tick(cog)
    player._last_position += DRIFT_MS + 500  # e.g. Lavalink reports a jump the bot did not ask for
    assert tick(cog) == 2
    assert on_disk(cog)["position"] >= 30_000 + DRIFT_MS + 500


async def test_a_stream_is_never_rewritten_for_its_position(cog, player):
    await player.play(playable("radio", stream=True))
    tick(cog)
    writes = cog.writer.writes
    player._last_position += 60_000
    assert tick(cog) == writes


async def test_seek_is_on_disk_at_once_with_the_new_position(cog, player):
    tick(cog)
    await player.seek(120_000)
    assert tick(cog) == 2
    assert on_disk(cog)["position"] == pytest.approx(120_000, abs=500)


async def test_pause_and_resume_are_written_with_the_position(cog, player):
    tick(cog)
    await player.pause(True)
    assert tick(cog) == 2 and on_disk(cog)["paused"] is True
    await player.pause(False)
    assert tick(cog) == 3 and on_disk(cog)["paused"] is False


async def test_a_paused_track_keeps_its_position_and_resumes_from_it(cog, player):
    assert tick(cog) == 1
    played_on(cog, player, 3.0)  # Lavalink's last update came 3 s ago; wavelink alone would still say 30 s
    await player.pause(True)
    assert player.position == pytest.approx(33_000, abs=500)
    assert tick(cog) == 2
    assert on_disk(cog)["position"] == pytest.approx(33_000, abs=500) and on_disk(cog)["paused"] is True
    player._last_update -= int(60e9)  # a minute paused: no move, no rewrite
    assert player.position == pytest.approx(33_000, abs=500) and tick(cog) == 2
    await player.pause(False)
    assert player.position == pytest.approx(33_000, abs=500)  # not 93 s: the pause did not count as playing
    assert tick(cog) == 3 and on_disk(cog)["paused"] is False


async def test_replaying_the_same_track_rewrites(cog, player):
    tick(cog)
    player.loop_mode = LoopMode.track
    tick(cog)
    writes = cog.writer.writes
    played_on(cog, player, 1.0)
    await player.play(player.current)  # what wavelink's auto-play does at the end of a looped track
    assert tick(cog) == writes + 1
    assert on_disk(cog)["position"] < 1000


def queued(data: dict) -> list[str]:
    return [t["info"]["title"] for t in data["queue"]]


MUTATIONS = {
    "put": lambda p: p.queue.put(playable("added")),
    "put many": lambda p: p.queue.put([playable("added-1"), playable("added-2")]),
    "put_at": lambda p: p.queue.put_at(0, playable("first")),
    "get": lambda p: p.queue.get(),
    "get_at": lambda p: p.queue.get_at(2),
    "delete": lambda p: p.queue.delete(1),
    "remove": lambda p: p.queue.remove(p.queue[3]),
    "swap": lambda p: p.queue.swap(0, 4),
    "shuffle": lambda p: (random.seed(3), p.queue.shuffle()),
    "clear": lambda p: p.queue.clear(),
    "reset": lambda p: p.queue.reset(),
    "setitem": lambda p: p.queue.__setitem__(0, playable("replaced")),
    "delitem": lambda p: p.queue.__delitem__(0),
    "remove_at (/remove)": lambda p: remove_at(p.queue, 2),
    "move (/move)": lambda p: move(p.queue, 1, 5),
    "skip_to (/skip to)": lambda p: skip_to(p.queue, 3),
    "history": lambda p: p.queue.history.put(playable("heard")),
    "history cleared": lambda p: p.queue.history.clear(),
    "loop": lambda p: setattr(p, "loop_mode", LoopMode.queue),
    "autoplay": lambda p: p.set_autoplay(True),
    "/stop's clear_all": lambda p: p.clear_all(),
    "home channel": lambda p: setattr(p, "home", type("Home", (), {"id": 77})()),
    "panel": lambda p: setattr(p, "panel_message", type("Message", (), {"id": 88})()),
    "voice channel": lambda p: setattr(p, "channel", type("Voice", (), {"id": 99})()),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_every_change_is_on_disk_after_one_pass(cog, player, mutation):
    tick(cog)
    played_on(cog, player, 0.5)
    MUTATIONS[mutation](player)
    assert tick(cog) == 2
    data, expected = on_disk(cog), player.snapshot().to_json()
    for key in ("queue", "history", "loop", "autoplay", "home_channel_id", "panel_message_id", "voice_channel_id"):
        assert data[key] == expected[key], key


def track_ended(player) -> asyncio.Future:
    """What wavelink does on Lavalink's TrackEndEvent (websocket.py): forget the track, auto-play the next."""
    ended = player.current
    player._current = None
    return player._auto_play_event(wavelink.TrackEndEventPayload(player=player, track=ended, reason="finished"))


@pytest.mark.parametrize("coroutine", ["play next", "track end + auto-play", "volume", "async put_wait"])
async def test_every_player_call_is_on_disk_after_one_pass(cog, player, coroutine):
    tick(cog)
    calls = {"play next": lambda: player.play(player.queue.get()), "track end + auto-play": lambda: track_ended(player),
             "volume": lambda: player.set_volume(35),
             "async put_wait": lambda: player.queue.put_wait(playable("waited"))}
    await calls[coroutine]()
    assert tick(cog) == 2
    data = on_disk(cog)
    assert queued(data) == [t.title for t in player.queue] and data["volume"] == player.volume
    assert (data["current"] or {}).get("encoded") == (player.current.encoded if player.current else None)


async def test_loop_all_refill_from_history_counts_as_a_change():
    queue = VersionedQueue()
    queue.mode = wavelink.QueueMode.loop_all
    queue.history.put([playable("a"), playable("b")])
    before = queue.version
    queue.get()  # empty queue in loop-all: wavelink refills it from the history internally
    assert queue.version != before and len(queue) == 1


async def test_reassigned_items_still_count():
    queue = VersionedQueue()
    queue.put(playable("a"))
    before = queue.version
    queue._items = [playable("b")]  # wavelink never does this today; a future version might
    assert queue.version > before
    queue._items.append(playable("c"))
    assert queue.version > before + 1


async def test_an_emptied_player_loses_its_snapshot_once(cog, player, caplog):
    tick(cog)
    player.queue.clear()
    player._current = None  # the track ended (TrackEndEvent), nothing left to play
    with caplog.at_level("INFO", logger="commands.persistence"):
        for _ in range(3):
            tick(cog)
    assert not cog.store.path(GUILD).exists()
    assert len([r for r in caplog.records if "snapshot removed" in r.getMessage()]) == 1


async def test_a_failed_write_is_tried_again_on_the_next_pass(cog, player, monkeypatch):
    real_save, calls = cog.store.save, []

    def flaky_save(snapshot):
        calls.append(snapshot.position)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_save(snapshot)

    monkeypatch.setattr(cog.store, "save", flaky_save)
    tick(cog)
    assert not cog.store.path(GUILD).exists()
    await asyncio.sleep(0)  # the writer's failure report reaches the loop
    tick(cog)
    assert len(calls) == 2 and on_disk(cog)["guild_id"] == GUILD


async def test_shutdown_flush_writes_the_position_of_now(cog, player):
    tick(cog)
    played_on(cog, player, 42.0)
    cog.flush_for_shutdown()  # synchronous: on disk when it returns
    assert on_disk(cog)["position"] == pytest.approx(72_000, abs=1_000)
    assert on_disk(cog)["stopped"] is True  # the bot leaves voice next: the song stops here
    tick(cog)
    writes = cog.writer.writes
    player.queue.put(playable("after-flush"))
    cog.save_all()
    assert cog.writer.flush(WAIT) and cog.writer.writes == writes + 1
    assert on_disk(cog)["stopped"] is False  # an ordinary pass never marks it stopped


def test_a_track_payload_is_kept_on_the_track_until_its_requester_changes():
    track = playable("cached")
    first = track_payload(track)
    assert track_payload(track) is first and first["encoded"] == track.encoded
    tag_requester(track, 1234)
    second = track_payload(track)
    assert second is not first and second["userData"] == {"requester_id": "1234"}
    assert first["userData"] == {}  # a payload already handed out is never changed


async def test_a_track_under_a_timescale_that_plays_on_is_not_rewritten(cog, player):
    """/speed 2: the song moves 2 s a second, and so does the line a restore computes (no rewrite every second)."""
    from utils.filters import Effects

    await player.set_effects(Effects("nightcore", 1.6))  # speed x rate = 2
    written = tick(cog)
    assert on_disk(cog)["filters"] == {"preset": "nightcore", "speed": 1.6}
    before = player.position
    for _ in range(3):
        played_on(cog, player, 2.0)
        position, at = player.position_basis
        player.position_basis = (position, at - 2.0)
        assert tick(cog) == written
    assert player.position == pytest.approx(before + 12_000, abs=500)
