"""Emulated Lavalink: websocket handshake and the playback clock with its events."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.catalogue import Catalogue
from sandbox.lavalink import LavalinkEmulator
from tests.emulators.lavalink_client import RawClient

pytestmark = pytest.mark.timeout(60)
GUILD = 2000


def same_track_at(payload: dict, loaded: dict) -> int:
    """``payload`` is ``loaded`` (the loadtracks Track) at some position; returns the position.

    A real node encodes a playing track with its current position (lavaplayer writes it last), so the
    ``encoded`` of events differs from the loaded one once the track has moved.
    """
    track, position = Catalogue().decode(payload["encoded"])
    assert track == Catalogue().decode(loaded["encoded"])[0]
    assert position == payload["info"]["position"]
    return position


@pytest.fixture
async def ll() -> AsyncIterator[LavalinkEmulator]:
    async with LavalinkEmulator(speed=10.0, player_update_interval=0.2, stats_interval=0.5) as emulator:
        yield emulator


@pytest.fixture
async def client(ll: LavalinkEmulator) -> AsyncIterator[RawClient]:
    raw = RawClient(ll)
    await raw.connect()
    await raw.voice(GUILD)
    yield raw
    await raw.close()


async def test_handshake_ready_and_stats(ll: LavalinkEmulator) -> None:
    raw = RawClient(ll, user_id=555)
    try:
        ready = await raw.connect()
        assert ready == {"op": "ready", "resumed": False, "sessionId": raw.session_id}
        assert re.fullmatch(r"[a-z0-9]{16}", raw.session_id)
        assert raw.resumed_header == "false"
        assert raw.messages[0].json()["op"] == "ready"  # ready is the very first message
        stats = await raw.next_op("stats", timeout=2)
        assert {"players", "playingPlayers", "uptime", "memory", "cpu", "frameStats"} <= set(stats)
        await raw.next_op("stats", index=1, timeout=3)  # periodic
        info = ll.sessions[raw.session_id]
        assert info["user_id"] == 555 and info["client_name"] == "RawClient/1.0" and info["connected"] is True
        assert info["client_ready"] is False  # wavelink fetches /v4/info before it calls itself ready
        await raw.rest("GET", "/v4/info")
        assert ll.sessions[raw.session_id]["client_ready"] is True
    finally:
        await raw.close()


async def test_handshake_rejections(ll: LavalinkEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
            await http.ws_connect(f"{ll.uri}/v4/websocket", headers={"Authorization": "nope", "User-Id": "1"})
        assert wrong.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as no_user:
            await http.ws_connect(f"{ll.uri}/v4/websocket", headers={"Authorization": ll.password})
        assert no_user.value.status == 400
    assert ll.sessions == {}


async def test_session_ids_are_deterministic() -> None:
    ids = []
    for _ in range(2):
        async with LavalinkEmulator() as emulator:
            raw = RawClient(emulator)
            await raw.connect()
            ids.append(raw.session_id)
            await raw.close()
    assert ids[0] == ids[1]


async def test_play_start_updates_and_finish(client: RawClient) -> None:
    ll = client.ll
    started = time.monotonic()
    track = await client.play(GUILD, "https://music.example/track/short?length=4000")
    start = await client.next_op("event", "TrackStartEvent")
    assert start["guildId"] == str(GUILD) and start["track"]["encoded"] == track["encoded"]
    first_update = await client.next_op("playerUpdate", index=1)  # index 0 came from the voice PATCH
    assert first_update["state"]["connected"] is True
    end = await client.next_op("event", "TrackEndEvent", timeout=5)
    elapsed = time.monotonic() - started
    assert end["reason"] == "finished" and same_track_at(end["track"], track) == 4000
    assert 0.3 <= elapsed <= 3.0  # 4000 ms at speed 10
    positions = [u["state"]["position"] for u in client.ops("playerUpdate")[1:]]
    assert positions == sorted(positions) and positions[-1] > 0
    order = [m.json().get("type") or m.json()["op"] for m in client.messages if m.type is aiohttp.WSMsgType.TEXT]
    assert order.index("TrackStartEvent") < order.index("TrackEndEvent")
    assert ll.player(client.user_id, GUILD)["track"] is None
    assert (await ll.wait_for_event("TrackEndEvent", user_id=client.user_id, guild_id=GUILD))["reason"] == "finished"


async def test_position_advances_at_speed(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/track/long?length=600000")
    await asyncio.sleep(0.5)
    position = client.ll.player(client.user_id, GUILD)["position"]
    assert 4000 <= position <= 10000  # ~0.5 s * speed 10
    update = await client.next_op("playerUpdate", index=3)
    assert update["state"]["position"] > 0


async def test_pause_stops_the_clock_and_resume_continues(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/track/long?length=600000")
    await asyncio.sleep(0.2)
    status, body = await client.patch(GUILD, {"paused": True}, no_replace=True)
    assert body["paused"] is True
    frozen = client.ll.player(client.user_id, GUILD)["position"]
    await asyncio.sleep(0.3)
    assert client.ll.player(client.user_id, GUILD)["position"] == frozen
    await client.patch(GUILD, {"paused": False}, no_replace=True)
    await asyncio.sleep(0.2)
    assert client.ll.player(client.user_id, GUILD)["position"] > frozen


async def test_seek_and_seek_past_end(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/track/seekable?length=60000")
    status, body = await client.patch(GUILD, {"position": 30000}, no_replace=True)
    assert status == 200 and body["state"]["position"] >= 30000
    assert 30000 <= client.ll.player(client.user_id, GUILD)["position"] < 35000
    await client.patch(GUILD, {"position": 90000}, no_replace=True)
    end = await client.next_op("event", "TrackEndEvent", timeout=2)
    assert end["reason"] == "finished"


async def test_seek_on_stream_is_ignored(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/stream/radio")
    status, _ = await client.patch(GUILD, {"position": 500_000}, no_replace=True)
    assert status == 200
    assert client.ll.player(client.user_id, GUILD)["position"] < 100_000


async def test_replace_stop_and_no_replace(client: RawClient) -> None:
    first = await client.play(GUILD, "https://music.example/track/first?length=600000")
    second = await client.play(GUILD, "https://music.example/track/second?length=600000")
    replaced = await client.next_op("event", "TrackEndEvent")
    assert replaced["reason"] == "replaced" and same_track_at(replaced["track"], first) >= 0
    start2 = await client.next_op("event", "TrackStartEvent", index=1)
    assert start2["track"]["encoded"] == second["encoded"]
    events = [o["type"] for o in client.ops("event")]
    assert events == ["TrackStartEvent", "TrackEndEvent", "TrackStartEvent"]
    third = await client.track("https://music.example/track/third")
    status, body = await client.patch(GUILD, {"track": {"encoded": third["encoded"]}}, no_replace=True)
    assert status == 200 and same_track_at(body["track"], second) > 0
    status, body = await client.patch(GUILD, {"track": {"encoded": None}})
    assert status == 200 and body["track"] is None
    stopped = await client.next_op("event", "TrackEndEvent", index=1)
    assert stopped["reason"] == "stopped" and same_track_at(stopped["track"], second) > 0


async def test_play_by_identifier_and_user_data(client: RawClient) -> None:
    status, body = await client.patch(GUILD, {"track": {"identifier": "https://youtu.be/abcdefghijk",
                                                        "userData": {"requester": 7}}})
    assert status == 200
    assert body["track"]["info"]["identifier"] == "abcdefghijk"
    assert body["track"]["userData"] == {"requester": 7}
    start = await client.next_op("event", "TrackStartEvent")
    assert start["track"]["userData"] == {"requester": 7}


async def test_explode_track(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/track/explode-boom")
    exception = await client.next_op("event", "TrackExceptionEvent")
    assert exception["exception"]["severity"] == "fault"
    assert {"message", "severity", "cause"} <= set(exception["exception"])
    end = await client.next_op("event", "TrackEndEvent")
    assert end["reason"] == "loadFailed"
    assert [o["type"] for o in client.ops("event")] == ["TrackStartEvent", "TrackExceptionEvent", "TrackEndEvent"]


async def test_stuck_track_reports_after_its_threshold_without_progress(client: RawClient) -> None:
    ll = client.ll
    ll.stuck_threshold_ms = 1500
    await client.play(GUILD, "https://music.example/track/stuck-forever?length=60000")
    await ll.wait_for(lambda: ll.player(client.user_id, GUILD)["frozen"], timeout=3)  # 1 s of track at speed 10
    frozen_at = time.monotonic()
    stuck = await client.next_op("event", "TrackStuckEvent", timeout=6)
    waited = time.monotonic() - frozen_at
    assert stuck["thresholdMs"] == 1500
    assert waited >= 1.5 - 0.05, waited  # no earlier than the threshold it reports
    frozen = ll.player(client.user_id, GUILD)
    assert frozen["stuck"] is True and frozen["position"] == 1000
    await asyncio.sleep(0.3)
    assert ll.player(client.user_id, GUILD)["position"] == frozen["position"]
    assert client.ops("event", "TrackEndEvent") == []


async def test_stuck_wait_only_counts_while_playing(client: RawClient) -> None:
    ll = client.ll
    ll.stuck_threshold_ms = 1000
    await client.play(GUILD, "https://music.example/track/stuck-paused?length=60000")
    await ll.wait_for(lambda: ll.player(client.user_id, GUILD)["frozen"], timeout=3)
    await client.patch(GUILD, {"paused": True}, no_replace=True)
    await asyncio.sleep(1.5)  # longer than the threshold, but paused: nobody asks for audio
    assert client.ops("event", "TrackStuckEvent") == []
    await client.patch(GUILD, {"paused": False}, no_replace=True)
    resumed_at = time.monotonic()
    await client.next_op("event", "TrackStuckEvent", timeout=5)
    assert time.monotonic() - resumed_at >= 1.0 - 0.05


async def test_end_time(client: RawClient) -> None:
    started = time.monotonic()
    await client.play(GUILD, "https://music.example/track/long?length=600000", endTime=3000)
    end = await client.next_op("event", "TrackEndEvent", timeout=3)
    assert end["reason"] == "finished"
    assert time.monotonic() - started < 3.0
    await client.play(GUILD, "https://music.example/track/long?length=600000")
    await client.patch(GUILD, {"endTime": 2000}, no_replace=True)
    end = await client.next_op("event", "TrackEndEvent", index=1, timeout=3)
    assert end["reason"] == "finished"


async def test_delete_playing_player_sends_stopped(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/track/long?length=600000")
    status, _ = await client.rest("DELETE", f"/v4/sessions/{client.session_id}/players/{GUILD}")
    assert status == 204
    end = await client.next_op("event", "TrackEndEvent")
    assert end["reason"] == "stopped"
    assert client.ll.player(client.user_id, GUILD) is None


async def test_without_voice_nothing_advances_then_cleanup() -> None:
    async with LavalinkEmulator(speed=10.0, cleanup_threshold=0.5) as ll:
        raw = RawClient(ll)
        try:
            await raw.connect()
            await raw.play(3000, "https://music.example/track/silent?length=600000")
            await raw.next_op("event", "TrackStartEvent")
            await asyncio.sleep(0.2)
            snapshot = ll.player(raw.user_id, 3000)
            assert snapshot["position"] == 0 and snapshot["connected"] is False
            end = await raw.next_op("event", "TrackEndEvent", timeout=3)
            assert end["reason"] == "cleanup"
        finally:
            await raw.close()


async def test_set_speed_and_timescale(client: RawClient) -> None:
    client.ll.set_speed(0.0)
    await client.play(GUILD, "https://music.example/track/long?length=600000")
    await asyncio.sleep(0.2)
    assert client.ll.player(client.user_id, GUILD)["position"] == 0
    client.ll.set_speed(20.0)
    await asyncio.sleep(0.25)
    fast = client.ll.player(client.user_id, GUILD)["position"]
    assert 3000 <= fast <= 12000
    client.ll.set_speed(10.0)
    await client.patch(GUILD, {"filters": {"timescale": {"speed": 2.0, "pitch": 1.0, "rate": 1.0}}}, no_replace=True)
    before = client.ll.player(client.user_id, GUILD)["position"]
    await asyncio.sleep(0.25)
    gained = client.ll.player(client.user_id, GUILD)["position"] - before
    assert 3000 <= gained <= 12000  # 0.25 s * 10 * 2


async def test_events_log_carries_session_and_user(client: RawClient) -> None:
    await client.play(GUILD, "https://music.example/track/x?length=1000")
    event = await client.ll.wait_for_event("TrackEndEvent", user_id=client.user_id, guild_id=GUILD, timeout=3)
    assert event["session_id"] == client.session_id and event["user_id"] == client.user_id
    assert isinstance(event["sent_at"], float)
    mark = len(client.ll.events)
    with pytest.raises(TimeoutError):
        await client.ll.wait_for_event("TrackEndEvent", user_id=client.user_id, start=mark, timeout=0.3)
