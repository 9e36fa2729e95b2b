"""/stay on|off: 24/7 mode. The bot stays in its voice channel when nothing plays or nobody listens (the
watchdog leaves it alone; with /autoplay on it keeps playing), and after a restart or a redeploy it rejoins
that channel even when nobody is there.

Kept per guild in STATE_DIR/bot-N/stay.json (utils/stay_store.py), apart from the player snapshots, which
end with the music; the record follows the bot when it moves to another channel and ends with /stay off or
/disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from commands.playback import Playback
from utils.checks import configured_dj_role, ensure_listener, get_player, is_dj, member_voice_channel, preflight
from utils.cooldowns import control_cooldown
from utils.errors import AudioUnavailable, BadInput, MusicError, NotInVoice
from utils.formatting import format_duration
from utils.player import MusicPlayer
from utils.replies import reply
from utils.stay_store import Stay

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

REJOIN_WAIT_FOR_AUDIO = 30.0


class NotAllowedToStay(MusicError):
    def __init__(self, dj_role: str | None) -> None:
        who = f"members with the {dj_role} role or Manage Server" if dj_role else "members with Manage Server"
        super().__init__(f"Only {who} can turn 24/7 mode on or off.")


def ensure_may_configure(interaction: discord.Interaction) -> None:
    member = interaction.user
    dj_role = configured_dj_role(interaction)
    if not isinstance(member, discord.Member):
        raise NotAllowedToStay(dj_role)
    if member.guild_permissions.manage_guild or (dj_role is not None and is_dj(member, dj_role)):
        return
    raise NotAllowedToStay(dj_role)


class StayCog(commands.Cog, name="Stay"):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot
        self._write_lock = asyncio.Lock()
        self._restored = asyncio.Event()
        self._rejoin_task: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._rejoin_task = asyncio.create_task(self._rejoin_all(), name="rejoin-24/7")

    async def cog_unload(self) -> None:
        if self._rejoin_task is not None:
            self._rejoin_task.cancel()

    # ---- the record ---------------------------------------------------------------------------------

    async def _put(self, guild_id: int, stay: Stay | None) -> None:
        store = self.bot.stays
        if stay is None:
            store.guilds.pop(guild_id, None)
        else:
            store.guilds[guild_id] = stay
        async with self._write_lock:  # in order: the last change is the one on disk
            await asyncio.to_thread(store.write, store.encode())

    # ---- /stay --------------------------------------------------------------------------------------

    @app_commands.command(name="stay")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(mode="on: stay in the voice channel around the clock, also after a restart")
    async def stay(self, interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        """24/7 mode: stay in the voice channel when idle or alone (Manage Server or DJ)."""
        if mode not in ("on", "off"):  # Discord enforces the choices; a forged payload still gets an answer
            raise BadInput("24/7 mode is either on or off.")
        ensure_may_configure(interaction)
        guild = interaction.guild
        assert guild is not None
        if mode == "off":
            if get_player(interaction) is not None:
                ensure_listener(interaction)
            if self.bot.stays.get(guild.id) is None:
                await reply(interaction, "24/7 mode is already off.")
                return
            await self._put(guild.id, None)
            log.info("guild %s: 24/7 mode off", guild.id)
            settings = self.bot.settings
            await reply(interaction, "24/7 mode is off: I'll leave after "
                        f"{format_duration(settings.idle_timeout * 1000)} with nothing playing or "
                        f"{format_duration(settings.alone_timeout * 1000)} alone, as usual.", ephemeral=False)
            return

        player = get_player(interaction)
        if player is None:
            player = await self._join_member(interaction)
        else:
            ensure_listener(interaction)
        assert player.channel is not None
        if player.home is None and interaction.channel is not None:
            player.home = interaction.channel
        await self._put(guild.id, Stay(player.channel.id, interaction.channel_id))
        log.info("guild %s: 24/7 mode on in #%s", guild.id, player.channel.name)
        hint = "" if player.autoplay_on else " Turn /autoplay on to keep music going when the queue runs out."
        await reply(interaction, f"24/7 mode is on: I'll stay in {player.channel.mention} when nothing plays or "
                    f"nobody listens, and come back to it after a restart.{hint}", ephemeral=False)

    async def _join_member(self, interaction: discord.Interaction) -> MusicPlayer:
        channel = member_voice_channel(interaction)
        if channel is None:
            raise NotInVoice()
        assert interaction.guild is not None
        preflight(channel, interaction.guild.me)
        if not self.bot.lavalink.connected():
            raise AudioUnavailable()
        await interaction.response.defer(thinking=True)  # joining takes a voice round trip
        assert isinstance(channel, discord.VoiceChannel)
        return await self._connect(channel)

    async def _connect(self, channel: discord.VoiceChannel) -> MusicPlayer:
        playback = self.bot.get_cog("Playback")
        if not isinstance(playback, Playback):  # turned off or failed to load: nothing else joins voice
            raise MusicError("I can't join voice channels right now. Please try again later.")
        return await playback.join(channel)

    # ---- keeping the record in step --------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        """The bot was moved (by /play following a member, or by a moderator): 24/7 follows it."""
        if self.bot.user is None or member.id != self.bot.user.id or after.channel is None:
            return
        stay = self.bot.stays.get(member.guild.id)
        if stay is not None and stay.channel_id != after.channel.id:
            log.info("guild %s: 24/7 mode follows me to #%s", member.guild.id, after.channel.name)
            await self._put(member.guild.id, Stay(after.channel.id, stay.home_channel_id))

    @commands.Cog.listener()
    async def on_music_disconnect_requested(self, guild_id: int) -> None:
        """/disconnect or a moderator's kick: leaving on request ends 24/7 mode (a restart must not bring it back)."""
        if self.bot.stays.get(guild_id) is not None:
            log.info("guild %s: 24/7 mode off (asked to leave)", guild_id)
            await self._put(guild_id, None)

    # ---- after a restart -------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_music_restore_done(self) -> None:
        self._restored.set()

    async def _rejoin_all(self) -> None:
        """Back into every 24/7 channel the snapshot restore did not already bring the bot back to."""
        if not self.bot.stays.guilds:
            return
        if self.bot.settings.restore:
            await self._restored.wait()  # commands/persistence.py first: it brings the music back, too
        await self.bot.wait_until_ready()
        deadline = time.monotonic() + REJOIN_WAIT_FOR_AUDIO
        while not self.bot.lavalink.connected():
            if time.monotonic() > deadline:
                log.warning("audio server still unreachable: not rejoining %d 24/7 channel(s) now",
                            len(self.bot.stays.guilds))
                return
            await asyncio.sleep(0.2)
        for guild_id, stay in list(self.bot.stays.guilds.items()):
            try:
                await self._rejoin(guild_id, stay)
            except Exception:
                log.exception("guild %s: rejoining the 24/7 channel failed", guild_id)

    async def _rejoin(self, guild_id: int, stay: Stay) -> None:
        guild = self.bot.get_guild(guild_id)
        if guild is None:
            log.info("guild %s: 24/7 mode off: no longer in that guild", guild_id)
            await self._put(guild_id, None)
            return
        if guild.voice_client is not None:
            return  # restored from its snapshot
        channel = guild.get_channel(stay.channel_id)
        if not isinstance(channel, discord.VoiceChannel):
            log.info("guild %s: 24/7 mode off: its voice channel is gone", guild_id)
            await self._put(guild_id, None)
            return
        try:
            preflight(channel, guild.me)
        except MusicError as exc:
            log.warning("guild %s: not rejoining the 24/7 channel #%s: %s", guild_id, channel.name, exc)
            return
        player = await self._connect(channel)
        home = guild.get_channel(stay.home_channel_id) if stay.home_channel_id else None
        player.home = home if isinstance(home, discord.abc.Messageable) else None
        log.info("guild %s: 24/7 mode: back in #%s after a restart", guild_id, channel.name)


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(StayCog(bot))
