"""Lyrics (utils/lyrics.py): reading LavaLyrics' object, pages, the marked line; and the pages' expiry."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import discord
import pytest

from commands.lyrics import LyricsCog, LyricsPages
from utils.lyrics import PAGE_CHARS, PAGE_LINES, Lyrics, current_line, pages


def synced(count: int, every: int = 4000) -> Lyrics:
    payload = {"sourceName": "spotify", "provider": "MusixMatch", "text": None, "plugin": {},
               "lines": [{"timestamp": 8000 + i * every, "duration": None, "line": f"line {i}" if i % 5 else "",
                          "plugin": {}} for i in range(count)]}
    lyrics = Lyrics.from_payload(payload)
    assert lyrics is not None
    return lyrics


def test_a_lyrics_object_without_words_is_none_found():
    assert Lyrics.from_payload({"sourceName": "x", "provider": None, "text": "  ", "lines": None, "plugin": {}}) is None
    assert Lyrics.from_payload({"sourceName": "x", "text": None, "lines": [], "plugin": {}}) is None
    assert Lyrics.from_payload("nope") is None
    plain = Lyrics.from_payload({"sourceName": "youtube", "provider": "YouTube Music", "text": "a\nb", "lines": None})
    assert plain is not None and not plain.synced and plain.credit() == "plain text · youtube (YouTube Music)"


def test_synced_lines_are_paged_with_their_time_and_the_sung_line_marked():
    lyrics = synced(45)
    texts, start = pages(lyrics, position=8000 + 23 * 4000 + 1500)  # during line 23
    assert len(texts) == 3 and start == 1
    assert all(len(t.split("\n")) <= PAGE_LINES and len(t) <= PAGE_CHARS for t in texts)
    assert texts[0].split("\n")[0] == "`0:08` ♪" and texts[0].split("\n")[1] == "`0:12` line 1"
    assert [line for t in texts for line in t.split("\n") if line.startswith("▶")] == ["▶ **`1:40` line 23**"]
    assert pages(lyrics)[1] == 0 and "▶" not in "".join(pages(lyrics)[0])
    assert current_line(lyrics, 7999) is None and current_line(lyrics, 8000) == 0


def test_long_plain_text_is_cut_by_size_too():
    text = "\n".join("la " * 150 for _ in range(30))  # 30 lines of 450 characters
    lyrics = Lyrics.from_payload({"sourceName": "genius", "provider": "Genius", "text": text, "lines": None})
    texts, start = pages(lyrics, position=60_000)
    assert start == 0 and len(texts) > 2 and all(len(t) <= PAGE_CHARS for t in texts)


class FakeInteraction:
    def __init__(self) -> None:
        self.edits: list[dict] = []

    async def edit_original_response(self, **kwargs) -> None:
        self.edits.append(kwargs)


def entry(key: str, interaction) -> LyricsPages:
    return LyricsPages(key=key, owner_id=1, guild_id=2, title="Song", lyrics=synced(60), track_id=None,
                       interaction=interaction)


async def test_pages_lose_their_buttons_when_they_time_out():
    cog = LyricsCog(SimpleNamespace())
    first, second = FakeInteraction(), FakeInteraction()
    cog.keep(entry("0000000a", first), timeout=0.05)
    cog.keep(entry("0000000b", second), timeout=30)
    await asyncio.wait_for(asyncio.shield(cog.open.get("0000000a").expiry), 5)
    assert first.edits == [{"view": None}] and "0000000a" not in cog.open
    assert second.edits == [] and "0000000b" in cog.open
    for kept in cog.open.values():
        kept.expiry.cancel()


async def test_the_oldest_pages_make_room_and_a_vanished_message_is_no_error(monkeypatch):
    monkeypatch.setattr("commands.lyrics.KEPT", 2)
    cog = LyricsCog(SimpleNamespace())

    class Gone(FakeInteraction):
        async def edit_original_response(self, **kwargs) -> None:
            self.edits.append(kwargs)
            raise discord.NotFound(SimpleNamespace(status=404, reason="Not Found"), "Unknown Message")

    oldest = Gone()
    cog.keep(entry("00000001", oldest))
    cog.keep(entry("00000002", FakeInteraction()))
    cog.keep(entry("00000003", FakeInteraction()))
    assert list(cog.open) == ["00000002", "00000003"]
    for _ in range(3):  # the removal of the evicted answer's buttons runs (and fails quietly: logged, not raised)
        await asyncio.sleep(0)
    assert oldest.edits == [{"view": None}]
    for kept in cog.open.values():
        kept.expiry.cancel()


class FakeNode:
    """A node whose lyrics routes answer 404 (wavelink raises LavalinkException), with or without the plugin."""

    identifier = "node-1"
    session_id = "s1"

    def __init__(self, plugins: list[str]) -> None:
        self.plugins = plugins

    async def send(self, method: str, *, path: str, params: dict) -> None:
        import wavelink

        raise wavelink.LavalinkException(data={"timestamp": 0, "status": 404, "error": "Not Found",
                                               "message": "whatever", "path": "/" + path})

    async def fetch_info(self):
        return SimpleNamespace(plugins=[SimpleNamespace(name=name, version="1.0.0") for name in self.plugins])


async def test_a_404_means_no_plugin_only_when_the_node_runs_none():
    from utils.lyrics import NoLyricsPlugin, lyrics_for_track

    track = SimpleNamespace(encoded="QAAA")
    with pytest.raises(NoLyricsPlugin):
        await lyrics_for_track(FakeNode(["youtube-plugin"]), track)
    assert await lyrics_for_track(FakeNode(["youtube-plugin", "lavalyrics-plugin"]), track) is None
