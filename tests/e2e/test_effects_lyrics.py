"""/filter, /speed and /lyrics end to end: what the node stores, what the panel and /nowplaying show, positions
under a timescale, a restart with effects on, and the lyrics pages (LavaLyrics emulated by the sandbox).

The module runs with production's playerUpdateInterval (5 s): between two updates the bot extrapolates the
position itself, which is where a timescale shows."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import pytest_asyncio

from sandbox.discord_options import InvalidInvocation
from tests.e2e.fleet import PRODUCTION_PLAYER_UPDATE_INTERVAL, running_fleet
from tests.helpers import start_bot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150), pytest.mark.asyncio(loop_scope="module")]

LONG = "https://music.example/track/long-song?length=600000"

#: What the node must hold for each preset (Lavalink field names; defaults filled in as Lavalink reports them).
#: wavelink always sends all 15 equalizer bands: only the non-zero gains are listed here.
EXPECTED = {
    "bassboost": ({}, {0: 0.25, 1: 0.2, 2: 0.15, 3: 0.1, 4: 0.05}),
    "nightcore": ({"timescale": {"speed": 1.0, "pitch": 1.0, "rate": 1.25}}, {}),
    "vaporwave": ({"timescale": {"speed": 1.0, "pitch": 1.0, "rate": 0.8}}, {}),
    "8d": ({"rotation": {"rotationHz": 0.2}}, {}),
    "karaoke": ({"karaoke": {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0}}, {}),
    "soft": ({"lowPass": {"smoothing": 8.0}}, {10: -0.1, 11: -0.1, 12: -0.1, 13: -0.1, 14: -0.1}),
    "tremolo": ({"tremolo": {"frequency": 4.0, "depth": 0.75}}, {}),
    "vibrato": ({"vibrato": {"frequency": 4.0, "depth": 0.75}}, {}),
    "lowpass": ({"lowPass": {"smoothing": 20.0}}, {}),
    "off": ({}, {}),
}
LABELS = {"bassboost": "Bass boost", "nightcore": "Nightcore", "vaporwave": "Vaporwave", "8d": "8D audio",
          "karaoke": "Karaoke (vocals removed)", "soft": "Soft", "tremolo": "Tremolo", "vibrato": "Vibrato",
          "lowpass": "Low-pass"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    options = {"player_update_interval": PRODUCTION_PLAYER_UPDATE_INTERVAL}
    async with running_fleet(tmp_path_factory, 1, sandbox_options=options) as fleet:
        yield fleet


@pytest_asyncio.fixture(loop_scope="module")
async def scene(fleet):
    return await fleet.scene()


async def playing(scene, query=LONG):
    await scene.join("alice", "Lounge")
    result = await scene.cmd(1, "alice", "play", query=query)
    assert "Now playing" in result.content, result.content
    return await scene.wait_player(1, lambda p: p["track"] is not None)


def split_filters(stored: dict) -> tuple[dict, dict]:
    """What the node holds: the filters but the equalizer, and the equalizer's non-zero gains."""
    gains = {band["band"]: band["gain"] for band in stored.get("equalizer", []) if band["gain"]}
    return {k: v for k, v in stored.items() if k != "equalizer"}, gains


def field(embed: dict, name: str) -> str | None:
    return next((f["value"] for f in embed.get("fields", []) if f["name"] == name), None)


def remaining_seconds(footer: str) -> int:
    """The time remaining /queue shows ("· 4:27 remaining ·"), in seconds."""
    hours, minutes, seconds = re.search(r"· (?:(\d+):)?(\d+):(\d\d) remaining ·", footer).groups()
    return (int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)


def shown_position(embed: dict) -> int:
    """The position /nowplaying shows ("... `1:03 / 10:00`"), in ms."""
    minutes, seconds = re.search(r"`(\d+):(\d\d) / ", embed["description"]).groups()
    return (int(minutes) * 60 + int(seconds)) * 1000


# ---- /filter and /speed --------------------------------------------------------------------------------------

async def test_each_preset_reaches_the_node_and_shows_on_the_panel_and_nowplaying(scene):
    await playing(scene)
    panel = await scene.wait_panel("Long Song")
    discord = scene.fleet.discord
    for preset, (filters, gains) in EXPECTED.items():
        result = await scene.cmd(1, "alice", "filter", preset=preset)
        assert not result.ephemeral, result.content
        if preset == "off":
            assert result.content == f"Effects off: normal sound and speed (<@{scene.member('alice')}>)."
        else:
            assert result.content == f"🎛️ Filter **{LABELS[preset]}** on (<@{scene.member('alice')}>)."
        stored = await scene.wait_player(1, lambda p: split_filters(p["filters"]) == (filters, gains), timeout=5)
        assert split_filters(stored["filters"]) == (filters, gains), (preset, stored["filters"])

        nowplaying = (await scene.cmd(1, "alice", "nowplaying")).embeds[0]
        label = None if preset == "off" else LABELS[preset]
        assert field(nowplaying, "Effects") == label, (preset, nowplaying["fields"])
        await discord.wait_for(lambda: field(discord.message(int(panel["id"]))["embeds"][0], "Effects") == label,
                               timeout=5)


async def test_speed_and_seek_keep_the_position_right_under_a_timescale(scene):
    await playing(scene)
    alice = scene.member("alice")
    result = await scene.cmd(1, "alice", "speed", factor=2.0)
    assert result.content == f"Speed set to 2x (<@{alice}>)." and not result.ephemeral
    await scene.wait_player(1, lambda p: p["filters"].get("timescale", {}).get("speed") == 2.0)
    result = await scene.cmd(1, "alice", "seek", time="1:00")
    assert result.content == "Jumped to 1:00."
    player = await scene.wait_player(1, lambda p: p["position"] >= 60_000)
    assert player["position"] < 64_000  # the seek landed (and the song moves on at 2x)

    # Between two playerUpdates (5 s apart) the bot works the position out itself: 3.5 s after an update the
    # song is 7 s further on, and /nowplaying must say so (wavelink alone would say 3.5 s). The bounds allow
    # for the whole seconds shown and an update that reached the bot late on a busy machine.
    lavalink = scene.fleet.lavalink
    start = len(lavalink.events)
    update = await lavalink.wait_for_event("playerUpdate", user_id=scene.app(1).user_id, guild_id=scene.guild_id,
                                           start=start, timeout=15)
    await scene.wait_player(1, lambda p: p["position"] >= update["state"]["position"] + 7_000, timeout=10)
    before = scene.player(1)["position"]
    embed = (await scene.cmd(1, "alice", "nowplaying")).embeds[0]
    after = scene.player(1)["position"]
    assert before - 2_000 <= shown_position(embed) <= after, (before, embed["description"], after)
    assert field(embed, "Effects") == "2x speed"
    footer = (await scene.cmd(1, "alice", "queue")).embeds[0]["footer"]["text"]
    left = remaining_seconds(footer)
    position = scene.player(1)["position"]
    assert (600_000 - position) / 2_000 - 3 <= left <= (600_000 - before) / 2_000 + 1, (footer, position)
    assert lavalink.player(scene.app(1).user_id, scene.guild_id)["filters"]["timescale"]["speed"] == 2.0

    result = await scene.cmd(1, "alice", "filter", preset="nightcore")  # a preset keeps the speed
    assert result.content == f"🎛️ Filter **Nightcore** on (<@{alice}>). Speed stays 2x."
    stored = await scene.wait_player(1, lambda p: p["filters"].get("timescale", {}).get("rate") == 1.25)
    assert stored["filters"]["timescale"] == {"speed": 2.0, "pitch": 1.0, "rate": 1.25}
    result = await scene.cmd(1, "alice", "speed", factor=1.0)
    assert result.content == f"Normal speed again (<@{alice}>)."
    stored = await scene.wait_player(1, lambda p: p["filters"].get("timescale", {}).get("speed") == 1.0)
    assert stored["filters"]["timescale"]["rate"] == 1.25


async def test_effects_follow_the_control_rules(scene):
    await playing(scene)
    await scene.join("bob", "Studio")
    refused = await scene.cmd(1, "bob", "filter", preset="bassboost")
    assert refused.ephemeral and refused.content.startswith("You need to be in <#"), refused.content
    refused = await scene.cmd(1, "bob", "speed", factor=1.5)
    assert refused.ephemeral and refused.content.startswith("You need to be in <#"), refused.content
    assert split_filters(scene.player(1)["filters"]) == ({}, {})
    choices = await scene.fleet.discord.autocomplete(scene.app(1), guild_id=scene.guild_id,
                                                     channel_id=scene.world.text_id, user_id=scene.member("alice"),
                                                     command="speed", options={"factor": 1}, focused="factor")
    assert [c["value"] for c in choices] == [0.75, 1.0, 1.25, 1.5, 2.0]


# ---- /lyrics -------------------------------------------------------------------------------------------------

async def test_lyrics_of_the_current_song_are_paged_and_mark_the_line_being_sung(scene):
    nothing = await scene.cmd(1, "alice", "lyrics")
    assert nothing.ephemeral and nothing.content.startswith("Nothing is playing right now. Use /lyrics with"), \
        nothing.content
    await playing(scene)
    await scene.cmd(1, "alice", "seek", time="2:00")
    await scene.wait_player(1, lambda p: p["position"] >= 120_000)

    result = await scene.cmd(1, "alice", "lyrics")
    assert result.ephemeral
    embed = result.embeds[0]
    assert embed["title"].startswith("Lyrics: Long Song — ")
    # 148 synced lines from 0:08, 20 a page: the line at 2:00 is the 29th, on page 2, where the answer opens.
    assert embed["footer"]["text"] == "Page 2/8 · synced · LRCLIB", embed["footer"]
    lines = embed["description"].split("\n")
    assert len(lines) == 20 and lines[0].startswith("`1:28` ")
    marked = [line for line in lines if line.startswith("▶ ")]
    assert len(marked) == 1 and marked[0].startswith("▶ **`2:00` "), marked

    buttons = result.components[0]["components"]
    assert [b["label"] for b in buttons] == ["◀ Previous", "Next ▶"] and not any(b["disabled"] for b in buttons)
    turned = await scene.press(1, "alice", result.message_id, buttons[1]["custom_id"])
    assert turned.embeds[0]["footer"]["text"].startswith("Page 3/8")
    assert turned.embeds[0]["description"].startswith("`2:48` ")
    # The pages are ephemeral: Discord shows them to alice alone, so nobody else can turn them.
    with pytest.raises(InvalidInvocation, match="ephemeral: only user"):
        await scene.press(1, "bob", result.message_id, turned.components[0]["components"][0]["custom_id"])
    assert scene.fleet.discord.message(result.message_id)["embeds"][0]["footer"]["text"].startswith("Page 3/8")


async def test_lyrics_of_a_search_plain_text_and_none_found(scene):
    result = await scene.cmd(1, "alice", "lyrics", query="plain ballad")  # nothing plays: search, then look up
    embed = result.embeds[0]
    assert embed["title"].startswith("Lyrics: Plain Ballad (Official Audio) — ")
    assert embed["footer"]["text"].endswith("· plain text · youtube (YouTube Music)")
    assert "`" not in embed["description"] and "▶" not in embed["description"]

    choices = await scene.fleet.discord.autocomplete(scene.app(1), guild_id=scene.guild_id,
                                                     channel_id=scene.world.text_id, user_id=scene.member("alice"),
                                                     command="lyrics", options={"query": "plain ba"}, focused="query")
    assert len(choices) == 5 and choices[0]["name"].startswith("Plain Ba (Official Audio) — "), choices

    none = await scene.cmd(1, "alice", "lyrics", query="instrumental jam")
    assert none.ephemeral and none.content.startswith("No lyrics found for **[Instrumental Jam (Official Audio)]")
    assert not none.embeds


async def test_lyrics_without_the_plugin_say_so_and_expired_pages_say_so(scene):
    lyrics = scene.fleet.lavalink.lyrics
    lyrics.installed = False
    try:
        await playing(scene)
        result = await scene.cmd(1, "alice", "lyrics")
        assert result.ephemeral and result.content.startswith("This audio server has no lyrics plugin (LavaLyrics)")
        result = await scene.cmd(1, "alice", "lyrics", query="golden harbor")
        assert result.content.startswith("This audio server has no lyrics plugin"), result.content
    finally:
        lyrics.installed = True

    # Pages from before a restart (or after the timeout) are gone: the press says so and removes the buttons.
    old = await scene.post_as_bot(1, "old lyrics", ["lyrics:0badc0de:1:next"])
    pressed = await scene.press(1, "alice", old, "lyrics:0badc0de:1:next")
    note = await pressed.wait_followup()
    assert note["content"] == "These lyrics pages have expired. Use /lyrics again."
    assert not scene.fleet.discord.message(old).get("components")


# ---- a restart with effects on (last: it restarts the module's bot) -------------------------------------------

async def test_restarts_of_the_node_and_of_the_bot_keep_the_effects(scene):
    await playing(scene)
    await scene.cmd(1, "alice", "filter", preset="nightcore")
    await scene.cmd(1, "alice", "speed", factor=1.5)
    fleet = scene.fleet
    await scene.wait_player(1, lambda p: p["filters"].get("timescale", {}).get("speed") == 1.5)

    # The node restarts and loses every player: the bot rebuilds its player with the song and the effects.
    await fleet.lavalink.restart(1.0)
    player = await scene.wait_player(1, lambda p: p["track"] is not None and "timescale" in p["filters"], timeout=40)
    assert player["filters"]["timescale"] == {"speed": 1.5, "pitch": 1.0, "rate": 1.25}
    assert "long-song" in player["identifier"]

    # The bot itself crashes (SIGKILL) and restarts: its snapshot brings the effects back.
    state = fleet.log_dir.parent / "state" / "bot-1" / f"guild-{scene.guild_id}.json"
    await fleet.lavalink.wait_for(lambda: state.exists() and '"speed":1.5' in state.read_text(), timeout=10)
    saved = scene.player(1)["position"]
    # The snapshot is not rewritten while the song plays on: the restore works out how far it got, at 1.875x.
    await scene.wait_player(1, lambda p: p["position"] >= saved + 8_000, timeout=10)

    bot = fleet.bots[0]
    since = len(fleet.lavalink.requests)
    at_kill = scene.player(1)["position"]
    os.kill(bot.pid, signal.SIGKILL)
    killed = time.monotonic()
    await bot.wait()
    fleet.bots[0] = await start_bot(1, fleet.sandbox.bot_env(fleet.apps), log_dir=fleet.log_dir)

    def restored():
        return next((r for r in fleet.lavalink.requests[since:]
                     if r["method"] == "PATCH" and r["path"].endswith(f"/players/{scene.guild_id}")
                     and (r.get("json") or {}).get("track") and "position" in r["json"]), None)

    await fleet.lavalink.wait_for(restored, timeout=40)
    request = restored()
    assert request["json"]["filters"]["timescale"] == {"speed": 1.5, "rate": 1.25}  # with the track: one PATCH
    # The song went on at 1.5 x 1.25 while the bot was away: the restore starts where it had got to.
    expected = at_kill + int((request["time"] - killed) * 1000 * 1.875)
    assert abs(request["json"]["position"] - expected) < 1_500, (request["json"]["position"], expected)
    player = await scene.wait_player(1, lambda p: p["track"] is not None and "timescale" in p["filters"], timeout=10)
    assert player["filters"]["timescale"] == {"speed": 1.5, "pitch": 1.0, "rate": 1.25}
    embed = (await scene.cmd(1, "alice", "nowplaying")).embeds[0]
    assert field(embed, "Effects") == "Nightcore · 1.5x speed"

