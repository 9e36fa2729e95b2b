"""The now-playing panel: posted when a song starts, refreshed by commands, removed when the queue ends;
and the messages about songs that failed. Recovery from outages is commands/recovery.py."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord
import wavelink
from discord.ext import commands

from commands.lyrics import LyricsPageButton
from commands.queue import QueuePageButton, queue_view
from commands.votes import vote, vote_line
from utils.checks import ensure_can_control, ensure_listener, get_player
from utils.embeds import now_playing_embed, queue_embed
from utils.errors import BadInput, MusicError
from utils.formatting import truncate
from utils.lavalink import lavalink_call
from utils.player import MusicPlayer
from utils.replies import reply, report_error
from utils.tracklist import LoopMode
from utils.views import dynamic_view

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

PANEL_ACTIONS = ("pause", "skip", "stop", "loop", "shuffle", "queue")


class PanelButton(discord.ui.DynamicItem[discord.ui.Button], template=r"panel:(?P<action>[a-z]{1,16})"):
    """One button of the now-playing panel. Dynamic (state in the custom id, nothing kept per message), so
    panels keep working across restarts and never pile up in memory; the callback checks that the pressed
    panel is the guild's current one."""

    def __init__(self, action: str, player: MusicPlayer | None = None) -> None:
        label, emoji, style = _look(action, player)
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"panel:{action}"))
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> PanelButton:
        return cls(match["action"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        player = get_player(interaction)
        message = interaction.message
        if self.action not in PANEL_ACTIONS:
            await reply(interaction, "This button is not one of mine any more. Use /nowplaying.")
            return False
        if player is None or player.panel_message is None or message is None or message.id != player.panel_message.id:
            await reply(interaction, "This panel is outdated. Use the newest one, or /nowplaying.")
            return False
        try:
            if self.action == "skip":
                ensure_listener(interaction)  # listeners who are not DJs vote (commands/votes.py)
            else:
                ensure_can_control(interaction)
        except MusicError as exc:
            await reply(interaction, str(exc))
            return False
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await PANEL_HANDLERS[self.action](interaction)
        except Exception as exc:
            await report_error(interaction, exc)


def _look(action: str, player: MusicPlayer | None) -> tuple[str, str | None, discord.ButtonStyle]:
    if action == "pause":
        paused = player is not None and player.paused
        return ("Resume", "▶️", discord.ButtonStyle.success) if paused else ("Pause", "⏸️", discord.ButtonStyle.primary)
    if action == "loop":
        return (f"Loop: {player.loop_mode.value if player else 'off'}", "🔁", discord.ButtonStyle.secondary)
    return {
        "skip": ("Skip", "⏭️", discord.ButtonStyle.secondary),
        "stop": ("Stop", "⏹️", discord.ButtonStyle.danger),
        "shuffle": ("Shuffle", "🔀", discord.ButtonStyle.secondary),
        "queue": ("Queue", "📜", discord.ButtonStyle.secondary),
    }.get(action, (action.title(), None, discord.ButtonStyle.secondary))


def panel_view(player: MusicPlayer) -> discord.ui.View:
    return dynamic_view(*(PanelButton(action, player) for action in PANEL_ACTIONS))


async def _refresh(interaction: discord.Interaction, player: MusicPlayer) -> None:
    await interaction.response.edit_message(embed=now_playing_embed(player), view=panel_view(player))


async def _pause(interaction: discord.Interaction) -> None:
    player = ensure_can_control(interaction, need_track=True)
    await interaction.response.defer()  # acknowledge within Discord's 3 s even if the audio server is slow
    async with player.control_lock:  # a second press decides from the first one's outcome: pause, then resume
        await lavalink_call(player.pause(not player.paused))
    await interaction.edit_original_response(embed=now_playing_embed(player), view=panel_view(player))


async def _skip(interaction: discord.Interaction) -> None:
    player = ensure_listener(interaction, need_track=True)
    counted = vote(interaction, player)  # None: requester or DJ, who skip at once
    if counted is not None and not counted[0].passed:
        await interaction.response.edit_message(embed=now_playing_embed(player), view=panel_view(player))
        await interaction.followup.send(vote_line(interaction, player, *counted, public=False), ephemeral=True)
        return
    passed = f" (the vote passed, {counted[0]})" if counted is not None and counted[0].needed > 1 else ""
    # Answer first: skipping starts the next track, whose panel replaces (deletes) this message.
    await interaction.response.edit_message(content=f"⏭️ Skipped by {interaction.user.mention}{passed}.", view=None)
    await lavalink_call(player.skip(force=True))


async def _stop(interaction: discord.Interaction) -> None:
    player = ensure_can_control(interaction)
    player.clear_all()
    player.panel_message = None  # this message stays as the record of the stop; the track end must not delete it
    await interaction.response.edit_message(
        content=f"Stopped by {interaction.user.mention}; the queue is cleared.", embed=None, view=None)
    if player.current is not None:
        await lavalink_call(player.skip(force=True))


async def _loop(interaction: discord.Interaction) -> None:
    player = ensure_can_control(interaction)
    player.loop_mode = player.loop_mode.next()
    await _refresh(interaction, player)


async def _shuffle(interaction: discord.Interaction) -> None:
    player = ensure_can_control(interaction)
    if len(player.queue) < 2:
        raise BadInput("There is nothing to shuffle: the queue has fewer than two songs.")
    player.queue.shuffle()
    await _refresh(interaction, player)


async def _queue(interaction: discord.Interaction) -> None:
    player = get_player(interaction)
    assert player is not None
    await reply(interaction, embed=queue_embed(player, 1), view=queue_view(player, interaction.user.id, 1))


PANEL_HANDLERS = {"pause": _pause, "skip": _skip, "stop": _stop, "loop": _loop, "shuffle": _shuffle,
                  "queue": _queue}


class Panel(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(PanelButton, QueuePageButton)  # route every panel:* and queue:* button

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(PanelButton, QueuePageButton)

    # ---- the panel message --------------------------------------------------------------------------

    async def _delete_panel(self, player: MusicPlayer) -> None:
        message, player.panel_message = player.panel_message, None
        if message is not None:
            try:
                await message.delete()
            except discord.HTTPException:
                pass  # already gone, or no permission: a stale panel answers "outdated" anyway

    async def replace_panel(self, player: MusicPlayer) -> None:
        """Post a fresh panel for the current track, deleting the previous one (never two panels).

        Songs can change faster than a channel takes messages (Discord allows about 5 per 5 s, and discord.py
        queues the rest): replacements run one at a time, and those asked for while one runs become a single
        one after it, for the song playing by then. Without that, rapid skips piled up waiting requests
        (each holding its panel) and posted every outdated panel in turn, two of them at once at times."""
        player.panel_wanted = True
        if player.panel_lock.locked():
            return  # the running replacement goes round once more
        async with player.panel_lock:
            while player.panel_wanted:
                player.panel_wanted = False
                await self._replace_panel_once(player)

    async def _replace_panel_once(self, player: MusicPlayer) -> None:
        await self._delete_panel(player)
        if player.home is None or player.current is None:
            return
        note, player.restored_note = player.restored_note, None
        try:
            player.panel_message = await player.home.send(content=note, embed=now_playing_embed(player),
                                                          view=panel_view(player))
        except discord.HTTPException as exc:
            log.info("guild %s: could not post the panel (%s)", getattr(player.guild, "id", "?"), exc.status)

    @commands.Cog.listener()
    async def on_music_panel_refresh(self, player: MusicPlayer) -> None:
        if player.panel_lock.locked():  # a replacement under way may have built its panel already
            player.panel_wanted = True  # so it goes round once more, with the state as it is now
            return
        message = player.panel_message
        if message is None or player.current is None:
            return
        try:
            await message.edit(embed=now_playing_embed(player), view=panel_view(player))
        except discord.HTTPException:
            if player.panel_message is message:  # not if a new panel replaced it meanwhile
                player.panel_message = None

    # ---- track events --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_wavelink_track_start(self, payload: wavelink.TrackStartEventPayload) -> None:
        player = payload.player
        if isinstance(player, MusicPlayer):
            player.reset_progress()
            player.trim_history()
            player.skip_votes.clear()  # votes are for the song that was playing
            await self.replace_panel(player)

    @commands.Cog.listener()
    async def on_wavelink_track_end(self, payload: wavelink.TrackEndEventPayload) -> None:
        player = payload.player
        if not isinstance(player, MusicPlayer) or payload.reason == "replaced":
            return
        # A loop (track or queue) always has a next track: wavelink plays it right after this event.
        looping = player.loop_mode is not LoopMode.off
        if player.current is None and not player.queue and not player.autoplay_on and not looping:
            await self._delete_panel(player)
            if payload.reason == "finished":
                await player.say("The queue is finished. Add more with /play.")

    @commands.Cog.listener()
    async def on_wavelink_track_exception(self, payload: wavelink.TrackExceptionEventPayload) -> None:
        player = payload.player
        if isinstance(player, MusicPlayer):
            reason = truncate(payload.exception.get("message") or "playback failed", 120)
            await player.say(f"Couldn't play **{truncate(payload.track.title, 80)}** ({reason}); skipping it.")

    # ---- stale buttons -------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Answer buttons none of our items handles (from an older version, or forged) instead of failing
        silently. Every id our messages carry matches one of the dynamic templates."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = str((interaction.data or {}).get("custom_id", ""))
        if any(cls.__discord_ui_compiled_template__.fullmatch(custom_id)
               for cls in (PanelButton, QueuePageButton, LyricsPageButton)):
            return
        try:
            await interaction.response.send_message("This button has expired. Use the command again.", ephemeral=True)
        except discord.HTTPException:
            pass


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Panel(bot))
