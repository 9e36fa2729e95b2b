"""Op 4 VOICE_STATE_UPDATE handling: order of dispatches, permissions, user limits, leaving; moderator moves."""

from __future__ import annotations

import asyncio

import discord
import pytest

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_state import Perm
from tests.emulators.discord_helpers import make_world, raw_gateway, running

pytestmark = pytest.mark.timeout(60)


async def _join(gw, guild_id: int, channel_id: int | None) -> None:  # noqa: ANN001
    await gw.send(4, {"guild_id": guild_id, "channel_id": channel_id, "self_mute": False, "self_deaf": True})


async def _no_dispatch(gw, seconds: float = 0.4) -> None:  # noqa: ANN001
    with pytest.raises(asyncio.TimeoutError):
        while True:
            payload = await gw.recv(timeout=seconds)
            assert payload["op"] != 0, f"unexpected dispatch {payload['t']}"


async def test_join_sends_state_then_server_update() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with raw_gateway(emu) as gw:
            ready = await gw.identify(world.app.token)
            await gw.recv_dispatch("GUILD_CREATE")
            await _join(gw, world.guild.id, world.voice.id)
            first, second = await gw.recv(), await gw.recv()
        assert first["t"] == "VOICE_STATE_UPDATE" and second["t"] == "VOICE_SERVER_UPDATE"
        assert second["s"] == first["s"] + 1
        state = first["d"]
        assert state["user_id"] == str(world.app.user_id) and state["channel_id"] == str(world.voice.id)
        assert state["session_id"] == ready["d"]["session_id"] and state["self_deaf"] is True
        assert state["member"]["user"]["id"] == str(world.app.user_id)
        assert second["d"]["guild_id"] == str(world.guild.id) and second["d"]["token"] and second["d"]["endpoint"]
        assert emu.voice_state(world.guild.id, world.app.user_id)["channel_id"] == str(world.voice.id)
        assert emu.voice_ops[world.app.user_id][0]["channel_id"] == world.voice.id


async def test_connect_denied_means_silence() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        await emu.set_overwrite(world.voice.id, world.guild.id, deny=Perm.CONNECT)
        async with raw_gateway(emu) as gw:
            await gw.identify(world.app.token)
            await gw.recv_dispatch("GUILD_CREATE")
            await _join(gw, world.guild.id, world.voice.id)
            await _no_dispatch(gw)
        assert emu.voice_state(world.guild.id, world.app.user_id) is None
        assert len(emu.voice_ops[world.app.user_id]) == 1


async def test_full_channel_means_silence_unless_move_members() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        small = emu.create_voice_channel(world.guild.id, "Duo", user_limit=1)
        await emu.move_member(world.guild.id, world.user.id, small.id)
        async with raw_gateway(emu) as gw:
            await gw.identify(world.app.token)
            await gw.recv_dispatch("GUILD_CREATE")
            await _join(gw, world.guild.id, small.id)
            await _no_dispatch(gw)
            assert emu.voice_state(world.guild.id, world.app.user_id) is None
            await emu.set_overwrite(small.id, world.app.user_id, allow=Perm.MOVE_MEMBERS)
            await gw.recv_dispatch("CHANNEL_UPDATE")
            await _join(gw, world.guild.id, small.id)
            assert (await gw.recv())["t"] == "VOICE_STATE_UPDATE"
            assert (await gw.recv())["t"] == "VOICE_SERVER_UPDATE"


async def test_leave_and_sibling_bots_see_voice_states() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        sibling = emu.add_bot("Music 2")
        await emu.add_bot_to_guild(sibling, world.guild.id)
        async with running(emu, world.app) as client, running(emu, sibling) as other:
            guild = client.get_guild(world.guild.id)
            await guild.change_voice_state(channel=guild.get_channel(world.voice.id), self_deaf=True)
            other_guild = other.get_guild(world.guild.id)
            await emu.wait_for(lambda: other_guild.get_member(world.app.user_id) is not None
                               and other_guild.get_member(world.app.user_id).voice is not None, 5)
            assert other_guild.get_member(world.app.user_id).voice.channel.id == world.voice.id
            await guild.change_voice_state(channel=None)
            await emu.wait_for(lambda: emu.voice_state(world.guild.id, world.app.user_id) is None, 5)
            await emu.wait_for(lambda: guild.me.voice is None, 5)


async def test_human_moves_reach_bots_with_voice_intent() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app) as client:
            seen: list[tuple[int | None, int | None]] = []

            async def on_voice_state_update(member, before, after) -> None:  # noqa: ANN001
                seen.append((before.channel and before.channel.id, after.channel and after.channel.id))

            client.event(on_voice_state_update)
            await emu.move_member(world.guild.id, world.user.id, world.voice.id)
            await emu.wait_for(lambda: len(seen) == 1, 5)  # discord.py mutates `after` in place
            await emu.move_member(world.guild.id, world.user.id, None)
            await emu.wait_for(lambda: len(seen) == 2, 5)
        assert seen == [(None, world.voice.id), (world.voice.id, None)]


async def _bot_in_voice(emu: DiscordEmulator, gw, world) -> tuple[dict, dict]:  # noqa: ANN001
    ready = await gw.identify(world.app.token)
    await gw.recv_dispatch("GUILD_CREATE")
    await _join(gw, world.guild.id, world.voice.id)
    state = await gw.recv_dispatch("VOICE_STATE_UPDATE")
    server = await gw.recv_dispatch("VOICE_SERVER_UPDATE")
    return ready["d"], server["d"]


async def test_moderator_moves_a_bot_it_keeps_its_voice_session_and_gets_a_new_token() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        studio = emu.create_voice_channel(world.guild.id, "Studio")
        moderator = emu.add_member(world.guild.id, "mod")
        events = []
        emu.on_voice_moderation(events.append)
        async with raw_gateway(emu) as gw:
            ready, first = await _bot_in_voice(emu, gw, world)
            await emu.move_member(world.guild.id, world.app.user_id, studio.id, by=moderator.id)
            moved = await gw.recv()
            server = await gw.recv()
            assert moved["t"] == "VOICE_STATE_UPDATE" and server["t"] == "VOICE_SERVER_UPDATE"
            assert moved["d"]["channel_id"] == str(studio.id)
            assert moved["d"]["session_id"] == ready["session_id"]  # the voice session is kept
            assert server["d"]["token"] != first["token"] and server["d"]["guild_id"] == str(world.guild.id)
            assert emu.voice_server(world.app, world.guild.id)["token"] == server["d"]["token"]

            await emu.disconnect_member(world.guild.id, world.app.user_id)
            gone = await gw.recv()
            assert gone["t"] == "VOICE_STATE_UPDATE" and gone["d"]["channel_id"] is None
            await _no_dispatch(gw)  # no VOICE_SERVER_UPDATE after a disconnect
        assert emu.voice_state(world.guild.id, world.app.user_id) is None
        assert emu.voice_server(world.app, world.guild.id) is None
        assert [(e.user_id, e.from_channel_id, e.to_channel_id, e.by, e.disconnected) for e in events] == [
            (world.app.user_id, world.voice.id, studio.id, moderator.id, False),
            (world.app.user_id, studio.id, None, None, True)]
        assert emu.voice_moderations == events
        with pytest.raises(ValueError, match="not connected to voice"):
            await emu.move_member(world.guild.id, world.app.user_id, studio.id)


async def test_a_bot_with_move_members_moves_and_disconnects_a_member_over_rest() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        studio = emu.create_voice_channel(world.guild.id, "Studio")
        async with running(emu, world.app) as client:
            guild = client.get_guild(world.guild.id)
            await emu.move_member(world.guild.id, world.user.id, world.voice.id)  # alice joins by herself
            await emu.wait_for(lambda: (m := guild.get_member(world.user.id)) is not None and m.voice is not None, 5)
            member = guild.get_member(world.user.id)
            with pytest.raises(discord.Forbidden) as denied:
                await member.move_to(guild.get_channel(studio.id))
            assert denied.value.code == 50013
            role = emu.create_role(world.guild.id, "Mover", Perm.MOVE_MEMBERS)
            emu.state.guild(world.guild.id).members[world.app.user_id].roles.append(role.id)
            await member.move_to(guild.get_channel(studio.id))
            await emu.wait_for(lambda: member.voice is not None and member.voice.channel.id == studio.id, 5)
            assert emu.voice_state(world.guild.id, world.user.id)["channel_id"] == str(studio.id)
            await member.move_to(None)
            await emu.wait_for(lambda: member.voice is None, 5)
            with pytest.raises(discord.HTTPException) as absent:
                await member.move_to(guild.get_channel(studio.id))
            assert absent.value.code == 40032
            with pytest.raises(discord.DiscordServerError):  # other member fields are not emulated: 501
                await member.edit(nick="Al")
        assert emu.voice_moderations == []  # only bots' moves are moderation events
        assert [u.reason for u in emu.unimplemented] == [
            "sandbox: member field(s) nick of PATCH /guilds/{id}/members/{id} not emulated"]
        emu.unimplemented.clear()
