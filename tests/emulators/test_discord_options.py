"""Invoking slash commands like a member's Discord client: registered commands only, options checked
against the registered schema, `data.resolved` for users, members, channels and roles."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Literal

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from sandbox.discord_emulator import CommandNotAvailable, CommandNotRegistered, DiscordEmulator, InvalidInvocation
from sandbox.discord_state import Perm
from tests.emulators.discord_helpers import World, make_world, running

pytestmark = pytest.mark.timeout(60)


def build_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.3)

    @bot.tree.command(name="config", description="Every option type")
    async def config(interaction: discord.Interaction, name: app_commands.Range[str, 2, 10],
                     count: app_commands.Range[int, 1, 5], who: discord.Member, where: discord.VoiceChannel,
                     role: discord.Role, mode: Literal["fast", "slow"] = "fast",
                     ratio: app_commands.Range[float, 0.0, 1.0] = 0.5, loud: bool = False,
                     anyone: discord.Member | discord.Role | None = None,
                     room: discord.abc.GuildChannel | None = None) -> None:
        shown = (f"{name} {count} {who.display_name} perms={who.guild_permissions.connect} #{where.name} "
                 f"@{role.name} {mode} {ratio} {loud} {getattr(anyone, 'name', None)} {getattr(room, 'name', None)}")
        await interaction.response.send_message(shown)

    @bot.tree.command(name="play", description="Play")
    async def play(interaction: discord.Interaction, query: str, volume: int = 100) -> None:
        await interaction.response.send_message(f"{query} at {volume}")

    @play.autocomplete("query")
    async def play_complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f"typed {current!r}", value=current or "-")]

    queue = app_commands.Group(name="queue", description="Queue commands")

    @queue.command(name="remove", description="Remove a song")
    async def remove(interaction: discord.Interaction, position: app_commands.Range[int, 1, 100]) -> None:
        await interaction.response.send_message(f"removed {position}")

    bot.tree.add_command(queue)
    return bot


@contextlib.asynccontextmanager
async def synced(emu: DiscordEmulator, *, register: bool = True) -> AsyncIterator[tuple[World, commands.Bot]]:
    world = await make_world(emu)
    world.dj = emu.create_role(world.guild.id, "DJ")  # type: ignore[attr-defined]
    bot = build_bot()
    async with running(emu, world.app, bot):
        if register:
            await bot.tree.sync()  # global commands, as register_commands.py registers them by default
        yield world, bot


def who(world: World) -> dict[str, int]:
    return {"guild_id": world.guild.id, "channel_id": world.text.id, "user_id": world.user.id}


async def test_every_option_type_reaches_the_handler_resolved() -> None:
    async with DiscordEmulator() as emu, synced(emu) as (world, _):
        res = await emu.invoke(world.app, **who(world), command="config", options={
            "name": "mix", "count": 3, "who": world.user.id, "where": world.voice, "role": world.dj,
            "mode": "slow", "ratio": 0.25, "loud": True, "anyone": world.dj.id, "room": str(world.text.id)})
        assert res.content == "mix 3 alice perms=True #Lounge @DJ slow 0.25 True DJ general"
        data = emu.interactions[-1].payload["data"]
        resolved = data["resolved"]
        assert set(resolved["users"]) == set(resolved["members"]) == {str(world.user.id)}
        assert "user" not in resolved["members"][str(world.user.id)]
        assert int(resolved["members"][str(world.user.id)]["permissions"]) > 0
        assert set(resolved["channels"]) == {str(world.voice.id), str(world.text.id)}
        assert resolved["channels"][str(world.voice.id)]["name"] == "Lounge"
        assert "permissions" in resolved["channels"][str(world.voice.id)]
        assert set(resolved["roles"]) == {str(world.dj.id)}
        values = {o["name"]: o["value"] for o in data["options"]}
        assert values["who"] == str(world.user.id) and values["count"] == 3 and "guild_id" not in data


async def test_optional_options_left_out_use_the_handlers_defaults() -> None:
    async with DiscordEmulator() as emu, synced(emu) as (world, _):
        res = await emu.invoke(world.app, **who(world), command="config", options={
            "name": "ab", "count": 5, "who": world.user.id, "where": world.voice.id, "role": world.dj.id,
            "loud": None})
        assert res.content == "ab 5 alice perms=True #Lounge @DJ fast 0.5 False None None"
        assert [o["name"] for o in emu.interactions[-1].payload["data"]["options"]] == [
            "name", "count", "who", "where", "role"]


REFUSED = [
    ({"name": None, "role": None}, "required option(s) missing: name, role"),
    ({"volume": 3}, "unknown option(s) volume"),
    ({"count": "3"}, "'count' (integer) takes a whole number, got '3'"),
    ({"count": True}, "'count' (integer) takes a whole number, got True"),
    ({"count": 2.5}, "'count' (integer) takes a whole number"),
    ({"count": 6}, "'count' (integer) must be between 1 and 5, got 6"),
    ({"count": 0}, "must be between 1 and 5, got 0"),
    ({"ratio": 1.5}, "'ratio' (number) must be between 0.0 and 1.0"),
    ({"name": "x"}, "'name' (string) must be 2 to 10 characters long, got 1"),
    ({"name": "much too long"}, "must be 2 to 10 characters long, got 13"),
    ({"name": 12}, "'name' (string) takes text"),
    ({"mode": "medium"}, "must be one of the choices 'fast', 'slow', got 'medium'"),
    ({"loud": "yes"}, "'loud' (boolean) takes True or False"),
    ({"where": "text"}, "only offers channel types [2]"),
    ({"role": "user"}, "is no role of this guild"),
    ({"who": 12345}, "12345 is no user"),
    ({"anyone": "voice"}, "is no user or role of this guild"),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
async def test_invocations_discord_would_refuse_raise_and_reach_no_bot(change, message) -> None:
    async with DiscordEmulator() as emu, synced(emu) as (world, _):
        ids = {"text": world.text.id, "user": world.user.id, "voice": world.voice.id}
        options = {"name": "ok", "count": 1, "who": world.user.id, "where": world.voice.id, "role": world.dj.id}
        options.update({k: ids.get(v, v) if isinstance(v, str) else v for k, v in change.items()})
        with pytest.raises(InvalidInvocation, match="Discord would refuse /config for Music 1") as info:
            await emu.invoke(world.app, **who(world), command="config", options=options, timeout=2)
        assert message in str(info.value)
        assert emu.interactions == []


async def test_subcommands_must_exist_and_be_chosen() -> None:
    async with DiscordEmulator() as emu, synced(emu) as (world, _):
        assert (await emu.invoke(world.app, **who(world), command="queue remove",
                                 options={"position": 2})).content == "removed 2"
        with pytest.raises(InvalidInvocation, match="pick a subcommand: queue remove"):
            await emu.invoke(world.app, **who(world), command="queue")
        with pytest.raises(InvalidInvocation, match="no subcommand 'clear'; registered: remove"):
            await emu.invoke(world.app, **who(world), command="queue clear")
        with pytest.raises(InvalidInvocation, match="'play' has no subcommand 'now'"):
            await emu.invoke(world.app, **who(world), command="play now", options={"query": "x"})
        with pytest.raises(InvalidInvocation, match="must be between 1 and 100, got 101"):
            await emu.invoke(world.app, **who(world), command="queue remove", options={"position": 101})


async def test_autocomplete_only_for_options_registered_with_it() -> None:
    async with DiscordEmulator() as emu, synced(emu) as (world, _):
        choices = await emu.autocomplete(world.app, **who(world), command="play", options={"query": "ab"},
                                         focused="query")
        assert choices == [{"name": "typed 'ab'", "value": "ab"}]
        focused = emu.interactions[-1].payload["data"]["options"]
        assert focused == [{"name": "query", "type": 3, "value": "ab", "focused": True}]
        with pytest.raises(InvalidInvocation, match="option 'volume' has no autocomplete"):
            await emu.autocomplete(world.app, **who(world), command="play", options={"volume": "1"},
                                   focused="volume")


async def test_unregistered_commands_are_not_offered() -> None:
    async with DiscordEmulator() as emu, synced(emu, register=False) as (world, bot):
        with pytest.raises(CommandNotRegistered, match="/play is not registered for Music 1 .* Registered: none"):
            await emu.invoke(world.app, **who(world), command="play", options={"query": "x"})
        other = emu.add_bot("Music 2")
        await emu.add_bot_to_guild(other, world.guild.id)
        await bot.tree.sync()
        with pytest.raises(CommandNotRegistered, match="/play is not registered for Music 2"):
            await emu.invoke(other, **who(world), command="play", options={"query": "x"})
        assert emu.interactions == []
        assert (await emu.invoke(world.app, **who(world), command="play", options={"query": "x"})).content == \
            "x at 100"


async def test_a_handler_that_disagrees_with_the_registered_schema_fails_the_test() -> None:
    """Registered from an older tree (volume 0-100), invoked as the new handler expects (150): refused."""
    async with DiscordEmulator() as emu, synced(emu, register=False) as (world, bot):
        old = commands.Bot(command_prefix="!", intents=discord.Intents.none()).tree

        @old.command(name="play", description="Play")
        async def play(interaction: discord.Interaction, query: str,
                       volume: app_commands.Range[int, 0, 100] = 100) -> None: ...

        payload = [c.to_dict(old) for c in old.get_commands()]
        await bot.http.bulk_upsert_global_commands(world.app.application_id, payload)
        with pytest.raises(InvalidInvocation, match="'volume' \\(integer\\) must be between 0 and 100, got 150"):
            await emu.invoke(world.app, **who(world), command="play", options={"query": "x", "volume": 150})


async def test_members_without_use_application_commands_see_no_commands() -> None:
    async with DiscordEmulator() as emu, synced(emu) as (world, _):
        await emu.set_overwrite(world.text.id, world.guild.id, deny=Perm.USE_APPLICATION_COMMANDS)
        with pytest.raises(CommandNotAvailable, match="lacks Use Application Commands"):
            await emu.invoke(world.app, **who(world), command="play", options={"query": "x"})
        assert emu.interactions == []
