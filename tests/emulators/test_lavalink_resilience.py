"""Emulated Lavalink: session resuming, dropped sockets, close frames and node restarts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.lavalink import LavalinkEmulator
from tests.emulators.lavalink_client import RawClient

pytestmark = pytest.mark.timeout(60)
GUILD = 2000


@pytest.fixture
async def ll() -> AsyncIterator[LavalinkEmulator]:
    async with LavalinkEmulator(speed=10.0, player_update_interval=0.2) as emulator:
        yield emulator


async def _resumable_client(ll: LavalinkEmulator, timeout: int) -> RawClient:
    raw = RawClient(ll)
    await raw.connect()
    body = {"resuming": True, "timeout": timeout}
    status, body = await raw.rest("PATCH", f"/v4/sessions/{raw.session_id}", json=body)
    assert status == 200, body
    await raw.voice(GUILD)
    return raw


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_resume_within_timeout_keeps_players_and_replays_events(ll: LavalinkEmulator) -> None:
    raw = await _resumable_client(ll, timeout=10)
    try:
        old_session = raw.session_id
        await raw.play(GUILD, "https://music.example/track/short?length=3000")
        await raw.drop_socket()
        await ll.wait_for(lambda: ll.sessions[old_session]["paused"])
        # while disconnected the REST API does not know the session (Lavalink only looks at live sessions)
        status, body = await raw.rest("GET", f"/v4/sessions/{old_session}/players")
        assert status == 404 and body["message"] == "Session not found"
        await asyncio.sleep(0.6)  # the track finishes while nobody listens
        assert ll.player(raw.user_id, GUILD)["track"] is None
        ready = await raw.connect(session_id=old_session)
        assert ready == {"op": "ready", "resumed": True, "sessionId": old_session}
        assert raw.resumed_header == "true"
        end = await raw.next_op("event", "TrackEndEvent")
        assert end["reason"] == "finished"
        await raw.next_op("playerUpdate")  # one per player after the replay
        kinds = [m.json().get("type") or m.json()["op"] for m in raw.messages if m.type is aiohttp.WSMsgType.TEXT]
        assert kinds[:3] == ["ready", "TrackEndEvent", "playerUpdate"]
        status, players = await raw.rest("GET", f"/v4/sessions/{old_session}/players")
        assert status == 200 and [p["guildId"] for p in players] == [str(GUILD)]
    finally:
        await raw.close()


async def test_players_keep_playing_while_disconnected(ll: LavalinkEmulator) -> None:
    raw = await _resumable_client(ll, timeout=10)
    try:
        await raw.play(GUILD, "https://music.example/track/long?length=600000")
        await raw.drop_socket()
        before = ll.player(raw.user_id, GUILD)["position"]
        await asyncio.sleep(0.3)
        assert ll.player(raw.user_id, GUILD)["position"] > before
    finally:
        await raw.close()


async def test_resume_after_timeout_gets_a_new_session(ll: LavalinkEmulator) -> None:
    raw = await _resumable_client(ll, timeout=1)
    try:
        old_session = raw.session_id
        await raw.play(GUILD, "https://music.example/track/long?length=600000")
        await raw.drop_socket()
        await ll.wait_for(lambda: old_session not in ll.sessions, timeout=5)
        assert ll.player(raw.user_id, GUILD) is None
        ready = await raw.connect(session_id=old_session)
        assert ready["resumed"] is False and ready["sessionId"] != old_session
        assert raw.resumed_header == "false"
    finally:
        await raw.close()


async def test_without_resuming_a_dropped_socket_destroys_the_session(ll: LavalinkEmulator) -> None:
    raw = RawClient(ll)
    try:
        await raw.connect()
        await raw.voice(GUILD)
        session = raw.session_id
        await raw.drop_socket()
        await ll.wait_for(lambda: session not in ll.sessions, timeout=3)
        assert ll.players_of(raw.user_id) == {}
    finally:
        await raw.close()


async def test_restart_sends_close_frame_loses_state_and_closes_port(ll: LavalinkEmulator) -> None:
    raw = RawClient(ll)
    try:
        await raw.connect()
        await raw.voice(GUILD)
        await raw.play(GUILD, "https://music.example/track/long?length=600000")
        port = ll.port
        await ll.restart(downtime=1.0)  # returns once the node is down
        closed = await raw.wait_closed()
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1001
        assert not ll.running and not _port_open(port)
        assert ll.sessions == {} and ll.players_of(raw.user_id) == {}
        await asyncio.sleep(0.5)
        assert not _port_open(port)
        await ll.wait_until_up(timeout=5)
        assert ll.running and ll.port == port and _port_open(port)
        ready = await raw.connect(session_id=raw.session_id)
        assert ready["resumed"] is False
        status, _ = await raw.rest("GET", "/v4/info")
        assert status == 200
    finally:
        await raw.close()


async def test_restart_drops_resumable_sessions_too(ll: LavalinkEmulator) -> None:
    raw = await _resumable_client(ll, timeout=60)
    try:
        old = raw.session_id
        await ll.restart(downtime=0.1, wait=True)
        ready = await raw.connect(session_id=old)
        assert ready["resumed"] is False
    finally:
        await raw.close()


async def test_drop_connections_has_no_close_frame_and_keeps_resumable_sessions(ll: LavalinkEmulator) -> None:
    raw = await _resumable_client(ll, timeout=10)
    try:
        await ll.drop_connections()
        closed = await raw.wait_closed()
        assert closed.type is not aiohttp.WSMsgType.CLOSE
        assert ll.sessions[raw.session_id]["paused"] is True
        ready = await raw.connect(session_id=raw.session_id)
        assert ready["resumed"] is True
    finally:
        await raw.close()


async def test_close_websocket_for_one_user(ll: LavalinkEmulator) -> None:
    one, two = RawClient(ll, user_id=1), RawClient(ll, user_id=2)
    try:
        await one.connect()
        await two.connect()
        await ll.close_websocket(1, code=4000)
        closed = await one.wait_closed()
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4000
        assert [s["user_id"] for s in ll.sessions.values()] == [2]
        assert two.ws is not None and not two.ws.closed
    finally:
        await one.close()
        await two.close()
