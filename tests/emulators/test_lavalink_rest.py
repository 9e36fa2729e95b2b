"""Emulated Lavalink: REST surface, auth, error shapes, request recording and REST faults."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from sandbox.lavalink import LavalinkEmulator
from tests.emulators.lavalink_client import RawClient

pytestmark = pytest.mark.timeout(60)
ERROR_KEYS = {"timestamp", "status", "error", "message", "path"}


@pytest.fixture
async def ll() -> AsyncIterator[LavalinkEmulator]:
    async with LavalinkEmulator() as emulator:
        yield emulator


@pytest.fixture
async def client(ll: LavalinkEmulator) -> AsyncIterator[RawClient]:
    raw = RawClient(ll)
    await raw.connect()
    yield raw
    await raw.close()


async def test_rest_auth_missing_is_401_and_wrong_is_403(ll: LavalinkEmulator) -> None:
    raw = RawClient(ll, password="wrong")
    try:
        status, body = await raw.rest("GET", "/v4/info")
        assert (status, body) == (403, "")
        status, body = await raw.rest("GET", "/v4/info", headers={"User-Id": "1"})
        assert (status, body) == (401, "")
        status, _ = await raw.rest("GET", "/v4/nonexistent")
        assert status == 403  # auth is checked before routing
        assert ll.unknown_routes == []
    finally:
        await raw.close()


async def test_version_info_stats(client: RawClient) -> None:
    status, text = await client.rest("GET", "/version")
    assert (status, text) == (200, "4.0.8")
    status, info = await client.rest("GET", "/v4/info")
    assert status == 200
    assert info["version"]["semver"] == "4.0.8" and info["version"]["major"] == 4
    assert "youtube" in info["sourceManagers"] and "http" in info["sourceManagers"]
    assert "spotify" not in info["sourceManagers"]
    assert {"buildTime", "git", "jvm", "lavaplayer", "filters", "plugins"} <= set(info)
    status, stats = await client.rest("GET", "/v4/stats")
    assert status == 200
    assert stats["frameStats"] is None
    assert {"players", "playingPlayers", "uptime", "memory", "cpu"} <= set(stats)
    assert "op" not in stats


async def test_load_types(client: RawClient) -> None:
    assert (await client.load("ytsearch:hello world"))["loadType"] == "search"
    assert (await client.load("https://music.example/track/a"))["loadType"] == "track"
    assert (await client.load("https://music.example/playlist/p?n=2"))["loadType"] == "playlist"
    assert (await client.load("https://music.example/missing/x"))["loadType"] == "empty"
    error = await client.load("https://music.example/broken/x")
    assert error["loadType"] == "error" and error["data"]["severity"] == "common"
    status, body = await client.rest("GET", "/v4/loadtracks")
    assert status == 400 and set(body) == ERROR_KEYS


async def test_decodetrack_and_decodetracks(client: RawClient) -> None:
    one = await client.track("https://music.example/track/one")
    two = await client.track("https://youtu.be/dQw4w9WgXcQ")
    status, body = await client.rest("GET", "/v4/decodetrack", params={"encodedTrack": one["encoded"]})
    assert (status, body) == (200, one)
    status, body = await client.rest("POST", "/v4/decodetracks", json=[one["encoded"], two["encoded"]])
    assert (status, body) == (200, [one, two])
    status, body = await client.rest("GET", "/v4/decodetrack", params={"encodedTrack": "not-a-track"})
    assert status == 500 and set(body) == ERROR_KEYS and body["path"] == "/v4/decodetrack"
    status, body = await client.rest("GET", "/v4/decodetrack")
    assert status == 400 and body["message"] == "No track to decode provided"
    status, body = await client.rest("POST", "/v4/decodetracks", json=[])
    assert status == 400 and body["message"] == "No tracks to decode provided"


async def test_patch_session_resuming(client: RawClient) -> None:
    path = f"/v4/sessions/{client.session_id}"
    status, body = await client.rest("PATCH", path, json={"resuming": True, "timeout": 30})
    assert (status, body) == (200, {"resuming": True, "timeout": 30})
    status, body = await client.rest("PATCH", f"/v4/sessions/{client.session_id}", json={"timeout": 5})
    assert body == {"resuming": True, "timeout": 5}
    assert client.ll.sessions[client.session_id]["resuming"] is True
    status, body = await client.rest("PATCH", "/v4/sessions/nosuchsession", json={"resuming": True})
    assert status == 404 and body["message"] == "Session not found"
    assert body["path"] == "/v4/sessions/nosuchsession"


async def test_player_crud_and_errors(client: RawClient) -> None:
    sid = client.session_id
    status, body = await client.rest("GET", f"/v4/sessions/{sid}/players/2000")
    assert status == 404 and body["message"] == "Player not found" and set(body) == ERROR_KEYS
    status, body = await client.patch(2000, {"volume": 50}, no_replace=True)
    assert status == 200
    assert body["guildId"] == "2000" and body["volume"] == 50 and body["track"] is None
    assert body["state"]["connected"] is False and body["state"]["ping"] == -1
    assert body["voice"] == {"token": "", "endpoint": "", "sessionId": ""}
    status, players = await client.rest("GET", f"/v4/sessions/{sid}/players")
    assert status == 200 and [p["guildId"] for p in players] == ["2000"]
    status, body = await client.rest("DELETE", f"/v4/sessions/{sid}/players/2000")
    assert (status, body) == (204, "")
    status, players = await client.rest("GET", f"/v4/sessions/{sid}/players")
    assert players == []
    status, body = await client.rest("PATCH", "/v4/sessions/nope/players/1", json={})
    assert status == 404 and body["message"] == "Session not found"


@pytest.mark.parametrize("body, message", [
    ({"volume": "loud"}, "Failed to read request"),
    ({"track": {"encoded": "x", "identifier": "y"}}, "Cannot specify both encodedTrack and identifier"),
    ({"track": {"encoded": None}, "encodedTrack": None}, "Cannot specify both track and encodedTrack/identifier"),
    ({"voice": {"token": "t", "endpoint": "", "sessionId": "s"}}, None),
    ({"endTime": 0}, "End time must be greater than 0"),
    ({"track": {"identifier": "https://music.example/playlist/x"}}, "Cannot play a playlist or search result"),
    ({"track": {"identifier": "https://music.example/missing/x"}}, "No matches found for identifier"),
])
async def test_patch_validation_errors(client: RawClient, body: dict, message: str | None) -> None:
    status, answer = await client.patch(1, body)
    assert status == 400, answer
    assert set(answer) == ERROR_KEYS
    if message is not None:
        assert answer["message"] == message
    else:
        assert answer["message"].startswith("Partial Lavalink voice state")


async def test_patch_invalid_json_and_query(client: RawClient) -> None:
    url = f"{client.ll.uri}/v4/sessions/{client.session_id}/players/1"
    headers = {**client.headers, "Content-Type": "application/json"}
    async with client.http.patch(url, data=b"{not json", headers=headers) as r:
        assert r.status == 400
    status, _ = await client.rest("PATCH", f"/v4/sessions/{client.session_id}/players/1", json={},
                                  params={"noReplace": "maybe"})
    assert status == 400
    status, _ = await client.rest("PATCH", f"/v4/sessions/{client.session_id}/players/abc", json={})
    assert status == 400
    status, body = await client.rest("PATCH", f"/v4/sessions/{client.session_id}/players/1", json={},
                                     params={"noReplace": "TRUE"})
    assert status == 200


async def test_volume_is_clamped_like_lavaplayer(client: RawClient) -> None:
    assert (await client.patch(1, {"volume": 1500}))[1]["volume"] == 1000
    assert (await client.patch(1, {"volume": -5}))[1]["volume"] == 0
    assert (await client.patch(1, {"volume": 1000}))[1]["volume"] == 1000


async def test_unknown_route_is_404_recorded_and_logged(client: RawClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sandbox.lavalink"):
        status, body = await client.rest("GET", "/v4/teapot", params={"x": "1"})
    assert status == 404 and set(body) == ERROR_KEYS and body["path"] == "/v4/teapot"
    assert client.ll.unknown_routes == [{"method": "GET", "path": "/v4/teapot", "query": {"x": "1"}}]
    assert any("/v4/teapot" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    status, body = await client.rest("POST", "/v4/info")
    assert status == 405 and set(body) == ERROR_KEYS


async def test_requests_are_recorded(client: RawClient) -> None:
    await client.patch(7, {"volume": 42}, no_replace=True)
    record = client.ll.requests[-1]
    assert record["method"] == "PATCH"
    assert record["path"] == f"/v4/sessions/{client.session_id}/players/7"
    assert record["query"] == {"noReplace": "True"}
    assert record["json"] == {"volume": 42}
    assert record["status"] == 200
    assert record["user_id"] == str(client.user_id)
    assert record["session_id"] == client.session_id
    handshake = client.ll.requests[0]
    assert handshake["path"] == "/v4/websocket" and handshake["status"] == 101
    assert handshake["session_id"] == client.session_id


async def test_latency(client: RawClient) -> None:
    client.ll.set_latency(0.4, r"^/v4/info$")
    started = time.monotonic()
    await client.rest("GET", "/v4/info")
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    await client.rest("GET", "/v4/stats")
    assert time.monotonic() - started < 0.3
    client.ll.set_latency(0)
    started = time.monotonic()
    await client.rest("GET", "/v4/info")
    assert time.monotonic() - started < 0.3


async def test_hang_until_unhang(client: RawClient) -> None:
    client.ll.hang("/v4/loadtracks")
    pending = asyncio.create_task(client.load("ytsearch:held"))
    await client.ll.wait_for(lambda: any(r["path"] == "/v4/loadtracks" for r in client.ll.requests))
    await asyncio.sleep(0.3)
    assert not pending.done()
    assert client.ll.requests[-1]["status"] is None
    client.ll.unhang()
    result = await asyncio.wait_for(pending, 5)
    assert result["loadType"] == "search"


async def test_fail_next(client: RawClient) -> None:
    client.ll.fail_next("/v4/loadtracks", status=503, count=2)
    for _ in range(2):
        status, body = await client.rest("GET", "/v4/loadtracks", params={"identifier": "ytsearch:x"})
        assert status == 503 and body["status"] == 503 and body["error"] == "Service Unavailable"
    status, _ = await client.rest("GET", "/v4/loadtracks", params={"identifier": "ytsearch:x"})
    assert status == 200


async def test_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-node-password"
    caplog.set_level(logging.DEBUG)
    async with LavalinkEmulator(password=secret) as ll:
        good = RawClient(ll)
        bad = RawClient(ll, password="wrong-guess")
        try:
            await good.connect()
            await good.rest("GET", "/v4/info")
            await bad.rest("GET", "/v4/info")
            await good.play(1, "https://music.example/track/x?length=1000")
        finally:
            await good.close()
            await bad.close()
        assert secret not in repr(ll)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Authorization failed" in text
    assert secret not in text
