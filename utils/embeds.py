"""How tracks, the now-playing panel and queue pages look. Pure: no I/O."""

from __future__ import annotations

import math

import discord
import wavelink

from utils.formatting import escape_markdown, format_duration, progress_bar, truncate
from utils.player import MusicPlayer, requester_id
from utils.tracklist import remaining_ms
from utils.votes import tally

QUEUE_PAGE_SIZE = 10
COLOUR = discord.Colour.blurple()


def track_title(track: wavelink.Playable, limit: int = 80, *, in_message: bool = False) -> str:
    """Markdown-safe title, linked when the track has a URL. In message content the link is written <url> so
    Discord shows no preview card under the reply."""
    title = escape_markdown(truncate(track.title or "Unknown title", limit))
    if not track.uri or not track.uri.startswith(("http://", "https://")) or any(c in track.uri for c in "<> ()"):
        return title
    return f"[{title}](<{track.uri}>)" if in_message else f"[{title}]({track.uri})"


def track_length(track: wavelink.Playable) -> str:
    return "live" if track.is_stream else format_duration(track.length)


def requester_mention(track: wavelink.Playable | None) -> str:
    uid = requester_id(track)
    return f"<@{uid}>" if uid else "autoplay"


def added_message(track: wavelink.Playable, position: int | None, requester: discord.abc.User) -> str:
    """Reply to /play for a single track. `position` None = starts playing now."""
    where = "Now playing" if position is None else f"Queued at position {position}"
    return (f"{where}: **{track_title(track, in_message=True)}** by {escape_markdown(truncate(track.author or 'unknown', 60))} "
            f"({track_length(track)}), requested by {requester.mention}.")


def playlist_message(name: str, added: int, skipped: int, requester: discord.abc.User) -> str:
    text = f"Added **{added}** track{'s' if added != 1 else ''} from **{escape_markdown(truncate(name, 80))}**"
    if skipped:
        text += f" ({skipped} left out: the queue is full)"
    return text + f", requested by {requester.mention}."


def now_playing_embed(player: MusicPlayer) -> discord.Embed:
    track = player.current
    if track is None:
        return discord.Embed(title="Nothing playing", description="Use /play to add a song.", colour=COLOUR)
    position = player.position
    bar = progress_bar(position, track.length) if not track.is_stream else "🔴 LIVE"
    timing = f"{format_duration(position)} / {track_length(track)}" if not track.is_stream else "live stream"
    embed = discord.Embed(title="Now playing", description=f"**{track_title(track, 200)}**\n{bar} `{timing}`",
                          colour=COLOUR)
    embed.add_field(name="Artist", value=escape_markdown(truncate(track.author or "unknown", 100)))
    embed.add_field(name="Requested by", value=requester_mention(track))
    embed.add_field(name="Volume", value=f"{player.volume}%")
    embed.add_field(name="Loop", value=player.loop_mode.value)
    embed.add_field(name="Autoplay", value="on" if player.autoplay_on else "off")
    if player.effects.active:
        embed.add_field(name="Effects", value=player.effects.label())
    state = "paused" if player.paused else "playing"
    embed.add_field(name="Up next", value=(track_title(player.queue[0], 60) if player.queue else "nothing queued"))
    if player.skip_votes:
        embed.add_field(name="Vote to skip", value=str(tally(player)))
    embed.set_footer(text=f"{state} · {len(player.queue)} in queue")
    if track.artwork:
        embed.set_thumbnail(url=track.artwork)
    return embed


def queue_page_count(player: MusicPlayer) -> int:
    return max(1, math.ceil(len(player.queue) / QUEUE_PAGE_SIZE))


def queue_embed(player: MusicPlayer, page: int) -> discord.Embed:
    """Page `page` (1-based, clamped) of the queue."""
    pages = queue_page_count(player)
    page = min(max(1, page), pages)
    start = (page - 1) * QUEUE_PAGE_SIZE
    lines = [
        f"`{start + i + 1}.` {track_title(track, 60)} `{track_length(track)}` · {requester_mention(track)}"
        for i, track in enumerate(player.queue[start:start + QUEUE_PAGE_SIZE])
    ]
    current = player.current
    header = f"**Now:** {track_title(current, 80)}\n\n" if current else ""
    embed = discord.Embed(title="Queue", description=header + ("\n".join(lines) or "The queue is empty."),
                          colour=COLOUR)
    left = remaining_ms(player.queue, current, player.position)
    if left is not None:  # effects stay on for the next songs: under /speed 2 the queue lasts half as long
        left = int(left / player.effects.rate)
    total = "endless (live stream)" if left is None else format_duration(left)
    embed.set_footer(text=f"Page {page}/{pages} · {len(player.queue)} tracks · {total} remaining · "
                          f"loop: {player.loop_mode.value}")
    return embed
