"""Lyrics from the Lavalink node's LavaLyrics plugin (topi314/LavaLyrics), and how they are split into pages.

wavelink 3.5 has no lyrics helper, so the plugin's REST routes are called through Node.send:
`GET /v4/sessions/{sessionId}/players/{guildId}/track/lyrics` (the song a player is playing) and
`GET /v4/lyrics?track=<encoded>` (any track). Both answer a Lyrics object, or 204 when no source has lyrics.
A node without the plugin has no such route and answers 404; so does the player route when the node has no
track playing. wavelink's LavalinkException keeps the status but not the message, so a 404 is told apart by
asking the node which plugins it runs (/v4/info): no plugin, or no lyrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import wavelink

from utils.errors import MusicError
from utils.formatting import format_duration, truncate
from utils.lavalink import lavalink_call

log = logging.getLogger(__name__)

LYRICS_TIMEOUT = 10.0  # the plugin asks remote lyrics sites: slower than a player update
PLUGIN_NAME = "lavalyrics"  # LavaLyrics reports itself as "lavalyrics-plugin" in /v4/info
PAGE_LINES = 20
PAGE_CHARS = 1800  # an embed description holds 4096; shorter pages read better on a phone
CURRENT_MARK = "▶"
_NOT_FOUND = object()


class NoLyricsPlugin(MusicError):
    def __init__(self) -> None:
        super().__init__("This audio server has no lyrics plugin (LavaLyrics), so I can't look up lyrics. "
                         "Ask the bot's admin to add it to Lavalink.")


class NoTrackOnNode(MusicError):
    def __init__(self) -> None:
        super().__init__("Nothing is playing right now. Use /lyrics with a song name, or /play first.")


@dataclass(frozen=True)
class LyricLine:
    timestamp: int  # ms from the start of the track
    text: str


@dataclass(frozen=True)
class Lyrics:
    source: str
    provider: str | None
    text: str | None
    lines: tuple[LyricLine, ...]

    @property
    def synced(self) -> bool:
        """The plugin gave timed lines (it does for synced sources such as LRCLIB or Spotify)."""
        return bool(self.lines)

    @classmethod
    def from_payload(cls, data: Any) -> Lyrics | None:
        """A LavaLyrics Lyrics object, or None when it holds no words at all."""
        if not isinstance(data, dict):
            return None
        lines = []
        for raw in data.get("lines") or []:
            if isinstance(raw, dict) and isinstance(raw.get("timestamp"), int) and isinstance(raw.get("line"), str):
                lines.append(LyricLine(raw["timestamp"], raw["line"]))
        text = data.get("text") if isinstance(data.get("text"), str) and data["text"].strip() else None
        if not lines and text is None:
            return None
        provider = data.get("provider") if isinstance(data.get("provider"), str) else None
        return cls(str(data.get("sourceName") or "unknown"), provider, text, tuple(lines))

    def credit(self) -> str:
        """'synced · lrclib (LRCLIB)'."""
        kind = "synced" if self.synced else "plain text"
        source = self.source
        if self.provider and self.provider != self.source:
            source += f" ({self.provider})"
        return f"{kind} · {source}"


def current_line(lyrics: Lyrics, position: int | None) -> int | None:
    """Index of the line being sung at `position` (ms), or None (not synced, no position, before the first)."""
    if position is None or not lyrics.synced:
        return None
    index = None
    for i, line in enumerate(lyrics.lines):
        if line.timestamp > position:
            break
        index = i
    return index


def pages(lyrics: Lyrics, position: int | None = None) -> tuple[list[str], int]:
    """The lyrics as page texts, and the page holding the line at `position` (0 when none). Synced lines carry
    their time, and the line being sung now is marked."""
    marked = current_line(lyrics, position)
    if lyrics.synced:
        rows = []
        for i, line in enumerate(lyrics.lines):
            words = truncate(line.text, 200) if line.text.strip() else "♪"
            row = f"`{format_duration(line.timestamp)}` {words}"
            rows.append(f"{CURRENT_MARK} **{row}**" if i == marked else row)
    else:
        rows = [truncate(row, 200) if row.strip() else "" for row in (lyrics.text or "").splitlines()]
    result: list[str] = []
    current: list[str] = []
    size = 0
    start_page = 0
    for i, row in enumerate(rows):
        if current and (len(current) >= PAGE_LINES or size + len(row) + 1 > PAGE_CHARS):
            result.append("\n".join(current).strip("\n") or "♪")
            current, size = [], 0
        if i == marked:
            start_page = len(result)
        current.append(row)
        size += len(row) + 1
    if current or not result:
        result.append("\n".join(current).strip("\n") or "♪")
    return result, start_page


async def _get(node: wavelink.Node, path: str, params: dict[str, str]) -> Any:
    """A GET to the plugin; _NOT_FOUND for a 404, None for 204 (no lyrics)."""
    async def request() -> Any:
        try:
            return await node.send("GET", path=path, params=params)  # path without "/": wavelink adds one
        except wavelink.LavalinkException as exc:
            if exc.status == 404:
                return _NOT_FOUND
            raise
    return await lavalink_call(request(), LYRICS_TIMEOUT)


async def has_lyrics_plugin(node: wavelink.Node) -> bool:
    info = await lavalink_call(node.fetch_info())
    return any(PLUGIN_NAME in plugin.name.lower() for plugin in info.plugins)


async def _lyrics(node: wavelink.Node, path: str, params: dict[str, str]) -> Lyrics | None:
    data = await _get(node, path, params)
    if data is _NOT_FOUND:
        if not await has_lyrics_plugin(node):
            log.info("node %s has no lyrics plugin", node.identifier)
            raise NoLyricsPlugin()
        # The plugin's own 404: the node has no track playing for us (it just ended), or a plugin version that
        # answers "none found" with 404 rather than 204. Either way there are no lyrics to show.
        return None
    return Lyrics.from_payload(data)


async def lyrics_for_player(player: wavelink.Player) -> Lyrics | None:
    """The lyrics of the song `player` plays (as the node sees it), None when no source has any."""
    assert player.guild is not None
    node = player.node
    return await _lyrics(node, f"v4/sessions/{node.session_id}/players/{player.guild.id}/track/lyrics",
                         {"skipTrackSource": "false"})


async def lyrics_for_track(node: wavelink.Node, track: wavelink.Playable) -> Lyrics | None:
    """The lyrics of any track (a search result), None when no source has any."""
    return await _lyrics(node, "v4/lyrics", {"track": track.encoded, "skipTrackSource": "false"})
