"""Emulated Lavalink: REST surface, auth, error shapes, request recording and REST faults."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from sandbox.lavalink import LavalinkEmulator
from sandbox.lavalink_codec import MISSING_SOURCE
from tests.emulators.lavalink_client import RawClient
from tests.emulators.test_lavalink_codec import HARUHI, HARUHI_INFO

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
        assert ll.unimplemented == []
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
    # Lavalink's decodeTrack throws (here Base64's IllegalArgumentException) and no handler catches it.
    assert status == 500 and set(body) == ERROR_KEYS and body["path"] == "/v4/decodetrack"
    assert body["message"] == "Illegal base64 character 2d" and body["error"] == "Internal Server Error"
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


async def test_unimplemented_routes_are_501_recorded_and_logged(client: RawClient,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sandbox.lavalink"):
        status, body = await client.rest("GET", "/v4/routeplanner/status", params={"x": "1"})
        status_405, body_405 = await client.rest("POST", "/v4/info")
    # Not a plausible "not found": a status no Lavalink route answers, so a client cannot take it for one.
    assert status == 501 and set(body) == ERROR_KEYS and body["path"] == "/v4/routeplanner/status"
    assert body["message"] == "sandbox: route not emulated: GET /v4/routeplanner/status"
    assert status_405 == 501 and body_405["message"] == "sandbox: route not emulated: POST /v4/info"
    assert client.ll.unimplemented == [{"method": "GET", "path": "/v4/routeplanner/status", "query": {"x": "1"}},
                                       {"method": "POST", "path": "/v4/info", "query": {}}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("GET /v4/routeplanner/status" in w for w in warnings)
    assert any("POST /v4/info" in w for w in warnings)


async def test_every_response_carries_the_api_version_header(ll: LavalinkEmulator, client: RawClient) -> None:
    async def header(method: str, path: str, **kwargs) -> str | None:
        async with client.http.request(method, f"{ll.uri}{path}", **kwargs) as resp:
            return resp.headers.get("Lavalink-Api-Version")

    assert await header("GET", "/v4/info", headers=client.headers) == "4"
    assert await header("GET", "/version", headers=client.headers) == "4"
    assert await header("GET", "/v4/info") == "4"  # 401
    assert await header("GET", "/v4/decodetrack", params={"encodedTrack": "x"}, headers=client.headers) == "4"
    assert await header("DELETE", f"/v4/sessions/{client.session_id}/players/5", headers=client.headers) == "4"
    assert client.ws is not None and client.ws._response.headers.get("Lavalink-Api-Version") == "4"
    ll.fail_next("/v4/stats", status=503)
    assert await header("GET", "/v4/stats", headers=client.headers) == "4"
    await header("GET", "/v4/nothing-here", headers=client.headers)
    ll.unimplemented.clear()  # hit on purpose


async def test_decodes_a_track_the_catalogue_never_made(client: RawClient) -> None:
    status, body = await client.rest("GET", "/v4/decodetrack", params={"encodedTrack": HARUHI})
    assert status == 200, body
    assert body == {"encoded": HARUHI, "info": HARUHI_INFO, "pluginInfo": {}, "userData": {}}
    await client.voice(3000)
    status, player = await client.patch(3000, {"track": {"encoded": HARUHI}})
    assert status == 200 and player["track"]["info"]["title"] == HARUHI_INFO["title"]


async def test_a_track_carries_its_position_and_starts_there(client: RawClient) -> None:
    await client.voice(3000)
    await client.play(3000, "https://music.example/track/long?length=600000", position=42_000)
    status, player = await client.rest("GET", f"/v4/sessions/{client.session_id}/players/3000")
    at_42 = player["track"]["encoded"]
    status, decoded = await client.rest("GET", "/v4/decodetrack", params={"encodedTrack": at_42})
    assert decoded["info"]["position"] >= 42_000
    status, player = await client.patch(3001, {"track": {"encoded": at_42}})  # no "position": lavaplayer's
    assert status == 200 and player["track"]["info"]["position"] >= 42_000


@pytest.mark.parametrize("encoded, message", [
    ("QAAApwMAC0V4cGxv", "No message available"),  # truncated: EOFException
    ("QAAA AAA", "Illegal base64 character 20"),
])
async def test_playing_a_broken_track_fails_like_lavalink(client: RawClient, encoded: str, message: str) -> None:
    status, body = await client.patch(1, {"track": {"encoded": encoded}})
    assert status == 500 and set(body) == ERROR_KEYS and body["message"] == message
    assert client.ll.player(client.user_id, 1)["track"] is None


async def test_playing_an_identifier_that_fails_to_load_is_400(client: RawClient) -> None:
    status, body = await client.patch(1, {"track": {"identifier": "https://music.example/broken/bad"}})
    assert status == 400 and set(body) == ERROR_KEYS
    assert body["message"] == "Track 'bad' is unavailable."
    status, body = await client.patch(1, {"track": {"identifier": "https://elsewhere.example/x.mp3"}})
    assert status == 400 and body["message"] == "Connecting to the URL failed."


async def test_upgrade_rejects_tracks_encoded_before(client: RawClient) -> None:
    url = "https://music.example/track/before-upgrade"
    old = await client.track(url)
    await client.voice(1)
    client.ll.upgrade()
    status, body = await client.patch(1, {"track": {"encoded": old["encoded"]}})
    assert status == 500 and body["message"] == MISSING_SOURCE
    status, body = await client.rest("POST", "/v4/decodetracks", json=[old["encoded"]])
    assert status == 500 and body["message"] == MISSING_SOURCE
    new = await client.track(url)
    assert new["encoded"] != old["encoded"] and new["info"] == old["info"]
    status, player = await client.patch(1, {"track": {"encoded": new["encoded"]}})
    assert status == 200 and player["track"]["info"]["uri"] == url


async def test_upgrade_during_a_restart(ll: LavalinkEmulator) -> None:
    raw = RawClient(ll)
    try:
        await raw.connect()
        old = await raw.track("https://music.example/track/song")
        await ll.restart(0.2, upgrade=True, wait=True)
        await raw.connect()  # the old session is gone, as after any restart
        await raw.voice(1)
        status, body = await raw.patch(1, {"track": {"encoded": old["encoded"]}})
        assert status == 500 and body["message"] == MISSING_SOURCE
        await raw.play(1, "https://music.example/track/song")
    finally:
        await raw.close()


async def test_unknown_filter_keys_are_dropped_and_fields_filled(client: RawClient) -> None:
    filters = {"timescale": {"speed": 1.5, "bogus": 1}, "echo": {"delay": 1}, "karaoke": None,
               "pluginFilters": {"not-installed": {"x": 1}}, "volume": 0.5,
               "equalizer": [{"band": 0, "gain": 0.2}, {"band": 1}]}
    status, player = await client.patch(1, {"filters": filters}, no_replace=True)
    assert status == 200
    expected = {"timescale": {"speed": 1.5, "pitch": 1.0, "rate": 1.0}, "volume": 0.5,
                "equalizer": [{"band": 0, "gain": 0.2}, {"band": 1, "gain": 1.0}]}
    assert player["filters"] == expected
    assert client.ll.player(client.user_id, 1)["filters"] == expected
    status, body = await client.patch(1, {"filters": {"timescale": {"speed": "fast"}}}, no_replace=True)
    assert status == 400 and body["message"] == "Failed to read request"


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


async def test_a_fleet_that_hit_an_unemulated_route_fails_at_teardown(tmp_path_factory) -> None:
    from tests.e2e.fleet import running_fleet

    with pytest.raises(AssertionError, match="/v4/routeplanner/free/all"):
        async with running_fleet(tmp_path_factory, 0) as fleet:
            raw = RawClient(fleet.lavalink)
            try:
                status, _ = await raw.rest("POST", "/v4/routeplanner/free/all")
                assert status == 501
            finally:
                await raw.close()
    async with running_fleet(tmp_path_factory, 0):
        pass  # and one that did not passes
