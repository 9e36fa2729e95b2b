"""The emulated node's LavaLyrics plugin: its two REST routes as the plugin answers them, and a node without it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.lavalink import LavalinkEmulator
from tests.emulators.lavalink_client import RawClient

pytestmark = pytest.mark.timeout(60)
SONG = "https://music.example/track/golden-harbor?length=60000"


@pytest.fixture
async def ll() -> AsyncIterator[LavalinkEmulator]:
    async with LavalinkEmulator() as emulator:
        yield emulator
    assert emulator.unimplemented == []


@pytest.fixture
async def client(ll: LavalinkEmulator) -> AsyncIterator[RawClient]:
    raw = RawClient(ll)
    await raw.connect()
    yield raw
    await raw.close()


async def test_info_lists_the_plugin_only_when_installed(ll: LavalinkEmulator, client: RawClient) -> None:
    _, info = await client.rest("GET", "/v4/info")
    assert info["plugins"] == [{"name": "lavalyrics-plugin", "version": "1.0.0"}]
    ll.lyrics.installed = False
    _, info = await client.rest("GET", "/v4/info")
    assert info["plugins"] == []


async def test_current_track_lyrics_are_synced_lines(client: RawClient) -> None:
    path = f"/v4/sessions/{client.session_id}/players/7/track/lyrics"
    status, body = await client.rest("GET", path)
    assert (status, body["message"]) == (404, "Player not found")
    await client.voice(7)
    status, body = await client.rest("GET", path, params={"skipTrackSource": "false"})
    assert (status, body["message"]) == (404, "No track playing")
    await client.play(7, SONG)
    status, lyrics = await client.rest("GET", path, params={"skipTrackSource": "false"})
    assert status == 200
    assert set(lyrics) == {"sourceName", "provider", "text", "lines", "plugin"} and lyrics["text"] is None
    stamps = [line["timestamp"] for line in lyrics["lines"]]
    assert stamps[0] == 8000 and stamps == sorted(stamps) and stamps[-1] == 52000 and len(stamps) == 12
    assert all(set(line) == {"timestamp", "duration", "line", "plugin"} and line["line"] for line in lyrics["lines"])
    status, body = await client.rest("GET", path, params={"skipTrackSource": "maybe"})
    assert status == 400 and "Invalid boolean value [maybe]" in body["message"]
    status, body = await client.rest("GET", "/v4/sessions/nope/players/7/track/lyrics")
    assert (status, body["message"]) == (404, "Session not found")


async def test_lyrics_by_encoded_track_none_found_plain_and_errors(ll: LavalinkEmulator, client: RawClient) -> None:
    song = await client.track(SONG)
    status, lyrics = await client.rest("GET", "/v4/lyrics", params={"track": song["encoded"]})
    assert status == 200 and lyrics["lines"][0]["timestamp"] == 8000
    instrumental = await client.track("https://music.example/track/instrumental-jam")
    status, body = await client.rest("GET", "/v4/lyrics", params={"track": instrumental["encoded"]})
    assert (status, body) == (204, "")  # the plugin's ResponseEntity.noContent()
    plain = await client.track("https://music.example/track/plain-words")
    status, lyrics = await client.rest("GET", "/v4/lyrics", params={"track": plain["encoded"]})
    assert status == 200 and lyrics["lines"] is None and lyrics["text"].count("\n") > 10
    ll.lyrics.set_lyrics(song["info"]["identifier"], None)
    status, _ = await client.rest("GET", "/v4/lyrics", params={"track": song["encoded"]})
    assert status == 204
    status, body = await client.rest("GET", "/v4/lyrics")
    assert status == 400 and body["message"].startswith("Required request parameter 'track'")
    status, body = await client.rest("GET", "/v4/lyrics", params={"track": "AAAA"})
    assert status == 500


async def test_a_node_without_the_plugin_has_no_such_endpoint(ll: LavalinkEmulator, client: RawClient) -> None:
    ll.lyrics.installed = False
    song = await client.track(SONG)
    status, body = await client.rest("GET", "/v4/lyrics", params={"track": song["encoded"]})
    assert status == 404
    assert body["error"] == "Not Found" and body["message"] == "No endpoint GET /v4/lyrics."
    assert body["path"] == "/v4/lyrics"
    await client.voice(7)
    await client.play(7, SONG)
    path = f"/v4/sessions/{client.session_id}/players/7/track/lyrics"
    status, body = await client.rest("GET", path)
    assert (status, body["message"]) == (404, f"No endpoint GET {path}.")
