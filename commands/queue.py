"""The queue: /queue (paginated), /nowplaying, /loop, /shuffle, /remove, /move, /clear."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from utils.checks import ensure_can_control, get_player
from utils.cooldowns import control_cooldown
from utils.embeds import now_playing_embed, queue_embed, queue_page_count, track_title
from utils.errors import BadInput, NotConnected
from utils.player import MusicPlayer
from utils.replies import reply
from utils.tracklist import LoopMode, move, remove_at
from utils.views import dynamic_view

if TYPE_CHECKING:
    from bot import MusicBot

class QueuePageButton(discord.ui.DynamicItem[discord.ui.Button],
                      template=r"queue:(?P<owner>[0-9]{1,20}):(?P<page>[0-9]{1,6}):(?P<direction>prev|next)"):
    """Previous/next under a /queue answer. The page and the member who asked live in the custom id, so
    nothing is kept per message and old answers keep working; only that member may turn the pages."""

    def __init__(self, owner_id: int, page: int, direction: str, *, disabled: bool = False) -> None:
        label = "◀ Previous" if direction == "prev" else "Next ▶"
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, disabled=disabled,
                                           custom_id=f"queue:{owner_id}:{page}:{direction}"))
        self.owner_id = owner_id
        self.page = page

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> QueuePageButton:
        return cls(int(match["owner"]), int(match["page"]), match["direction"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await reply(interaction, "Use /queue to get your own view of the queue.")
            return False
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        player = get_player(interaction)
        if player is None:
            await reply(interaction, "I'm not playing here any more. Use /play to start.")
            return
        page = min(max(1, self.page), queue_page_count(player))
        await interaction.response.edit_message(embed=queue_embed(player, page),
                                                view=queue_view(player, self.owner_id, page))


def queue_view(player: MusicPlayer, owner_id: int, page: int) -> discord.ui.View:
    pages = queue_page_count(player)
    return dynamic_view(QueuePageButton(owner_id, max(page - 1, 1), "prev", disabled=page <= 1),
                        QueuePageButton(owner_id, min(page + 1, pages), "next", disabled=page >= pages))


class Queue(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue")
    @app_commands.guild_only()
    @app_commands.describe(page="Which page to show (10 songs per page)")
    async def queue(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1) -> None:
        """Show the queue, the time left and the loop mode."""
        player = get_player(interaction)
        if player is None:
            raise NotConnected()
        pages = queue_page_count(player)
        if page > pages:
            raise BadInput(f"The queue has {pages} page{'s' if pages != 1 else ''}.")
        await reply(interaction, embed=queue_embed(player, page), view=queue_view(player, interaction.user.id, page))

    @app_commands.command(name="nowplaying")
    @app_commands.guild_only()
    async def nowplaying(self, interaction: discord.Interaction) -> None:
        """Show the current song with its progress, volume and loop mode."""
        player = get_player(interaction)
        if player is None:
            raise NotConnected()
        await reply(interaction, embed=now_playing_embed(player))

    @app_commands.command(name="loop")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(mode="off, track (repeat this song) or queue (repeat the whole queue)")
    async def loop(self, interaction: discord.Interaction, mode: LoopMode) -> None:
        """Repeat the current song or the whole queue."""
        player = ensure_can_control(interaction)
        player.loop_mode = mode
        self.bot.dispatch("music_panel_refresh", player)
        wording = {LoopMode.off: "Looping is off.", LoopMode.track: "Looping the current song.",
                   LoopMode.queue: "Looping the whole queue."}[mode]
        await reply(interaction, wording, ephemeral=False)

    @app_commands.command(name="shuffle")
    @app_commands.guild_only()
    @control_cooldown()
    async def shuffle(self, interaction: discord.Interaction) -> None:
        """Shuffle the queue."""
        player = ensure_can_control(interaction)
        if len(player.queue) < 2:
            raise BadInput("There is nothing to shuffle: the queue has fewer than two songs.")
        player.queue.shuffle()
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Shuffled {len(player.queue)} songs.", ephemeral=False)

    @app_commands.command(name="remove")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.describe(position="Queue position of the song to remove (see /queue)")
    async def remove(self, interaction: discord.Interaction, position: app_commands.Range[int, 1, 100000]) -> None:
        """Remove one song from the queue."""
        player = ensure_can_control(interaction)
        track = remove_at(player.queue, position)
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Removed {track_title(track, in_message=True)} (was #{position}).", ephemeral=False)

    @app_commands.command(name="move")
    @app_commands.guild_only()
    @control_cooldown()
    @app_commands.rename(source="from", target="to")
    @app_commands.describe(source="Current position of the song", target="Position to move it to")
    async def move(self, interaction: discord.Interaction, source: app_commands.Range[int, 1, 100000],
                   target: app_commands.Range[int, 1, 100000]) -> None:
        """Move a song to another place in the queue."""
        player = ensure_can_control(interaction)
        track = move(player.queue, source, target)
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Moved {track_title(track, in_message=True)} from #{source} to #{target}.", ephemeral=False)

    @app_commands.command(name="clear")
    @app_commands.guild_only()
    @control_cooldown()
    async def clear(self, interaction: discord.Interaction) -> None:
        """Remove every song from the queue (the current one keeps playing)."""
        player = ensure_can_control(interaction)
        count = len(player.queue)
        if not count:
            raise BadInput("The queue is already empty.")
        player.queue.clear()
        self.bot.dispatch("music_panel_refresh", player)
        await reply(interaction, f"Cleared {count} song{'s' if count != 1 else ''} from the queue.", ephemeral=False)


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Queue(bot))
