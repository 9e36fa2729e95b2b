"""The Lavalink node plays only with the voice credentials the emulated Discord issued (Sandbox wiring).

Discord's voice close codes (docs: "Voice Close Event Codes"): 4004 authentication failed, 4006 session no
longer valid, 4014 disconnected (kicked, channel deleted); 1006 is a connection lost without a close frame.
Lavalink reports each as WebSocketClosedEvent followed by a playerUpdate with connected false.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.control import Sandbox
from tests.emulators.discord_helpers import RawGateway, raw_gateway
from tests.emulators.lavalink_client import RawClient

pytestmark = pytest.mark.timeout(60)

LONG = "https://music.example/track/long?length=600000"


@dataclass
class Voiced:
    """A bot in a voice channel: its raw gateway, its raw Lavalink client and the credentials Discord gave."""

    sb: Sandbox
    app: Any
    guild_id: int
    voice_ids: dict[str, int]
    gw: RawGateway
    ll: RawClient
    voice: dict[str, str]  # what wavelink would PATCH: token, endpoint, sessionId (+ channelId)


async def _join(gw: RawGateway, guild_id: int, channel_id: int) -> dict[str, str]:
    await gw.send(4, {"guild_id": guild_id, "channel_id": channel_id, "self_mute": False, "self_deaf": True})
    state = (await gw.recv_dispatch("VOICE_STATE_UPDATE"))["d"]
    server = (await gw.recv_dispatch("VOICE_SERVER_UPDATE"))["d"]
    return {"token": server["token"], "endpoint": server["endpoint"], "sessionId": state["session_id"],
            "channelId": str(channel_id)}


@contextlib.asynccontextmanager
async def voiced() -> AsyncIterator[Voiced]:
    async with Sandbox(player_update_interval=0.2, lavalink_speed=10.0) as sb:
        app, = sb.add_bots(1)
        world = await sb.create_world([app])
        async with raw_gateway(sb.discord) as gw:
            await gw.identify(app.token)
            await gw.recv_dispatch("GUILD_CREATE")
            voice = await _join(gw, world.guild_id, world.voice_ids["Lounge"])
            client = RawClient(sb.lavalink, user_id=app.user_id)
            try:
                await client.connect()
                yield Voiced(sb, app, world.guild_id, world.voice_ids, gw, client, voice)
            finally:
                await client.close()


async def _play(v: Voiced, voice: dict[str, str]) -> None:
    status, body = await v.ll.patch(v.guild_id, {"voice": voice})
    assert status == 200, body  # Lavalink answers first; the voice server closes afterwards
    await v.ll.play(v.guild_id, LONG)
    await v.ll.next_op("event", "TrackStartEvent")


async def _position_frozen(v: Voiced) -> None:
    """The player reports connected false and its position does not move between two playerUpdates."""
    before = len(v.ll.ops("playerUpdate"))
    first = await v.ll.next_op("playerUpdate", index=before)
    second = await v.ll.next_op("playerUpdate", index=before + 1)
    assert first["state"]["connected"] is False and second["state"]["connected"] is False
    assert second["state"]["position"] == first["state"]["position"]
    assert v.sb.lavalink.player(v.app.user_id, v.guild_id)["connected"] is False


async def _advancing(v: Voiced) -> None:
    before = len(v.ll.ops("playerUpdate"))
    first = await v.ll.next_op("playerUpdate", index=before)
    second = await v.ll.next_op("playerUpdate", index=before + 1)
    assert second["state"]["connected"] is True
    assert second["state"]["position"] > first["state"]["position"]


async def _closed(v: Voiced, index: int = 0) -> dict[str, Any]:
    event = await v.ll.next_op("event", "WebSocketClosedEvent", index=index)
    assert event["guildId"] == str(v.guild_id) and event["byRemote"] is True
    return event


async def test_the_issued_credentials_play() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        await _advancing(v)
        assert v.ll.ops("event", "WebSocketClosedEvent") == []


@pytest.mark.parametrize(("field", "code"), [("token", 4004), ("endpoint", 4004), ("sessionId", 4006)])
async def test_wrong_credentials_close_the_voice_connection(field: str, code: int) -> None:
    async with voiced() as v:
        await _play(v, {**v.voice, field: v.voice[field] + "x"})
        event = await _closed(v)
        assert event["code"] == code
        await _position_frozen(v)
        # the client then sends the right ones: the node connects and the track plays on
        status, _ = await v.ll.patch(v.guild_id, {"voice": v.voice})
        assert status == 200
        await _advancing(v)


async def test_moderator_disconnect_closes_with_4014() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        await v.sb.discord.disconnect_member(v.guild_id, v.app.user_id)
        state = await v.gw.recv_dispatch("VOICE_STATE_UPDATE")
        assert state["d"]["channel_id"] is None
        event = await _closed(v)
        assert event["code"] == 4014
        await _position_frozen(v)
        # the old credentials died with the voice state
        status, _ = await v.ll.patch(v.guild_id, {"voice": v.voice})
        assert status == 200
        assert (await _closed(v, index=1))["code"] == 4006


async def test_drop_4006_needs_a_new_voice_session() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        v.sb.drop_voice(v.app, v.guild_id, code=4006)
        assert (await _closed(v))["code"] == 4006
        await _position_frozen(v)
        # Discord sends no VOICE_STATE_UPDATE: the bot is still in the channel for the gateway ...
        assert v.sb.discord.voice_state(v.guild_id, v.app.user_id)["channel_id"] == str(v.voice_ids["Lounge"])
        # ... but the same credentials are refused again; rejoining (op 4) gives ones that play
        await v.ll.patch(v.guild_id, {"voice": v.voice})
        assert (await _closed(v, index=1))["code"] == 4006
        fresh = await _join(v.gw, v.guild_id, v.voice_ids["Lounge"])
        assert fresh["token"] != v.voice["token"]
        status, _ = await v.ll.patch(v.guild_id, {"voice": fresh})
        assert status == 200
        await _advancing(v)


async def test_drop_1006_is_a_network_drop_the_same_credentials_survive() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        v.sb.drop_voice(v.app, v.guild_id, code=1006)
        event = await _closed(v)
        assert event["code"] == 1006
        await _position_frozen(v)
        assert v.sb.discord.voice_state(v.guild_id, v.app.user_id) is not None
        status, _ = await v.ll.patch(v.guild_id, {"voice": v.voice})
        assert status == 200
        await _advancing(v)
        with pytest.raises(ValueError):
            v.sb.drop_voice(v.app, v.guild_id, code=4000)


async def test_drop_without_a_connected_player_is_an_error() -> None:
    async with voiced() as v:
        with pytest.raises(LookupError):
            v.sb.drop_voice(v.app, v.guild_id)


async def test_moved_bot_plays_on_with_the_new_token_only() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        studio = v.voice_ids["Studio"]
        await v.sb.discord.move_member(v.guild_id, v.app.user_id, studio)
        state = (await v.gw.recv_dispatch("VOICE_STATE_UPDATE"))["d"]
        server = (await v.gw.recv_dispatch("VOICE_SERVER_UPDATE"))["d"]
        assert state["channel_id"] == str(studio) and state["session_id"] == v.voice["sessionId"]
        moved = {**v.voice, "token": server["token"], "channelId": str(studio)}
        assert moved["token"] != v.voice["token"]
        status, _ = await v.ll.patch(v.guild_id, {"voice": moved})
        assert status == 200
        await _advancing(v)
        assert v.ll.ops("event", "WebSocketClosedEvent") == []
        # the token from before the move is no longer the one Discord issued
        status, _ = await v.ll.patch(v.guild_id, {"voice": v.voice})
        assert status == 200
        assert (await _closed(v))["code"] == 4004


async def test_a_vanished_voice_state_clears_the_state_and_the_credentials_without_a_4014() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        v.sb.vanish_voice(v.app, v.guild_id)
        state = await v.gw.recv_dispatch("VOICE_STATE_UPDATE")
        assert state["d"]["channel_id"] is None and v.sb.discord.voice_state(v.guild_id, v.app.user_id) is None
        assert (await _closed(v))["code"] == 1006  # the connection died; no moderator, so no 4014
        await _position_frozen(v)
        assert v.sb.discord.voice_moderations == []
        # joining again (op 4) gives credentials that play
        fresh = await _join(v.gw, v.guild_id, v.voice_ids["Lounge"])
        status, _ = await v.ll.patch(v.guild_id, {"voice": fresh})
        assert status == 200
        await _advancing(v)
        with pytest.raises(LookupError):
            v.sb.vanish_voice(v.app, v.guild_id + 1)


async def test_a_vanished_voice_state_can_leave_the_node_uninformed() -> None:
    async with voiced() as v:
        await _play(v, v.voice)
        v.sb.vanish_voice(v.app, v.guild_id, close_code=None)
        assert (await v.gw.recv_dispatch("VOICE_STATE_UPDATE"))["d"]["channel_id"] is None
        await _advancing(v)  # the node still plays on its old connection
        assert v.ll.ops("event", "WebSocketClosedEvent") == []


async def test_refused_voice_turns_away_the_next_connections_then_lets_them_play() -> None:
    async with voiced() as v:
        v.sb.refuse_voice(v.app, v.guild_id, times=2)
        await _play(v, v.voice)  # the issued credentials, refused all the same
        assert (await _closed(v))["code"] == 4006
        fresh = await _join(v.gw, v.guild_id, v.voice_ids["Lounge"])
        await v.ll.patch(v.guild_id, {"voice": fresh})
        assert (await _closed(v, index=1))["code"] == 4006
        assert v.sb.voice_refusals_left(v.app, v.guild_id) == 0
        fresh = await _join(v.gw, v.guild_id, v.voice_ids["Lounge"])
        status, _ = await v.ll.patch(v.guild_id, {"voice": fresh})
        assert status == 200
        await _advancing(v)
        with pytest.raises(ValueError):
            v.sb.refuse_voice(v.app, v.guild_id, times=-1)
