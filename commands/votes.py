"""Vote skip: how /skip and the panel's skip button count a vote, and what happens to open votes when
listeners come and go. The rule itself (who votes, how many are needed) is utils/votes.py."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from utils.checks import may_skip_at_once
from utils.embeds import track_title
from utils.errors import MusicError
from utils.lavalink import lavalink_call
from utils.player import MusicPlayer
from utils.votes import Tally, cast, tally

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)


def vote(interaction: discord.Interaction, player: MusicPlayer) -> tuple[Tally, bool] | None:
    """None when the member skips at once (requester, DJ); else their vote is counted: (tally, new vote?)."""
    if may_skip_at_once(interaction, player):
        return None
    return cast(player, interaction.user.id)


def vote_line(interaction: discord.Interaction, player: MusicPlayer, count: Tally, new: bool, *,
              public: bool = True) -> str:
    """The answer to a vote that did not skip (yet): for the channel (`public`), or for the voter alone."""
    title = track_title(player.current, in_message=True) if player.current else "this song"
    if not new:
        return f"You already voted to skip **{title}** ({count})."
    who = interaction.user.mention if public else "You"
    return f"{who} voted to skip **{title}** ({count})."


class Votes(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        """A listener left or joined the bot's channel while a vote is open: a leaver's vote goes, the tally
        follows the listeners, and a vote that is now a majority skips."""
        if member.bot or before.channel == after.channel:
            return
        player = member.guild.voice_client
        if not isinstance(player, MusicPlayer) or player.channel is None or not player.skip_votes:
            return
        if player.channel not in (before.channel, after.channel):
            return
        count = tally(player)
        current = player.current
        if count.votes and count.passed and current is not None:
            log.info("guild %s: skip vote passed after a listener left (%s)", member.guild.id, count)
            player.skip_votes.clear()
            try:
                await lavalink_call(player.skip(force=True))
            except MusicError as exc:  # the audio server is unreachable: the votes are spent, say nothing false
                log.info("guild %s: could not skip after the vote passed: %s", member.guild.id, exc)
                return
            await player.say(f"Skipped **{track_title(current, in_message=True)}**: the vote passed ({count}).")
            return
        self.bot.dispatch("music_panel_refresh", player)


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Votes(bot))
