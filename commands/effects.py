"""Sound effects: /filter (presets) and /speed, applied as Lavalink filters; shown on the panel and in
/nowplaying, kept in the snapshot (utils/filters.py holds the presets, MusicPlayer.set_effects applies them)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from utils.checks import ensure_can_control
from utils.cooldowns import control_cooldown
from utils.errors import BadInput
from utils.filters import LABELS, MAX_SPEED, MIN_SPEED, PRESETS, Effects, format_speed
from utils.lavalink import node_write
from utils.replies import reply

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

PRESET_CHOICES = [app_commands.Choice(name=("off (normal sound and speed)" if key == "off" else LABELS[key]), value=key)
                  for key in PRESETS]


class SoundEffects(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    @app_commands.command(name="filter")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(preset="The sound effect; off turns every effect off, the speed included")
    @app_commands.choices(preset=PRESET_CHOICES)
    async def filter_(self, interaction: discord.Interaction, preset: str) -> None:
        """Apply a sound effect: bass boost, nightcore, vaporwave, 8D, karaoke..."""
        player = ensure_can_control(interaction)
        if preset not in PRESETS:  # Discord enforces the choices; a forged payload still gets an answer
            raise BadInput(f"Unknown filter. Pick one of: {', '.join(PRESETS)}.")
        effects = Effects() if preset == "off" else Effects(preset, player.effects.speed)
        await node_write(interaction, player.set_effects(effects))
        self.bot.dispatch("music_panel_refresh", player)
        log.info("guild %s: effects now %s", interaction.guild_id, effects.label())
        if preset == "off":
            text = f"Effects off: normal sound and speed ({interaction.user.mention})."
        else:
            text = f"🎛️ Filter **{LABELS[preset]}** on ({interaction.user.mention})."
            if effects.speed != 1.0:
                text += f" Speed stays {format_speed(effects.speed)}."
        await reply(interaction, text, ephemeral=False)

    @app_commands.command(name="speed")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(factor="Playback speed without changing the pitch, 0.5 to 2.0 (1 is normal)")
    async def speed(self, interaction: discord.Interaction,
                    factor: app_commands.Range[float, MIN_SPEED, MAX_SPEED]) -> None:
        """Play faster or slower (0.5x to 2x) without changing the pitch."""
        player = ensure_can_control(interaction)
        if not MIN_SPEED <= factor <= MAX_SPEED:
            raise BadInput(f"The speed goes from {MIN_SPEED} to {MAX_SPEED} (1 is normal).")
        effects = Effects(player.effects.preset, round(float(factor), 2))
        await node_write(interaction, player.set_effects(effects))
        self.bot.dispatch("music_panel_refresh", player)
        log.info("guild %s: effects now %s", interaction.guild_id, effects.label())
        if effects.speed == 1.0:
            text = f"Normal speed again ({interaction.user.mention})."
        else:
            text = f"Speed set to {format_speed(effects.speed)} ({interaction.user.mention})."
        await reply(interaction, text, ephemeral=False)

    @speed.autocomplete("factor")
    async def speed_autocomplete(self, interaction: discord.Interaction,
                                 current: float | str) -> list[app_commands.Choice[float]]:
        return [app_commands.Choice(name=f"{format_speed(value)}{' (normal)' if value == 1.0 else ''}", value=value)
                for value in (0.75, 1.0, 1.25, 1.5, 2.0)]


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(SoundEffects(bot))
