"""/lyrics [query]: the lyrics of the song playing now, or of a search, from the node's LavaLyrics plugin
(utils/lyrics.py), in pages with previous/next buttons that only the member who asked can use.

The pages live in memory for LYRICS_TIMEOUT; then the buttons are removed from the answer. A button pressed
after that (or after a restart) says the pages expired and removes itself."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord
import wavelink
from discord import app_commands
from discord.ext import commands

from utils.checks import get_player
from utils.cooldowns import play_cooldown
from utils.embeds import COLOUR, track_title
from utils.errors import AudioUnavailable, BadInput, MusicError
from utils.formatting import truncate
from utils.lavalink import lavalink_call
from utils.lyrics import Lyrics, NoTrackOnNode, lyrics_for_player, lyrics_for_track, pages
from utils.player import MusicPlayer
from utils.views import dynamic_view

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

LYRICS_TIMEOUT = 300.0  # the buttons work this long (an interaction token lasts 15 minutes)
KEPT = 100  # open lyrics answers per bot; the oldest loses its buttons first
MAX_QUERY = 300
SEARCH_TIMEOUT = 10.0


@dataclass
class LyricsPages:
    """One /lyrics answer that can still be paged."""

    key: str
    owner_id: int
    guild_id: int
    title: str
    lyrics: Lyrics
    track_id: str | None  # the song's identifier when it is the one playing: its current line is marked
    interaction: discord.Interaction
    expiry: asyncio.Task[None] | None = field(default=None, repr=False)


class LyricsPageButton(discord.ui.DynamicItem[discord.ui.Button],
                       template=r"lyrics:(?P<key>[0-9a-f]{8}):(?P<page>[0-9]{1,4}):(?P<direction>prev|next)"):
    """Previous/next under a /lyrics answer; the page to show is in the custom id, the lyrics in the cog."""

    def __init__(self, key: str, page: int, direction: str, *, disabled: bool = False) -> None:
        label = "◀ Previous" if direction == "prev" else "Next ▶"
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, disabled=disabled,
                                           custom_id=f"lyrics:{key}:{page}:{direction}"))
        self.key = key
        self.page = page

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> LyricsPageButton:
        return cls(match["key"], int(match["page"]), match["direction"])

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("LyricsCog") if isinstance(interaction.client, commands.Bot) else None
        entry = cog.open.get(self.key) if isinstance(cog, LyricsCog) else None
        if entry is None:
            await interaction.response.edit_message(view=None)
            await interaction.followup.send("These lyrics pages have expired. Use /lyrics again.", ephemeral=True)
            return
        if interaction.user.id != entry.owner_id:
            await interaction.response.send_message("Only the member who asked can turn these pages. Use /lyrics "
                                                    "to get your own.", ephemeral=True)
            return
        embed, view = render(entry, self.page, get_player(interaction))
        await interaction.response.edit_message(embed=embed, view=view)


def render(entry: LyricsPages, page: int | None,
           player: MusicPlayer | None) -> tuple[discord.Embed, discord.ui.View | None]:
    """The embed of one page (None: the page being sung now), and its buttons (None for a single page)."""
    current = player.current if player is not None else None
    playing_it = current is not None and entry.track_id is not None and current.identifier == entry.track_id
    texts, now_page = pages(entry.lyrics, player.position if playing_it and player is not None else None)
    index = min(max(0, now_page if page is None else page), len(texts) - 1)
    embed = discord.Embed(title=truncate(f"Lyrics: {entry.title}", 256), description=texts[index], colour=COLOUR)
    embed.set_footer(text=f"Page {index + 1}/{len(texts)} · {entry.lyrics.credit()}")
    if len(texts) == 1:
        return embed, None
    return embed, dynamic_view(
        LyricsPageButton(entry.key, max(index - 1, 0), "prev", disabled=index == 0),
        LyricsPageButton(entry.key, min(index + 1, len(texts) - 1), "next", disabled=index >= len(texts) - 1))


class LyricsCog(commands.Cog, name="LyricsCog"):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot
        self.open: OrderedDict[str, LyricsPages] = OrderedDict()
        self._tidying: set[asyncio.Task[None]] = set()  # button removals of evicted answers, referenced till done

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(LyricsPageButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(LyricsPageButton)
        for entry in self.open.values():
            if entry.expiry is not None:
                entry.expiry.cancel()
        self.open.clear()

    # ---- keeping answers pageable for a while ------------------------------------------------------------

    def keep(self, entry: LyricsPages, timeout: float = LYRICS_TIMEOUT) -> None:
        self.open[entry.key] = entry
        entry.expiry = asyncio.create_task(self._expire(entry.key, timeout), name="lyrics-expiry")
        while len(self.open) > KEPT:
            oldest = next(iter(self.open.values()))
            if oldest.expiry is not None:
                oldest.expiry.cancel()
            self.open.pop(oldest.key, None)
            task = asyncio.create_task(self._remove_buttons(oldest), name="lyrics-expiry")
            self._tidying.add(task)
            task.add_done_callback(self._tidying.discard)

    async def _expire(self, key: str, timeout: float) -> None:
        await asyncio.sleep(timeout)
        entry = self.open.pop(key, None)
        if entry is not None:
            await self._remove_buttons(entry)

    @staticmethod
    async def _remove_buttons(entry: LyricsPages) -> None:
        try:
            await entry.interaction.edit_original_response(view=None)
        except discord.HTTPException as exc:  # deleted, or the token is gone: nothing left to tidy
            log.info("guild %s: could not remove the lyrics buttons (%s)", entry.guild_id, exc.status)

    # ---- /lyrics --------------------------------------------------------------------------------------

    async def _search(self, query: str) -> wavelink.Playable:
        try:
            found = await lavalink_call(wavelink.Playable.search(query), SEARCH_TIMEOUT)
        except wavelink.LavalinkLoadException as exc:
            raise BadInput(f"I couldn't load that: {truncate(exc.error or 'unknown error', 150)}.") from None
        tracks = list(found.tracks) if isinstance(found, wavelink.Playlist) else list(found)
        if not tracks:
            raise BadInput(f"No results for “{truncate(query, 80)}”. Try other words or a direct link.")
        return tracks[0]

    async def _find(self, interaction: discord.Interaction, query: str | None
                    ) -> tuple[wavelink.Playable, Lyrics | None, bool]:
        """The track, its lyrics, and whether it is the song playing here now."""
        player = get_player(interaction)
        if query is None:
            if player is None or player.current is None:
                raise NoTrackOnNode()
            return player.current, await lyrics_for_player(player), True
        track = await self._search(query)
        node = player.node if player is not None else wavelink.Pool.get_node()
        playing = player is not None and player.current is not None and player.current.identifier == track.identifier
        return track, await lyrics_for_track(node, track), playing

    @app_commands.command(name="lyrics")
    @play_cooldown()  # a lookup on the audio server, like /play's
    @app_commands.guild_only()
    @app_commands.describe(query="A song to look up (default: the song playing now)")
    async def lyrics(self, interaction: discord.Interaction,
                     query: app_commands.Range[str, 1, MAX_QUERY] | None = None) -> None:
        """Show the lyrics of the song playing now, or of a song you name."""
        if query is not None:
            query = "".join(ch for ch in query if ch.isprintable()).strip() or None
        if not self.bot.lavalink.connected():
            raise AudioUnavailable()
        await interaction.response.defer(ephemeral=True, thinking=True)  # lyrics sites can take seconds
        try:
            track, found, playing = await self._find(interaction, query)
            if found is None:
                raise BadInput(f"No lyrics found for **{track_title(track, 80, in_message=True)}**.")
        except MusicError as exc:
            log.info("guild %s: /lyrics refused: %s", interaction.guild_id, exc)
            await interaction.edit_original_response(content=str(exc))
            return
        entry = LyricsPages(key=secrets.token_hex(4), owner_id=interaction.user.id, guild_id=interaction.guild_id or 0,
                            title=f"{track.title} — {track.author}" if track.author else track.title, lyrics=found,
                            track_id=track.identifier if playing else None, interaction=interaction)
        embed, view = render(entry, None, get_player(interaction))
        if view is not None:
            self.keep(entry)
        await interaction.edit_original_response(embed=embed, **({"view": view} if view is not None else {}))

    @lyrics.autocomplete("query")
    async def lyrics_autocomplete(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[str]]:
        current = "".join(ch for ch in current if ch.isprintable()).strip()
        if len(current) < 2 or current.startswith(("http://", "https://")) or not self.bot.lavalink.connected():
            return []
        try:
            found = await asyncio.wait_for(wavelink.Playable.search(current[:MAX_QUERY]), 2.0)
        except Exception:
            return []  # autocomplete is best effort; /lyrics itself reports errors
        tracks = found.tracks if isinstance(found, wavelink.Playlist) else found
        return [app_commands.Choice(name=truncate(f"{t.title} — {t.author}", 100),
                                    value=t.uri if t.uri and len(t.uri) <= 100 else truncate(t.title, 100))
                for t in tracks[:25]]


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(LyricsCog(bot))
