"""The playback clock and session bookkeeping, without any networking (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.catalogue import Catalogue
from sandbox.lavalink_sessions import NodeState, Session, session_id_for

pytestmark = pytest.mark.timeout(60)
VOICE = {"token": "t", "endpoint": "e", "sessionId": "s"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _setup(speed: float = 1.0) -> tuple[NodeState, Session, list[dict[str, Any]], FakeClock]:
    clock = FakeClock()
    node = NodeState(speed=speed, player_update_interval=60.0, stats_interval=600.0, clock=clock)
    session = node.new_session(42, "test")
    sent: list[dict[str, Any]] = []
    session.attach(sent.append, resumed=False)
    return node, session, sent, clock


def _track(length: int = 60_000, slug: str = "song"):
    return Catalogue().music_track(slug, length=length)


async def test_position_follows_clock_speed_pause_and_timescale() -> None:
    node, session, sent, clock = _setup(speed=2.0)
    player = session.player(1)
    player.set_voice(VOICE)
    player.play(_track())
    clock.now += 1.5
    assert player.position() == 3000
    player.set_paused(True)
    clock.now += 10
    assert player.position() == 3000
    player.set_paused(False)
    node.set_speed(4.0)
    clock.now += 0.5
    assert player.position() == 5000
    player.set_filters({"timescale": {"speed": 1.5, "rate": 1.0, "pitch": 1.0}})
    clock.now += 1.0
    assert player.position() == 11000
    types = [op.get("type") or op["op"] for op in sent]
    assert types[:4] == ["ready", "playerUpdate", "TrackStartEvent", "playerUpdate"]


async def test_timescale_speed_and_rate_multiply() -> None:
    """Real Lavalink moves the position at speed x rate (pitch changes nothing): nightcore at 1.5x speed."""
    node, session, sent, clock = _setup()
    player = session.player(1)
    player.set_voice(VOICE)
    player.play(_track())
    player.set_filters({"timescale": {"speed": 1.5, "rate": 1.25, "pitch": 1.0}})
    clock.now += 2.0
    assert player.position() == 3750
    player.set_filters({"timescale": {"speed": 1.0, "rate": 1.0, "pitch": 2.0}})
    clock.now += 1.0
    assert player.position() == 4750


async def test_position_is_capped_by_length_and_end_time() -> None:
    node, session, sent, clock = _setup()
    player = session.player(1)
    player.set_voice(VOICE)
    player.play(_track(length=5000), end_time=3000)
    clock.now += 100
    assert player.position() == 3000
    player.set_end_time(None)
    assert player.limit() == 5000


async def test_no_voice_means_no_progress() -> None:
    node, session, sent, clock = _setup()
    player = session.player(1)
    player.play(_track())
    clock.now += 30
    assert player.position() == 0
    assert player.to_response()["state"]["connected"] is False


async def test_paused_resumable_session_queues_events_only() -> None:
    node, session, sent, clock = _setup()
    session.resuming = True
    player = session.player(1)
    player.set_voice(VOICE)
    session.detach([])
    assert session.paused and session.id in node.sessions
    player.play(_track())
    player.stop()
    assert [op["type"] for op in session._queue] == ["TrackStartEvent", "TrackEndEvent"]
    resumed: list[dict[str, Any]] = []
    session.attach(resumed.append, resumed=True)
    assert [op.get("type") or op["op"] for op in resumed] == ["ready", "TrackStartEvent", "TrackEndEvent",
                                                             "playerUpdate"]
    node.destroy_all()


async def test_detach_without_resuming_destroys_the_session() -> None:
    node, session, sent, clock = _setup()
    session.player(1).play(_track())
    session.detach([])
    assert node.sessions == {} and session.players == {}


def test_session_ids() -> None:
    assert session_id_for(1) == session_id_for(1) != session_id_for(2)
    assert len(session_id_for(7)) == 16 and session_id_for(7).isalnum() and session_id_for(7).islower()
