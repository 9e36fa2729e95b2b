"""/search query: the top results in an ephemeral select menu; the pick is queued exactly as /play would
(commands/playback.py: Playback.request), and the menu expires after SEARCH_MENU_TIMEOUT seconds.

Only the member who searched sees an ephemeral message, so only they can pick; the view checks it anyway
(interaction_check), so a forged or replayed pick by someone else is refused, not played.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
import wavelink
from discord import app_commands
from discord.ext import commands

from commands.playback import MAX_QUERY, Playback, clean_query
from utils.checks import member_voice_channel
from utils.cooldowns import play_cooldown
from utils.embeds import track_length, track_title
from utils.errors import AudioUnavailable, MusicError, NotInVoice
from utils.formatting import truncate
from utils.replies import report_error

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

MAX_RESULTS = 10  # a short list reads better than Discord's maximum of 25 options


class SearchMenu(discord.ui.View):
    """The results of one /search, for the member who searched."""

    def __init__(self, playback: Playback, origin: discord.Interaction, tracks: list[wavelink.Playable],
                 timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.playback = playback
        self.origin = origin  # its token edits the ephemeral message (a bot cannot edit it any other way)
        self.owner_id = origin.user.id
        self.tracks = tracks
        self.busy = False  # a pick is being queued: a second pick must not queue a second song
        self.select: discord.ui.Select = discord.ui.Select(placeholder="Choose a song to play", options=[
            discord.SelectOption(label=truncate(track.title or "Unknown title", 100), value=str(index),
                                 description=truncate(f"{track.author or 'unknown'} · {track_length(track)}", 100))
            for index, track in enumerate(tracks)])
        self.select.callback = self.pick
        self.add_item(self.select)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message("This menu belongs to the member who searched. "
                                                "Use /search to get your own.", ephemeral=True)
        return False

    async def pick(self, interaction: discord.Interaction) -> None:
        if self.busy or self.is_finished():
            await interaction.response.send_message("You already picked a song from this menu.", ephemeral=True)
            return
        track = self.tracks[int(self.select.values[0])]
        self.busy = True
        try:
            queued = await self.playback.request(interaction, lambda: self._found(track))
        except Exception as exc:  # shown to the member; the menu stays, so they can fix it (join voice) and pick again
            self.busy = False
            await report_error(interaction, exc)
            return
        if not queued:
            self.busy = False  # "busy elsewhere" was the answer; the menu stays for another try
            return
        self.stop()
        try:
            await self.origin.edit_original_response(
                content=f"You picked **{track_title(track, in_message=True)}**.", view=None)
        except discord.HTTPException as exc:
            log.info("guild %s: could not close the search menu (%s)", interaction.guild_id, exc.status)

    @staticmethod
    async def _found(track: wavelink.Playable) -> list[wavelink.Playable]:
        return [track]

    async def on_timeout(self) -> None:
        try:
            await self.origin.edit_original_response(content="This search menu has expired. Use /search again.",
                                                     view=None)
        except discord.HTTPException as exc:
            log.info("guild %s: could not mark the search menu expired (%s)", self.origin.guild_id, exc.status)


class Search(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    @app_commands.command(name="search")
    @app_commands.guild_only()
    @play_cooldown()
    @app_commands.describe(query="What to search for; pick one of the results to play it")
    async def search(self, interaction: discord.Interaction, query: app_commands.Range[str, 1, MAX_QUERY]) -> None:
        """Search and pick one of the top results to play."""
        query = clean_query(query)  # the same rules as /play's query
        if member_voice_channel(interaction) is None:
            raise NotInVoice()
        playback = self.bot.get_cog("Playback")
        if not isinstance(playback, Playback):
            raise MusicError("Playing is unavailable right now; please try again later.")
        if not self.bot.lavalink.connected():
            raise AudioUnavailable()
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await playback.lookup(interaction, query)
        tracks = list(found.tracks if isinstance(found, wavelink.Playlist) else found)[:MAX_RESULTS]
        menu = SearchMenu(playback, interaction, tracks, timeout=self.bot.settings.search_menu_timeout)
        count = f"{len(tracks)} results" if len(tracks) != 1 else "1 result"
        await interaction.edit_original_response(
            content=f"{count} for “{truncate(query, 80)}”: pick one to play it.", view=menu)


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Search(bot))
