"""/play and the commands that steer playback: pause, resume, skip, stop, disconnect, seek, previous,
volume, autoplay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import discord
import wavelink
from discord import app_commands
from discord.ext import commands

from commands.recovery import RecoveringPlayer
from commands.votes import vote, vote_line
from utils.autocomplete import ChoiceCache, SearchThrottle
from utils.checks import ensure_can_control, ensure_listener, get_player, member_voice_channel, preflight
from utils.cooldowns import control_cooldown, play_cooldown
from utils.embeds import added_message, playlist_message, track_length
from utils.errors import AudioUnavailable, BadInput, MusicError, NotInVoice
from utils.fleet import SiblingDirectory, busy_message
from utils.formatting import format_duration, parse_time, truncate
from utils.lavalink import WRITE_TIMEOUT, lavalink_call, node_write
from utils.player import MusicPlayer, tag_requester
from utils.replies import defer_public, reply
from utils.tracklist import room_left, skip_to
from utils.turnstile import Turnstile

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

SEARCH_PATIENCE = 2.5  # after this, tell the user the search is slow ...
SEARCH_TIMEOUT = 12.0  # ... and give up after this
MAX_QUERY = 300
VOICE_TIMEOUT = 10.0  # joining or moving: Discord's voice server answer usually takes well under a second


def clean_query(query: str) -> str:
    query = "".join(ch for ch in query if ch.isprintable()).strip()
    if not query:
        raise BadInput("Tell me what to play: a song name, a track URL or a playlist URL.")
    if len(query) > MAX_QUERY:
        raise BadInput(f"That search is too long ({len(query)} characters); keep it under {MAX_QUERY}.")
    return query


class Playback(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot
        self.siblings = SiblingDirectory(bot.settings.siblings.values())
        self.turnstiles: dict[int, Turnstile] = {}  # guild id -> order of /play commands in flight
        self.suggestions: ChoiceCache[list[app_commands.Choice[str]]] = ChoiceCache()  # autocomplete, per bot
        self.search_throttle = SearchThrottle()

    # ---- /play -------------------------------------------------------------------------------------

    async def _search(self, interaction: discord.Interaction, query: str) -> wavelink.Search:
        search = asyncio.ensure_future(wavelink.Playable.search(query))
        try:
            done, _ = await asyncio.wait({search}, timeout=SEARCH_PATIENCE)
            if not done:
                await interaction.edit_original_response(content="Still searching: the audio server is slow…")
            return await lavalink_call(search, SEARCH_TIMEOUT - SEARCH_PATIENCE)
        except wavelink.LavalinkLoadException as exc:
            raise BadInput(f"I couldn't load that: {truncate(exc.error or 'unknown error', 150)}.") from None
        finally:
            search.cancel()

    async def _answer_busy(self, interaction: discord.Interaction, where: discord.abc.GuildChannel) -> None:
        """"I'm playing elsewhere, try these": acknowledged first, since finding free siblings may need REST."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild is not None
        free = await self.siblings.free_in(interaction.guild)
        await interaction.edit_original_response(content=busy_message(where, free))

    async def _follow(self, player: MusicPlayer, channel: discord.VoiceChannel) -> None:
        """Move an idle player to the member's channel; a move Discord never confirms is an error, not a hang."""
        try:
            await player.move_to(channel, timeout=VOICE_TIMEOUT, self_deaf=True)
        except (wavelink.ChannelTimeoutException, asyncio.TimeoutError):
            raise MusicError(f"I couldn't move to {channel.mention} in time. Please try again.") from None
        if player.channel is None or player.channel.id != channel.id:
            raise MusicError(f"I couldn't move to {channel.mention}. Please try again.")

    async def join(self, channel: discord.VoiceChannel) -> MusicPlayer:
        """Join `channel` (after the interaction was acknowledged) at the guild's volume; a join Discord never
        confirms is an error with a message, not a hang. /play and /stay join through here."""
        try:
            player = await channel.connect(cls=RecoveringPlayer, self_deaf=True, timeout=VOICE_TIMEOUT)
        except (wavelink.ChannelTimeoutException, asyncio.TimeoutError):
            if channel.guild.voice_client is not None:
                await channel.guild.voice_client.disconnect(force=True)
            raise MusicError(f"I couldn't connect to {channel.mention} in time. Please try again.") from None
        except discord.ClientException:
            raise MusicError("I'm already connecting to a voice channel here; try again in a moment.") from None
        assert isinstance(player, MusicPlayer)
        volume = self.bot.guild_volumes.get(channel.guild.id)
        if volume is not None and volume != player.volume:
            await lavalink_call(player.set_volume(volume), WRITE_TIMEOUT)
        return player

    @app_commands.command(name="play")
    @app_commands.guild_only()
    @play_cooldown()
    @app_commands.describe(query="A song name to search for, a track URL or a playlist URL")
    async def play(self, interaction: discord.Interaction, query: app_commands.Range[str, 1, MAX_QUERY]) -> None:
        """Play a song or playlist, or add it to the queue."""
        query = clean_query(query)
        await self.request(interaction, lambda: self.lookup(interaction, query))

    async def lookup(self, interaction: discord.Interaction, query: str) -> wavelink.Search:
        """Search results for `query` (after the interaction is acknowledged); BadInput when there are none."""
        found = await self._search(interaction, query)
        if not found:
            raise BadInput(f"No results for “{truncate(query, 80)}”. Try other words or a direct link.")
        return found

    async def request(self, interaction: discord.Interaction,
                      find: Callable[[], Awaitable[wavelink.Search]]) -> bool:
        """The one path of a request to play, /play's and a /search pick's: the member's voice channel, the busy
        answer, preflight, then (acknowledged) following, `find`, joining and queueing, in the order the
        requests were made, answered with the public "Now playing"/"Queued" line. False: answered "busy"."""
        guild = interaction.guild
        assert guild is not None
        channel = member_voice_channel(interaction)
        if channel is None:
            raise NotInVoice()
        player = get_player(interaction)
        follow = False
        if player is not None and player.channel is not None and player.channel.id != channel.id:
            if player.current is not None or bool(player.queue) or bool(player.listeners()):
                await self._answer_busy(interaction, player.channel)
                return False
            follow = True  # idle and nobody listening: follow the member
        if player is None or follow:
            preflight(channel, guild.me)  # refuse at once, before any slow step
        if not self.bot.lavalink.connected():
            raise AudioUnavailable()

        turnstile = self.turnstiles.setdefault(guild.id, Turnstile())
        ticket = turnstile.take()  # before the first await: the order users sent their commands in
        try:
            await defer_public(interaction)  # acknowledged before anything slow: moving, searching
            if follow and player is not None:
                await self._follow(player, channel)
            found = await find()
            await turnstile.wait(ticket)
            await self._enqueue(interaction, channel, found)
            return True
        finally:
            await turnstile.done(ticket)
            if turnstile.idle:
                self.turnstiles.pop(guild.id, None)

    async def _enqueue(self, interaction: discord.Interaction, channel: discord.VoiceChannel,
                       found: wavelink.Search) -> None:
        guild = channel.guild
        player = get_player(interaction)  # again: an earlier /play may have joined while we searched
        if player is None:
            preflight(channel, guild.me)
            player = await self.join(channel)
        elif player.channel is not None and player.channel.id != channel.id:
            raise MusicError(busy_message(player.channel, await self.siblings.free_in(guild)))
        if player.home is None and interaction.channel is not None:
            player.home = interaction.channel  # where the now-playing panel lives

        limit = self.bot.settings.max_queue
        room = room_left(player.queue, limit)
        if room == 0:
            raise BadInput(f"The queue is full ({limit} tracks). Skip or remove some first.")

        if isinstance(found, wavelink.Playlist):
            tracks = list(found.tracks)[:room]
            for track in tracks:
                tag_requester(track, interaction.user.id)
            player.queue.put(tracks)
            message = playlist_message(found.name, len(tracks), len(found.tracks) - len(tracks), interaction.user)
            first = None
        else:
            first = found[0]
            tag_requester(first, interaction.user.id)
            player.queue.put(first)
            message = None

        starting = player.current is None
        if starting:
            await lavalink_call(player.play(player.queue.get()), WRITE_TIMEOUT)  # already acknowledged
        if message is None:
            message = added_message(first, None if starting else len(player.queue), interaction.user)
        await interaction.edit_original_response(content=message)

    @play.autocomplete("query")
    async def play_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """Search results as choices; a short cache and one search per member per 300 ms (utils/autocomplete.py)."""
        current = "".join(ch for ch in current if ch.isprintable()).strip()[:MAX_QUERY]
        if len(current) < 2 or current.startswith(("http://", "https://")) or not self.bot.lavalink.connected():
            return []
        cached = self.suggestions.get(current)
        if cached is not None:
            return cached
        ticket = self.search_throttle.arrive(interaction.user.id)
        if ticket.wait > 0:
            await asyncio.sleep(ticket.wait + 0.01)  # a little past the gap: the clock must have moved beyond it
            cached = self.suggestions.get(current)  # someone may have searched the same meanwhile
            if cached is not None:
                return cached
        if not self.search_throttle.claim(ticket):
            return []  # superseded by a newer keystroke of this member
        try:
            found = await asyncio.wait_for(wavelink.Playable.search(current), 2.0)
        except Exception:
            return []  # autocomplete is best effort; /play itself reports errors
        tracks = found.tracks if isinstance(found, wavelink.Playlist) else found
        choices = []
        for track in tracks[:25]:
            name = truncate(f"{track.title} — {track.author} ({track_length(track)})", 100)
            value = track.uri if track.uri and len(track.uri) <= 100 else truncate(track.title, 100)
            choices.append(app_commands.Choice(name=name, value=value))
        self.suggestions.put(current, choices)
        return choices

    # ---- controls ----------------------------------------------------------------------------------

    @app_commands.command(name="pause")
    @app_commands.guild_only()
    @control_cooldown()
    async def pause(self, interaction: discord.Interaction) -> None:
        """Pause the current song."""
        player = ensure_can_control(interaction, need_track=True)
        if player.paused:
            await reply(interaction, "Already paused. Use /resume to continue.")
            return
        await node_write(interaction, player.pause(True))
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Paused by {interaction.user.mention}.", ephemeral=False)

    @app_commands.command(name="resume")
    @app_commands.guild_only()
    @control_cooldown()
    async def resume(self, interaction: discord.Interaction) -> None:
        """Resume the paused song."""
        player = ensure_can_control(interaction, need_track=True)
        if not player.paused:
            await reply(interaction, "It's already playing.")
            return
        await node_write(interaction, player.pause(False))
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Resumed by {interaction.user.mention}.", ephemeral=False)

    @app_commands.command(name="skip")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(to="Skip straight to this queue position (default: the next song)")
    async def skip(self, interaction: discord.Interaction, to: app_commands.Range[int, 1, 100000] | None = None):
        """Skip the current song (or vote to), or jump to a position in the queue."""
        player = ensure_listener(interaction, need_track=True)
        counted = vote(interaction, player)  # None: requester or DJ, who skip at once
        if counted is not None and to is not None:
            raise BadInput("Only the requester of this song or a DJ can jump ahead in the queue. "
                           "/skip without a position votes to skip this song.")
        if counted is not None and not counted[0].passed:
            self.bot.dispatch("music_panel_refresh", player)
            await reply(interaction, vote_line(interaction, player, *counted), ephemeral=not counted[1])
            return
        dropped = skip_to(player.queue, to) if to is not None else 0
        skipped = player.current
        await node_write(interaction, player.skip(force=True))
        extra = f" and {dropped} more" if dropped else ""
        passed = f": the vote passed ({counted[0]})" if counted is not None and counted[0].needed > 1 else ""
        await reply(interaction, f"Skipped **{truncate(skipped.title if skipped else '?', 80)}**{extra}{passed}.",
                    ephemeral=False)

    @app_commands.command(name="stop")
    @app_commands.guild_only()
    @control_cooldown()
    async def stop(self, interaction: discord.Interaction) -> None:
        """Stop playing and clear the queue (I stay in the channel)."""
        player = ensure_can_control(interaction)
        player.clear_all()
        if player.current is not None:
            await node_write(interaction, player.skip(force=True))
        await reply(interaction, f"Stopped and cleared the queue ({interaction.user.mention}).", ephemeral=False)

    @app_commands.command(name="disconnect")
    @app_commands.guild_only()
    @control_cooldown()
    async def disconnect(self, interaction: discord.Interaction) -> None:
        """Leave the voice channel and forget the queue."""
        player = ensure_can_control(interaction)
        channel = player.channel
        staying = interaction.guild_id is not None and self.bot.stays.get(interaction.guild_id) is not None
        await player.leave(None)
        self.bot.dispatch("music_disconnect_requested", interaction.guild_id)  # ends 24/7 mode (commands/stay.py)
        await reply(interaction, f"Left {channel.mention if channel else 'the voice channel'}. Bye!"
                    + (" 24/7 mode is off." if staying else ""), ephemeral=False)

    @app_commands.command(name="seek")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(time="Where to jump to, like 1:23 or 1:02:03 (or seconds)")
    async def seek(self, interaction: discord.Interaction, time: app_commands.Range[str, 1, 16]) -> None:
        """Jump to a time in the current song."""
        player = ensure_can_control(interaction, need_track=True)
        try:
            target = parse_time(time)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        track = player.current
        assert track is not None
        if track.is_stream or not track.is_seekable:
            raise BadInput("This is a live stream (or not seekable): there is nothing to seek.")
        if target >= track.length:
            raise BadInput(f"This song is only {format_duration(track.length)} long; pick a time before that.")
        await node_write(interaction, player.seek(target))
        await reply(interaction, f"Jumped to {format_duration(target)}.", ephemeral=False)

    @app_commands.command(name="previous")
    @app_commands.guild_only()
    @control_cooldown()
    async def previous(self, interaction: discord.Interaction) -> None:
        """Play the previous song again (the current one goes back to the queue)."""
        player = ensure_can_control(interaction)
        if player.previous_track() is None:
            raise BadInput("There is no previous song in this session's history.")
        track = await node_write(interaction, player.play_previous())
        await reply(interaction, f"Back to **{truncate(track.title, 80)}**.", ephemeral=False)

    @app_commands.command(name="volume")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(level="Volume in percent, 0 to 150")
    async def volume(self, interaction: discord.Interaction, level: app_commands.Range[int, 0, 150]) -> None:
        """Set the volume (0-150%)."""
        player = ensure_can_control(interaction)
        if not 0 <= level <= 150:
            raise BadInput("Volume goes from 0 to 150.")
        await node_write(interaction, player.set_volume(level))
        self.bot.guild_volumes[player.guild.id] = level
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Volume set to {level}%.", ephemeral=False)

    @app_commands.command(name="autoplay")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(mode="on: keep playing related songs when the queue runs out")
    async def autoplay(self, interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        """Turn autoplay of related songs on or off."""
        player = ensure_can_control(interaction)
        if mode not in ("on", "off"):  # Discord enforces the choices; a forged payload still gets an answer
            raise BadInput("Autoplay is either on or off.")
        player.set_autoplay(mode == "on")
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Autoplay is now {mode}.", ephemeral=False)


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Playback(bot))
