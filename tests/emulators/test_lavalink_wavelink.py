"""Emulated Lavalink driven by the real, unmodified wavelink 3.5.2 client (in-process)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import wavelink

from sandbox.lavalink import LavalinkEmulator

pytestmark = pytest.mark.timeout(60)
BOT_ID = 111_222_333
GUILD = 2000
VOICE = {"sessionId": "vsess", "token": "vtoken", "endpoint": "127.0.0.1:9999", "channelId": "4001"}


class StandInClient:
    """What wavelink needs from a discord.Client: ``user.id`` and ``dispatch``; records the events."""

    def __init__(self) -> None:
        self.user = SimpleNamespace(id=BOT_ID)
        self.dispatched: list[tuple[str, tuple[Any, ...]]] = []

    def dispatch(self, event: str, *args: Any, **kwargs: Any) -> None:
        self.dispatched.append((event, args))

    def events(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.dispatched if event == name]


@pytest.fixture
async def ll() -> AsyncIterator[LavalinkEmulator]:
    async with LavalinkEmulator(speed=10.0, player_update_interval=0.2) as emulator:
        yield emulator


@pytest.fixture
async def pool(ll: LavalinkEmulator) -> AsyncIterator[tuple[wavelink.Node, StandInClient]]:
    client = StandInClient()
    node = wavelink.Node(uri=ll.uri, password=ll.password, identifier="emulated", inactive_player_timeout=None)
    await wavelink.Pool.connect(nodes=[node], client=client)
    await ll.wait_for(lambda: client.events("wavelink_node_ready"))
    yield node, client
    await wavelink.Pool.close()
    getattr(wavelink.Pool, "_Pool__nodes").clear()
    await node._session.close()


async def test_connect_ready_then_session_patch_and_info(ll: LavalinkEmulator, pool) -> None:
    node, client = pool
    assert node.status is wavelink.NodeStatus.CONNECTED
    (payload,) = client.events("wavelink_node_ready")[0]
    assert payload.resumed is False and payload.session_id == node.session_id
    paths = [(r["method"], r["path"]) for r in ll.requests]
    assert paths[:3] == [("GET", "/v4/websocket"), ("PATCH", f"/v4/sessions/{node.session_id}"), ("GET", "/v4/info")]
    assert ll.requests[1]["json"] == {"resuming": True, "timeout": 60}
    assert ll.requests[0]["user_id"] == str(BOT_ID)
    session = ll.sessions[node.session_id]
    assert session["client_name"] == "Wavelink/3.5.2" and session["resuming"] is True
    assert session["client_ready"] is True
    assert await node.fetch_version() == "4.0.8"
    assert (await node.fetch_info()).version.major == 4
    assert (await node.fetch_stats()).players == 0


async def test_fetch_tracks_every_load_type(pool) -> None:
    search = await wavelink.Pool.fetch_tracks("ytsearch:wavelink test")
    assert len(search) == 5 and search[0].title == "Wavelink Test (Official Audio)"
    searched = await wavelink.Playable.search("plain text query")  # wavelink adds ytsearch:
    assert len(searched) == 5 and searched[0].source == "youtube"
    [track] = await wavelink.Pool.fetch_tracks("https://music.example/track/hello world?length=3000")
    assert track.length == 3000
    playlist = await wavelink.Pool.fetch_tracks("https://music.example/playlist/mix?n=4")
    assert isinstance(playlist, wavelink.Playlist) and len(playlist) == 4
    assert await wavelink.Pool.fetch_tracks("https://music.example/missing/x") == []
    with pytest.raises(wavelink.LavalinkLoadException):
        await wavelink.Pool.fetch_tracks("https://music.example/broken/x")


async def test_play_to_track_end_through_node_requests(ll: LavalinkEmulator, pool) -> None:
    """The exact requests wavelink's Player makes (voice, then play), without a Discord voice channel."""
    node, client = pool
    [track] = await wavelink.Pool.fetch_tracks("https://music.example/track/tiny?length=2000")
    await node._update_player(GUILD, data={"voice": VOICE})
    request = {"track": {"encoded": track.encoded, "userData": {}}, "volume": 100, "position": 0,
               "endTime": None, "paused": False, "filters": wavelink.Filters()()}
    response = await node._update_player(GUILD, data=request, replace=True)
    # A playing track's encoding carries its live position (as lavaplayer's does): same track, position >= 0.
    answered, position = ll.catalogue.decode(response["track"]["encoded"])
    assert answered == ll.catalogue.decode(track.encoded)[0] and position >= 0
    assert ll.requests[-1]["query"] == {"noReplace": "False"}
    await ll.wait_for(lambda: client.events("wavelink_track_end"), timeout=5)
    (start,) = client.events("wavelink_track_start")[0]
    assert start.track == track
    (end,) = client.events("wavelink_track_end")[0]
    assert end.reason == "finished" and end.track == track
    assert client.events("wavelink_player_update")
    info = await node.fetch_player_info(GUILD)
    assert info is not None and info.track is None and info.state.connected is True
    await node._destroy_player(GUILD)
    assert await node.fetch_player_info(GUILD) is None


async def test_wrong_password_is_refused(ll: LavalinkEmulator, caplog: pytest.LogCaptureFixture) -> None:
    client = StandInClient()
    node = wavelink.Node(uri=ll.uri, password="wrong", identifier="bad", inactive_player_timeout=None)
    try:
        with caplog.at_level(logging.ERROR, logger="wavelink.node"):
            nodes = await wavelink.Pool.connect(nodes=[node], client=client)
        assert "bad" not in nodes
        assert node.status is wavelink.NodeStatus.DISCONNECTED
        assert any("Failed to authenticate" in r.getMessage() for r in caplog.records)
    finally:
        getattr(wavelink.Pool, "_Pool__nodes").clear()
        await node._session.close()


async def test_dropped_socket_reconnects_and_resumes(ll: LavalinkEmulator, pool) -> None:
    node, client = pool
    old_session = node.session_id
    await ll.drop_connections()
    await ll.wait_for(lambda: len(client.events("wavelink_node_ready")) == 2, timeout=10)
    (payload,) = client.events("wavelink_node_ready")[1]
    assert payload.resumed is True and payload.session_id == old_session
    assert client.events("wavelink_node_disconnected")


async def test_restart_close_frame_hits_wavelinks_known_gotcha(ll: LavalinkEmulator, pool) -> None:
    """Real Lavalink sends a 1001 close frame on shutdown; wavelink 3.5.2 then stops reading without
    reconnecting (wire-protocols.md section 0, gotcha 3). The emulator must reproduce it, not hide it."""
    node, client = pool
    await ll.restart(downtime=0.2, wait=True)
    await asyncio.sleep(1.0)
    assert len(client.events("wavelink_node_ready")) == 1  # no reconnect happened
    assert node.status is wavelink.NodeStatus.CONNECTED  # ...and wavelink still believes it is connected
    assert ll.sessions == {}
