"""The LavaLyrics plugin of the emulated node (topi314/LavaLyrics 1.0.0 with a lyrics source such as LavaSrc's
LRCLIB), installed or not: a node option, as on a real server.

Routes, as the plugin's controller (LavaLyricsPlugin.kt) answers them:
- ``GET /v4/sessions/{sessionId}/players/{guildId}/track/lyrics?skipTrackSource=`` -> 200 Lyrics object;
  204 (no body) when no source has lyrics; 404 "Session not found", "Player not found", "No track playing".
- ``GET /v4/lyrics?track=<encoded>&skipTrackSource=`` -> 200 or 204; a missing ``track`` is Spring's 400,
  a track that does not decode is the uncaught exception's 500 (as for /v4/decodetrack).
- The live-lyrics subscription (``POST/DELETE .../lyrics/subscribe``) is not emulated (the bot does not use it).
Lyrics object: ``{"sourceName", "provider", "text" (nullable), "lines" (nullable) [{"timestamp" ms, "duration"
ms|null, "line", "plugin"}], "plugin"}``. With the plugin, /v4/info lists ``{"name": "lavalyrics-plugin",
"version": "1.0.0"}``.

Without the plugin Lavalink has no such route: Spring (6.1, Lavalink 4.0.8) answers 404 with its error body
and the message of NoHandlerFoundException, "No endpoint GET /v4/lyrics.".

Which lyrics a track has is a pure function of its title (catalogue conventions, case-insensitive): a live
stream or a title containing ``instrumental`` has none (204); ``plain`` gives plain text only (``lines``
null, as text-only sources do); any other track has synced lines, one every 4 s from 0:08 to the end (a
10-minute track has about 150). ``set_lyrics(identifier, lyrics_or_None)`` overrides that for one track.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from sandbox.catalogue import Catalogue, CatalogueTrack

PLUGIN_INFO = {"name": "lavalyrics-plugin", "version": "1.0.0"}
SOURCE_NAME = "LRCLIB"  # what LavaSrc's LRCLIB source reports, as sourceName and as provider
PROVIDER = "LRCLIB"
FIRST_LINE_MS = 8000
LINE_EVERY_MS = 4000
_WORDS = ("river", "neon", "summer", "echo", "paper", "silver", "midnight", "harbor", "engine", "garden", "letter",
          "velvet", "static", "tide", "lantern", "orchard", "signal", "mirror", "highway", "voice")


def _line_text(title: str, index: int) -> str:
    """A deterministic lyric line: a few words derived from the title and the line number."""
    digest = hashlib.sha256(f"{title}\x1f{index}".encode()).digest()
    words = [_WORDS[b % len(_WORDS)] for b in digest[:4]]
    if index % 8 == 0:
        return f"{title}, oh {title.split()[0].lower() if title.split() else 'oh'}"  # a chorus line
    return f"{words[0].capitalize()} {words[1]} and {words[2]} {words[3]}"


def generated_lyrics(track: CatalogueTrack) -> dict[str, Any] | None:
    """The Lyrics object LavaLyrics would answer for this catalogue track, or None (no lyrics found)."""
    title = track.title.casefold()
    if track.is_stream or "instrumental" in title:
        return None
    end = max(FIRST_LINE_MS + LINE_EVERY_MS, track.length - LINE_EVERY_MS)
    lines = [{"timestamp": ms, "duration": None, "line": _line_text(track.title, i), "plugin": {}}
             for i, ms in enumerate(range(FIRST_LINE_MS, end, LINE_EVERY_MS))]
    if "plain" in title:
        return {"sourceName": "youtube", "provider": "YouTube Music", "text": "\n".join(l["line"] for l in lines),
                "lines": None, "plugin": {}}
    return {"sourceName": SOURCE_NAME, "provider": PROVIDER, "text": None, "lines": lines, "plugin": {}}


class LyricsPlugin:
    """The plugin's state on one node: installed or not, and per-track overrides."""

    def __init__(self, catalogue: Catalogue, *, installed: bool = True) -> None:
        self.catalogue = catalogue
        self.installed = installed
        self._overrides: dict[str, dict[str, Any] | None] = {}

    def set_lyrics(self, identifier: str, lyrics: dict[str, Any] | None) -> None:
        """Answer `lyrics` (a Lyrics object, or None for "none found") for the track with this identifier."""
        self._overrides[identifier] = lyrics

    def lyrics_for(self, track: CatalogueTrack) -> dict[str, Any] | None:
        if track.identifier in self._overrides:
            return self._overrides[track.identifier]
        return generated_lyrics(track)

    def answer(self, track: CatalogueTrack) -> web.Response:
        """200 with the Lyrics object, or 204 when none were found (the plugin's ResponseEntity.noContent())."""
        lyrics = self.lyrics_for(track)
        if lyrics is None:
            return web.Response(status=204)
        return web.Response(status=200, body=json.dumps(lyrics).encode(), content_type="application/json")
