"""String select menus, on ephemeral messages too, driven into a real discord.py bot: what a member's client
can send (offered values only, within min/max), who can use an ephemeral message (its member only), and the
limits Discord puts on a select's options."""

from __future__ import annotations

import contextlib

import discord
import pytest
from discord.ext import commands

from sandbox.discord_emulator import DiscordEmulator, InteractionTimeout, InvalidInvocation
from tests.emulators.discord_helpers import World, synced

pytestmark = pytest.mark.timeout(60)


class PickView(discord.ui.View):
    @discord.ui.select(custom_id="pick", placeholder="Pick", options=[
        discord.SelectOption(label="First", value="a"), discord.SelectOption(label="Second", value="b")])
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.edit_message(content=f"picked {select.values}", view=None)


def build_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.3)

    @bot.tree.command(name="menu", description="An ephemeral menu")
    async def menu(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("choose", view=PickView(timeout=60), ephemeral=True)

    @bot.tree.command(name="toomany", description="A select with too many options")
    async def toomany(interaction: discord.Interaction) -> None:
        raw = {"type": 1, "components": [{"type": 3, "custom_id": "big", "options": [
            {"label": str(i), "value": str(i)} for i in range(26)]}]}
        try:
            await interaction.client.http.request(  # discord.py itself refuses a 26th option: go around it
                discord.http.Route("POST", "/interactions/{id}/{token}/callback", id=interaction.id,
                                   token=interaction.token),
                json={"type": 4, "data": {"content": "big", "components": [raw]}})
        except discord.HTTPException as exc:
            bot.refused = exc  # type: ignore[attr-defined]

    return bot


def synced_bot(emu: DiscordEmulator) -> contextlib.AbstractAsyncContextManager[tuple[World, commands.Bot]]:
    return synced(emu, build_bot())


async def test_select_on_an_ephemeral_message_is_only_for_its_member_and_only_offered_values() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, _):
        who = {"guild_id": world.guild.id, "channel_id": world.text.id}
        res = await emu.invoke(world.app, **who, user_id=world.user.id, command="menu")
        assert res.ephemeral and res.components[0]["components"][0]["type"] == 3
        bob = emu.add_member(world.guild.id, "bob")
        with pytest.raises(InvalidInvocation, match="ephemeral"):
            await emu.select(world.app, **who, user_id=bob.id, message_id=res.message_id, custom_id="pick",
                             values=["a"])
        with pytest.raises(InvalidInvocation, match="offers only"):
            await emu.select(world.app, **who, user_id=world.user.id, message_id=res.message_id, custom_id="pick",
                             values=["z"])
        with pytest.raises(InvalidInvocation, match="1 to 1"):
            await emu.select(world.app, **who, user_id=world.user.id, message_id=res.message_id, custom_id="pick",
                             values=["a", "b"])
        with pytest.raises(InvalidInvocation, match="type 3, not 2"):
            await emu.press_button(world.app, **who, user_id=world.user.id, message_id=res.message_id,
                                   custom_id="pick")
        picked = await emu.select(world.app, **who, user_id=world.user.id, message_id=res.message_id,
                                  custom_id="pick", values=["b"])
        assert picked.callback_type == 7 and picked.content == "picked ['b']" and picked.components == []
        assert emu.interactions[-1].payload["data"] == {"custom_id": "pick", "component_type": 3, "values": ["b"]}


async def test_a_select_with_more_than_25_options_is_refused() -> None:
    async with DiscordEmulator() as emu, synced_bot(emu) as (world, bot):
        with pytest.raises(InteractionTimeout):  # never answered: the only answer was refused
            await emu.invoke(world.app, guild_id=world.guild.id, channel_id=world.text.id, user_id=world.user.id,
                             command="toomany", timeout=3)
        assert bot.refused.status == 400 and bot.refused.code == 50035  # type: ignore[attr-defined]
