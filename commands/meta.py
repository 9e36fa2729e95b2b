"""Commands about the bot itself: /ping."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)


def _format_latency(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN/inf before the first heartbeat ACK
        return "not measured yet"
    return f"{seconds * 1000:.0f} ms"


class Meta(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot
        self.started = time.monotonic()

    @app_commands.command(name="ping")
    async def ping(self, interaction: discord.Interaction) -> None:
        """Show the gateway latency and whether the audio server is reachable."""
        nodes = self.bot.lavalink.status() if hasattr(self.bot, "lavalink") else []
        lines = [f"Pong! Gateway latency: {_format_latency(self.bot.latency)}."]
        for identifier, status in nodes:
            lines.append(f"Audio server {identifier}: {status.lower()}.")
        if nodes and not self.bot.lavalink.connected():
            lines.append("Music commands will not work until an audio server is reachable.")
        uptime = int(time.monotonic() - self.started)
        lines.append(f"Bot {self.bot.settings.bot_index}, up {uptime // 3600}h {uptime // 60 % 60}m {uptime % 60}s.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Meta(bot))
