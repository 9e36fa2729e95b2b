"""Gateway behaviour of the emulated Discord, seen by a real discord.py client and by raw websockets."""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import pytest

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_state import INTENT_GUILD_MEMBERS
from tests.emulators.discord_helpers import (
    ZlibDecompressionContext, make_client, make_world, pointed_at, raw_gateway, running,
)

pytestmark = pytest.mark.timeout(60)


async def test_login_ready_and_guild_cache() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        await emu.move_member(world.guild.id, world.user.id, world.voice.id)
        async with running(emu, world.app) as client:
            assert client.user.id == world.app.user_id
            assert client.application_id == world.app.application_id
            guild = client.get_guild(world.guild.id)
            assert guild is not None and guild.name == "Test Guild"
            assert {c.name for c in guild.channels} == {"general", "Lounge"}
            voice = guild.get_channel(world.voice.id)
            assert [m.id for m in voice.members] == [world.user.id]
            assert guild.me.id == world.app.user_id
            await emu.wait_until_ready(world.app)
        stats = emu.gateway_stats(world.app)
        assert stats["identifies"] == 1 and stats["resumes"] == 0
        assert stats["compression"] == ["zstd-stream"]
        assert stats["intents"] == discord.Intents.default().value


async def test_zlib_stream_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.utils, "_ActiveDecompressionContext", ZlibDecompressionContext)
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app) as client:
            assert client.get_guild(world.guild.id) is not None
        assert emu.gateway_stats(world.app)["compression"] == ["zlib-stream"]


@pytest.mark.parametrize("compress", ["zstd-stream", "zlib-stream", None])
async def test_raw_frames_match_compression(compress: str | None) -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with raw_gateway(emu, compress) as gw:
            ready = await gw.identify(world.app.token)
            assert ready["s"] == 1 and ready["d"]["resume_gateway_url"] == emu.gateway_url
            created = await gw.recv_dispatch("GUILD_CREATE")
            assert created["s"] == 2
            expected = aiohttp.WSMsgType.TEXT if compress is None else aiohttp.WSMsgType.BINARY
            assert set(gw.frame_types) == {expected}


async def test_heartbeat_is_acked() -> None:
    async with DiscordEmulator() as emu:
        async with raw_gateway(emu) as gw:
            await gw.send(1, None)
            assert (await gw.recv())["op"] == 11


async def test_missing_heartbeat_closes_connection() -> None:
    async with DiscordEmulator(heartbeat_interval=200) as emu:
        world = await make_world(emu)
        async with raw_gateway(emu) as gw:
            await gw.identify(world.app.token)
            msg = await gw.ws.receive(timeout=3)
            while msg.type is not aiohttp.WSMsgType.CLOSE:
                msg = await gw.ws.receive(timeout=3)
            assert msg.data == 4000


async def test_bad_token_rest_is_login_failure() -> None:
    async with DiscordEmulator() as emu:
        emu.add_bot("Music 1")
        client = make_client()
        with pointed_at(emu):
            with pytest.raises(discord.LoginFailure):
                await client.login("MTIz.bad.token")
            await client.close()
        assert emu.requests[-1].status == 401 and emu.requests[-1].path == "/users/@me"


async def test_identify_bad_token_closes_4004() -> None:
    async with DiscordEmulator() as emu:
        async with raw_gateway(emu) as gw:
            await gw.send(2, {"token": "nope", "intents": 1, "properties": {}})
            msg = await gw.ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4004
            assert msg.extra == "Authentication failed."


async def test_privileged_intents_close_4014() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        intents = discord.Intents.default()
        intents.members = True
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with running(emu, world.app, make_client(intents)):
                pass
        assert emu.gateway_stats(world.app)["server_closes"] == [4014]


async def test_members_intent_allowed_chunks_guild() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu, privileged_intents=INTENT_GUILD_MEMBERS)
        intents = discord.Intents.default()
        intents.members = True
        async with running(emu, world.app, make_client(intents)) as client:
            guild = client.get_guild(world.guild.id)
            assert guild.chunked
            assert world.user.id in {m.id for m in guild.members}


async def test_reconnect_resumes_and_replays_missed_dispatch() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        other = emu.add_bot("Music 2")
        await emu.add_bot_to_guild(other, world.guild.id)
        async with running(emu, world.app) as client, running(emu, other) as sibling:
            resumed = asyncio.Event()
            client.event(_set_on("on_resumed", resumed))
            await emu.drop_gateway(world.app)
            # Created while the bot is disconnected: must arrive through the RESUME replay.
            channel = emu.create_text_channel(world.guild.id, "while-away")
            await asyncio.wait_for(resumed.wait(), 10)
            assert client.get_channel(channel.id) is not None
            assert sibling.get_channel(channel.id) is not None
            await emu.send_reconnect(world.app)
            await emu.wait_for(lambda: emu.gateway_stats(world.app)["resumes"] == 2, 10)
        stats = emu.gateway_stats(world.app)
        assert stats["identifies"] == 1 and stats["connections"] == 3
        sibling_stats = emu.gateway_stats(other)
        assert sibling_stats["connections"] == 1 and sibling_stats["resumes"] == 0


async def test_invalid_session_leads_to_new_identify() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app):
            await emu.send_invalid_session(world.app, resumable=False)
            await emu.wait_for(lambda: emu.gateway_stats(world.app)["identifies"] == 2, 10)
            await emu.wait_until_ready(world.app)
        assert emu.gateway_stats(world.app)["resumes"] == 0


async def test_close_code_4000_resumes() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app):
            await emu.close_gateway(world.app, code=4000)
            await emu.wait_for(lambda: emu.gateway_stats(world.app)["resumes"] == 1, 10)
        assert emu.gateway_stats(world.app)["server_closes"] == [4000]


async def test_presence_is_recorded() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app) as client:
            await client.change_presence(activity=discord.Game("tunes"))
            await emu.wait_for(lambda: emu.gateway_stats(world.app)["presences"], 5)
        assert emu.gateway_stats(world.app)["presences"][0]["activities"][0]["name"] == "tunes"


async def test_guild_join_dispatches_guild_create() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        second = emu.create_guild("Second")
        emu.create_text_channel(second.id, "lobby")
        async with running(emu, world.app) as client:
            joined = asyncio.Event()
            client.event(_set_on("on_guild_join", joined))
            await emu.add_bot_to_guild(world.app, second.id)
            await asyncio.wait_for(joined.wait(), 5)
            assert client.get_guild(second.id).name == "Second"


async def test_auto_sharded_client() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        client = discord.AutoShardedClient(intents=discord.Intents.default(), guild_ready_timeout=0.3)
        async with running(emu, world.app, client):
            assert client.shard_count == 1 and client.get_guild(world.guild.id) is not None
        assert any(r.path == "/gateway/bot" and r.status == 200 for r in emu.requests)


async def test_too_many_gateway_sends_close_4008() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with raw_gateway(emu) as gw:
            await gw.identify(world.app.token)
            for _ in range(125):
                await gw.send(3, {"since": None, "activities": [], "status": "online", "afk": False})
            msg = await gw.ws.receive(timeout=5)
            while msg.type is not aiohttp.WSMsgType.CLOSE:
                msg = await gw.ws.receive(timeout=5)
            assert msg.data == 4008


def _set_on(name: str, event: asyncio.Event):  # noqa: ANN202 - builds a named event handler
    async def handler(*_: object) -> None:
        event.set()

    handler.__name__ = name
    return handler


async def test_member_list_request_without_members_intent_is_never_answered() -> None:
    """Discord neither answers nor closes (no 4013): the client's request simply never completes."""
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with raw_gateway(emu) as gw:
            await gw.identify(world.app.token, intents=1 | (1 << 7))
            await gw.recv_dispatch("GUILD_CREATE")
            await gw.send(8, {"guild_id": world.guild.id, "query": "", "limit": 0, "nonce": "all"})
            await gw.send(8, {"guild_id": world.guild.id, "user_ids": [world.user.id], "presences": True,
                              "nonce": "one"})
            chunk = await gw.recv_dispatch("GUILD_MEMBERS_CHUNK")
            assert chunk["d"]["nonce"] == "one" and "presences" not in chunk["d"]  # no GUILD_PRESENCES
            assert [m["user"]["id"] for m in chunk["d"]["members"]] == [str(world.user.id)]
            await gw.send(1, None)
            assert (await gw.recv())["op"] == 11  # still connected, and the first request got nothing
        assert [r["nonce"] for r in emu.gateway.member_requests] == ["all", "one"]
        assert emu.gateway_stats(world.app)["server_closes"] == []
