"""Slash commands, components and autocomplete driven through the control API into a real discord.py bot."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from sandbox.discord_emulator import (
    CommandNotAvailable, CommandNotRegistered, DiscordEmulator, InteractionTimeout,
)
from tests.emulators.discord_helpers import World, make_world, running, synced

pytestmark = pytest.mark.timeout(60)


class QueueView(discord.ui.View):
    @discord.ui.button(label="Next", custom_id="queue:next")
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="page 2")


class RenameModal(discord.ui.Modal, title="Rename playlist"):
    name = discord.ui.TextInput(label="Name", custom_id="rename:name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"renamed to {self.name.value}")


def build_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.3)
    bot.errors = []  # type: ignore[attr-defined]

    @bot.tree.error
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        bot.errors.append(error)  # type: ignore[attr-defined]

    @bot.tree.command(name="play", description="Play a song")
    async def play(interaction: discord.Interaction, query: str) -> None:
        await interaction.response.send_message(f"Queued {query}", ephemeral=True)

    @play.autocomplete("query")
    async def play_complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f"{current} song {i}", value=f"{current}-{i}") for i in range(3)]

    @bot.tree.command(name="search", description="Search slowly")
    async def search(interaction: discord.Interaction, query: str) -> None:
        await interaction.response.defer()
        await interaction.followup.send(f"Found {query}")
        await interaction.followup.send("and one more")

    @bot.tree.command(name="status", description="Show status")
    async def status(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.edit_original_response(content="all good")

    @bot.tree.command(name="volume", description="Set volume")
    async def volume(interaction: discord.Interaction, level: int, loud: bool = False) -> None:
        await interaction.response.send_message(f"volume {level + 1} loud={loud}")

    @bot.tree.command(name="slow", description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.6)
        await interaction.response.send_message("late")

    @bot.tree.command(name="admin", description="Admins only")
    @app_commands.default_permissions(manage_guild=True)
    async def admin(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok")

    @bot.tree.command(name="rename", description="Rename the playlist")
    async def rename(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(RenameModal(custom_id="rename"))

    queue = app_commands.Group(name="queue", description="Queue commands")

    @queue.command(name="show", description="Show the queue")
    async def show(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("page 1", view=QueueView(timeout=60))

    bot.tree.add_command(queue)
    return bot


def synced_bot(emu: DiscordEmulator) -> contextlib.AbstractAsyncContextManager[tuple[World, commands.Bot]]:
    return synced(emu, build_bot())


def _who(world: World) -> dict[str, int]:
    return {"guild_id": world.guild.id, "channel_id": world.text.id, "user_id": world.user.id}


async def test_slash_command_ephemeral_reply() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="play", options={"query": "never gonna"})
        assert res.callback_type == 4 and not res.deferred
        assert res.content == "Queued never gonna" and res.ephemeral
        assert res.latency is not None and res.latency < 3
        assert emu.messages(world.text.id) == []  # ephemeral: nobody else sees it
        payload = emu.interactions[-1].payload
        assert payload["data"]["guild_id"] == str(world.guild.id)
        assert payload["data"]["id"] == emu.commands(world.app, world.guild.id)[0]["id"]


async def test_typed_options_and_subcommands() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="volume", options={"level": 49, "loud": True})
        assert res.content == "volume 50 loud=True" and not res.ephemeral
        assert [m["content"] for m in emu.messages(world.text.id)] == ["volume 50 loud=True"]
        res = await emu.invoke(world.app, **_who(world), command="queue show")
        assert res.content == "page 1" and res.components


async def test_defer_then_followups() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="search", options={"query": "abba"})
        assert res.deferred and res.callback_type == 5
        assert res.content == "Found abba"
        second = await res.wait_followup(2, timeout=5)
        assert second["content"] == "and one more"
        # The first follow-up replaced the "thinking" message, as Discord does.
        assert res.followups[0]["id"] == str(res.message_id)
        assert [m["content"] for m in emu.messages(world.text.id)] == ["Found abba", "and one more"]


async def test_defer_then_edit_original() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="status")
        assert res.deferred and res.content == "all good" and res.ephemeral
        assert not res.flags & 128  # no longer loading


async def test_button_press_reaches_view() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="queue show")
        pressed = await emu.press_button(world.app, **_who(world), message_id=res.message_id, custom_id="queue:next")
        assert pressed.callback_type == 7 and pressed.content == "page 2"
        assert emu.message(res.message_id)["content"] == "page 2"
        with pytest.raises(ValueError):
            await emu.press_button(world.app, **_who(world), message_id=res.message_id, custom_id="missing")


async def test_autocomplete_choices() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        choices = await emu.autocomplete(world.app, **_who(world), command="play", options={"query": "nev"},
                                         focused="query")
        assert choices == [{"name": f"nev song {i}", "value": f"nev-{i}"} for i in range(3)]


async def test_double_callback_is_40060() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="play", options={"query": "x"})
        record = res.record
        url = f"{emu.api_base}/interactions/{record.id}/{record.token}/callback"
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
                assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
                body = await resp.json()
        assert body == {"message": "Interaction has already been acknowledged.", "code": 40060}


async def test_late_callback_is_10062() -> None:
    async with DiscordEmulator(interaction_deadline=0.3) as emu, synced_bot(emu) as (world, bot):
        with pytest.raises(InteractionTimeout) as info:
            await emu.invoke(world.app, **_who(world), command="slow", timeout=1.5)
        assert info.value.received.callback_type is None
        await emu.wait_for(lambda: bot.errors, 5)  # type: ignore[attr-defined]
        original = bot.errors[0].original  # type: ignore[attr-defined]
        assert isinstance(original, discord.NotFound) and original.code == 10062
        assert emu.interactions[-1].callback_attempts == [404]


async def test_unregistered_command_and_hidden_command_refused() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        dispatched = len(emu.interactions)
        with pytest.raises(CommandNotRegistered, match=r"/nothere is not registered for Music 1"):
            await emu.invoke(world.app, **_who(world), command="nothere", timeout=0.5)
        assert len(emu.interactions) == dispatched  # nothing reached the bot
        with pytest.raises(CommandNotAvailable):
            await emu.invoke(world.app, **_who(world), command="admin")
        res = await emu.invoke(world.app, guild_id=world.guild.id, channel_id=world.text.id,
                               user_id=world.guild.owner_id, command="admin")
        assert res.content == "ok"


async def test_modal_round_trip() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        res = await emu.invoke(world.app, **_who(world), command="rename")
        assert res.callback_type == 9 and res.modal["custom_id"] == "rename"
        submitted = await emu.submit_modal(world.app, **_who(world), custom_id="rename",
                                           values={"rename:name": "road trip"})
        assert submitted.content == "renamed to road trip"


async def test_interaction_ids_carry_the_time_of_the_invocation() -> None:
    """discord.py reads `Interaction.created_at` from the id and measures app-command cooldowns with it, so a
    cooldown must expire after its real duration, as against Discord."""
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.3)
        seen: list[discord.Interaction] = []

        @bot.tree.command(name="limited", description="Once per half second")
        @app_commands.checks.cooldown(1, 0.5)
        async def limited(interaction: discord.Interaction) -> None:
            seen.append(interaction)
            await interaction.response.send_message("ok")

        @bot.tree.error
        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            assert isinstance(error, app_commands.CommandOnCooldown)
            await interaction.response.send_message(f"wait {error.retry_after:.1f}")

        async with running(emu, world.app, bot):
            guild = discord.Object(world.guild.id)
            bot.tree.copy_global_to(guild=guild)
            await bot.tree.sync(guild=guild)
            first = await emu.invoke(world.app, **_who(world), command="limited")
            assert first.content == "ok"
            assert abs((seen[0].created_at - discord.utils.utcnow()).total_seconds()) < 5
            second = await emu.invoke(world.app, **_who(world), command="limited")
            assert second.content.startswith("wait 0.")
            await asyncio.sleep(0.6)  # the cooldown's own duration passing is what is tested
            third = await emu.invoke(world.app, **_who(world), command="limited")
            assert third.content == "ok"
