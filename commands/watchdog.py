"""A periodic sweep over the players: leave voice channels that have been idle or without listeners for too
long. (Tracks that stopped making progress are recovery's: commands/recovery.py.)

One sweep instead of per-player timers: it cannot miss a voice-state event (during a gateway
reconnect, or for a player restored after a restart), and it is the only place these rules live.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from discord.ext import commands, tasks

from utils.player import MusicPlayer

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

SWEEP_EVERY = 2.0


class Watchdog(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.sweep.start()

    async def cog_unload(self) -> None:
        self.sweep.cancel()

    @tasks.loop(seconds=SWEEP_EVERY)
    async def sweep(self) -> None:
        if self.bot.stopping:
            return
        now = time.monotonic()
        for player in [vc for vc in self.bot.voice_clients if isinstance(vc, MusicPlayer)]:
            try:
                await self.check(player, now)
            except Exception:
                log.exception("guild %s: watchdog check failed", getattr(player.guild, "id", "?"))

    async def check(self, player: MusicPlayer, now: float) -> None:
        settings = self.bot.settings
        if not player.connected:
            return
        if player.guild is not None and self.bot.stays.get(player.guild.id) is not None:
            player.alone_since = player.idle_since = None  # 24/7 mode (commands/stay.py): never leave
            return
        if player.listeners():
            player.alone_since = None
        else:
            player.alone_since = player.alone_since or now
            if now - player.alone_since >= settings.alone_timeout:
                await player.leave("Everyone left the voice channel, so I left too.")
                return
        if player.current is None and not player.queue:
            player.idle_since = player.idle_since or now
            if now - player.idle_since >= settings.idle_timeout:
                await player.leave("Nothing played for a while, so I left the voice channel. "
                                   "Use /play to bring me back.")
            return
        player.idle_since = None


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Watchdog(bot))
