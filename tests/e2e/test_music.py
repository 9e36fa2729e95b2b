"""The music commands end to end: real bot.py processes, members in voice channels of the sandbox, slash
commands invoked through the control API, and assertions on the replies, the voice-state ops and what the
emulated Lavalink received."""

from __future__ import annotations

import asyncio
import re

import pytest
import pytest_asyncio

from sandbox.discord_options import InvalidInvocation
from tests.e2e.fleet import running_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

SHORT = "https://music.example/track/short-song?length=2500"
LONG = "https://music.example/track/long-song?length=600000"


def track_url(slug: str, length: int = 600_000) -> str:
    return f"https://music.example/track/{slug}?length={length}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 2, MAX_QUEUE="30", IDLE_TIMEOUT="10", ALONE_TIMEOUT="5") as fleet:
        # Lavalink's trackStuckThresholdMs, set below the bot's own 10 s stall watchdog so that a stuck
        # track is reported by the node's event, not by whichever of the two comes first.
        fleet.lavalink.stuck_threshold_ms = 3000
        yield fleet


@pytest_asyncio.fixture(loop_scope="module")
async def scene(fleet):
    return await fleet.scene()


async def playing(scene, bot=1, member="alice", channel="Lounge", query=LONG):
    await scene.join(member, channel)
    result = await scene.cmd(bot, member, "play", query=query)
    assert "Now playing" in result.content, result.content
    return result


# ---- /play ------------------------------------------------------------------------------------------------

async def test_play_joins_the_members_channel_and_starts_the_track(scene):
    await scene.join("alice", "Lounge")
    result = await scene.cmd(1, "alice", "play", query="golden harbor")
    assert result.deferred and not result.ephemeral
    assert result.content.startswith("Now playing: **")
    assert f"requested by <@{scene.member('alice')}>" in result.content

    ops = scene.fleet.discord.voice_ops[scene.app(1).user_id]
    join = [op for op in ops if str(op["guild_id"]) == str(scene.guild_id)][-1]
    assert int(join["channel_id"]) == scene.voice("Lounge") and join["self_deaf"] is True
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")

    player = await scene.wait_player(1, lambda p: p["track"] is not None)
    assert player["voice"] is not None and player["paused"] is False and player["volume"] == 100
    assert player["user_data"].get("requester_id") == str(scene.member("alice"))
    panel = await scene.wait_panel("Golden", timeout=10)
    buttons = [c["custom_id"] for row in panel["components"] for c in row["components"]]
    assert buttons == ["panel:pause", "panel:skip", "panel:stop", "panel:loop", "panel:shuffle", "panel:queue"]


async def test_second_play_is_queued_with_its_position(scene):
    await playing(scene)
    result = await scene.cmd(1, "alice", "play", query=track_url("second"))
    assert result.content.startswith("Queued at position 1: **[Second](<https://music.example/track/second")
    result = await scene.cmd(1, "alice", "play", query=track_url("third"))
    assert result.content.startswith("Queued at position 2: **[Third](<")
    current = scene.player(1)["identifier"]  # a full URL: the first song plays on, the queued ones wait
    assert "long-song" in current and "second" not in current and "third" not in current, current


async def test_playlist_enqueues_every_track_and_says_how_many(scene):
    await scene.join("alice", "Lounge")
    result = await scene.cmd(1, "alice", "play", query="https://music.example/playlist/road-trip?n=7")
    assert "Added **7** tracks from **" in result.content
    await scene.wait_player(1, lambda p: p["track"] is not None)
    queue = await scene.cmd(1, "alice", "queue")
    assert "6 tracks" in queue.embeds[0]["footer"]["text"]


async def test_concurrent_plays_join_the_queue_in_the_order_they_were_sent(scene):
    await playing(scene)
    lavalink = scene.fleet.lavalink
    lavalink.hang(r"loadtracks.*order-0")  # the first search is the slowest: it finishes last
    slugs = [f"order-{i}" for i in range(4)]
    sends = []
    for slug in slugs:
        sends.append(asyncio.create_task(scene.cmd(1, "alice", "play", query=track_url(slug))))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the other searches complete meanwhile
    lavalink.unhang()
    results = await asyncio.gather(*sends)
    assert [r.content.split(":")[0] for r in results] == [f"Queued at position {i}" for i in range(1, 5)]
    page = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
    positions = [page.index(f"Order {i}") for i in range(4)]
    assert positions == sorted(positions)


async def test_queue_limit_refuses_clearly(scene):
    await scene.join("alice", "Lounge")
    result = await scene.cmd(1, "alice", "play", query="https://music.example/playlist/huge?n=40")
    assert "Added **30** tracks" in result.content and "(10 left out: the queue is full)" in result.content
    # One track of the 30 started playing, which makes room for exactly one more.
    result = await scene.cmd(1, "alice", "play", query=track_url("one-more"))
    assert result.content.startswith("Queued at position 30:")
    result = await scene.cmd(1, "alice", "play", query=track_url("one-too-many"))
    assert result.ephemeral and "The queue is full (30 tracks)" in result.content


@pytest.mark.parametrize(("query", "expected"), [
    ("nothing at all", "No results for"),
    ("https://music.example/broken/cable", "I couldn't load that:"),
    ("   ", "Tell me what to play"),
])
async def test_play_refusals_are_ephemeral_and_clear(scene, query, expected):
    await scene.join("alice", "Lounge")
    result = await scene.cmd(1, "alice", "play", query=query)
    assert result.ephemeral and expected in result.content, result.content


@pytest.mark.parametrize(("command", "options", "limits"), [
    ("play", {"query": "x" * 400}, "'query' (string) must be 1 to 300 characters long"),
    ("volume", {"level": 151}, "'level' (integer) must be between 0 and 150"),
    ("move", {"from": 0, "to": 1}, "'from' (integer) must be between 1 and 100000"),
])
async def test_values_outside_the_registered_limits_are_refused_by_discord(scene, command, options, limits):
    """The registered schema carries the limits, so Discord's client refuses such values: no bot sees them."""
    await playing(scene)
    dispatched = len(scene.fleet.discord.interactions)
    with pytest.raises(InvalidInvocation, match=re.escape(limits)):
        await scene.cmd(1, "alice", command, **options)
    assert len(scene.fleet.discord.interactions) == dispatched


async def test_play_outside_voice_is_refused(scene):
    result = await scene.cmd(1, "alice", "play", query="anything")
    assert result.ephemeral and result.content == "Join a voice channel first, then try again."
    assert scene.bot_voice_channel(1) is None


async def test_autocomplete_offers_search_results(scene):
    choices = await scene.fleet.discord.autocomplete(scene.app(1), guild_id=scene.guild_id,
                                                     channel_id=scene.world.text_id, user_id=scene.member("alice"),
                                                     command="play", options={"query": "velvet"}, focused="query")
    assert 1 <= len(choices) <= 25
    assert all(len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in choices)
    assert any("Velvet" in c["name"] for c in choices)


# ---- controls ---------------------------------------------------------------------------------------------

async def test_pause_and_resume_reach_lavalink(scene):
    await playing(scene)
    result = await scene.cmd(1, "alice", "pause")
    assert result.content.startswith("Paused by") and not result.ephemeral
    await scene.wait_player(1, lambda p: p["paused"] is True)
    again = await scene.cmd(1, "alice", "pause")
    assert again.ephemeral and "Already paused" in again.content
    await scene.cmd(1, "alice", "resume")
    await scene.wait_player(1, lambda p: p["paused"] is False)


async def test_skip_plays_the_next_track_and_skip_to_a_position(scene):
    await playing(scene)
    for slug in ("b-side", "c-side", "d-side"):
        await scene.cmd(1, "alice", "play", query=track_url(slug))
    result = await scene.cmd(1, "alice", "skip")
    assert result.content.startswith("Skipped **Long Song**")
    await scene.wait_track(1, "b-side")
    result = await scene.cmd(1, "alice", "skip", to=2)
    assert "and 1 more" in result.content
    await scene.wait_track(1, "d-side")
    bad = await scene.cmd(1, "alice", "skip", to=5)
    assert bad.ephemeral and "The queue is empty" in bad.content


async def test_rapid_skips_end_with_one_panel_for_the_song_playing_not_a_pile_of_old_ones(scene):
    """Songs change faster than a channel takes messages (Discord: 5 per 5 s; discord.py queues the rest):
    the panel of the song playing in the end is posted last, most outdated ones are never posted, and one
    panel is left in the channel."""
    await playing(scene)
    slugs = [f"rapid-{n:02d}" for n in range(1, 13)]
    for slug in slugs:
        await scene.cmd(1, "alice", "play", query=track_url(slug))
    mark = len(scene.fleet.discord.requests)
    for _ in slugs:  # from the first song to the last of them
        assert (await scene.cmd(1, "alice", "skip")).content.startswith("Skipped")
    skipped = len(scene.fleet.discord.requests)
    await scene.wait_track(1, slugs[-1])
    last = await scene.wait_panel("Rapid 12", timeout=20)  # after the rate limit let it through

    def panel_posts(since: int) -> list[str]:
        route = f"/channels/{scene.world.text_id}/messages"
        return [e.get("description") or "" for r in scene.fleet.discord.requests[since:]
                if r.method == "POST" and r.status == 200 and r.path.endswith(route)
                for e in (r.json or {}).get("embeds") or []]

    titles = panel_posts(mark)
    assert "Rapid 12" in titles[-1], titles  # nothing outdated posted after it
    # Once the skips are answered, at most the replacement under way and the one folded after it post:
    # waiting posts of every song in between were the pile-up.
    assert len(panel_posts(skipped)) <= 2, titles
    assert [p["id"] for p in scene.panels()] == [last["id"]]  # one panel left in the channel


async def test_stop_clears_the_queue_and_stays(scene):
    await playing(scene)
    await scene.cmd(1, "alice", "play", query=track_url("next-one"))
    result = await scene.cmd(1, "alice", "stop")
    assert result.content.startswith("Stopped and cleared the queue")
    await scene.wait_player(1, lambda p: p["track"] is None)
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")
    queue = await scene.cmd(1, "alice", "queue")
    assert "The queue is empty." in queue.embeds[0]["description"]


async def test_disconnect_leaves_the_channel(scene):
    await playing(scene)
    result = await scene.cmd(1, "alice", "disconnect")
    assert result.content.startswith("Left <#")
    await scene.fleet.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=5)
    await scene.fleet.lavalink.wait_for(lambda: scene.player(1) is None, timeout=5)


async def test_volume_is_sent_and_kept_for_the_guild(scene):
    await playing(scene)
    result = await scene.cmd(1, "alice", "volume", level=40)
    assert result.content == "Volume set to 40%."
    await scene.wait_player(1, lambda p: p["volume"] == 40)
    await scene.cmd(1, "alice", "disconnect")
    await scene.fleet.lavalink.wait_for(lambda: scene.player(1) is None, timeout=5)
    await playing(scene, query=track_url("after-rejoin"))
    await scene.wait_player(1, lambda p: p["volume"] == 40)


async def test_seek_validates_times(scene):
    await playing(scene)
    result = await scene.cmd(1, "alice", "seek", time="1:30")
    assert result.content == "Jumped to 1:30."
    await scene.wait_player(1, lambda p: 90_000 <= p["position"] < 100_000)
    for bad, message in (("99:00", "only 10:00 long"), ("abc", "is not a time"), ("1:75", "up to 59")):
        answer = await scene.cmd(1, "alice", "seek", time=bad)
        assert answer.ephemeral and message in answer.content, answer.content


async def test_seek_is_refused_for_streams(scene):
    await playing(scene, query="https://music.example/stream/radio")
    answer = await scene.cmd(1, "alice", "seek", time="0:10")
    assert answer.ephemeral and "live stream" in answer.content


async def test_loop_track_replays_and_loop_off_moves_on(scene):
    await playing(scene, query=SHORT)
    await scene.cmd(1, "alice", "play", query=track_url("after-loop"))
    result = await scene.cmd(1, "alice", "loop", mode="track")
    assert result.content == "Looping the current song."
    start_events = len(scene.fleet.lavalink.find_events("TrackStartEvent", user_id=scene.app(1).user_id,
                                                        guild_id=scene.guild_id))
    await scene.fleet.lavalink.wait_for(
        lambda: len([e for e in scene.fleet.lavalink.find_events("TrackStartEvent", user_id=scene.app(1).user_id,
                                                                  guild_id=scene.guild_id)
                     if "short-song" in e["track"]["info"]["identifier"]]) >= 2 + (start_events - 1), timeout=15)
    assert "short-song" in scene.player(1)["identifier"]
    await scene.cmd(1, "alice", "loop", mode="off")
    await scene.wait_track(1, "after-loop", timeout=15)


def _starts(scene, slug: str) -> int:
    return len(scene.fleet.lavalink.find_events("TrackStartEvent", user_id=scene.app(1).user_id,
                                                guild_id=scene.guild_id,
                                                match=lambda e: slug in e["track"]["info"]["identifier"]))


async def test_loop_track_is_silent_apart_from_the_panel(scene):
    await playing(scene, query="https://music.example/track/loop-alone?length=1500")
    await scene.cmd(1, "alice", "loop", mode="track")
    await scene.fleet.lavalink.wait_for(lambda: _starts(scene, "loop-alone") >= 4, timeout=20)
    await scene.wait_panel("Loop Alone")  # the panel of a repeat: the end of the one before was handled
    said = [m.get("content") or "" for m in scene.messages()]
    assert not [text for text in said if "queue is finished" in text], said
    assert len(scene.panels()) == 1
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")


async def test_loop_queue_wraps_without_announcing_the_end(scene):
    await playing(scene, query="https://music.example/track/lap-a?length=1500")
    await scene.cmd(1, "alice", "play", query="https://music.example/track/lap-b?length=1500")
    await scene.cmd(1, "alice", "loop", mode="queue")
    await scene.fleet.lavalink.wait_for(lambda: _starts(scene, "lap-a") >= 3, timeout=25)
    await scene.wait_panel("Lap A")
    assert not [m for m in scene.messages() if "queue is finished" in (m.get("content") or "")]
    assert len(scene.panels()) == 1


async def test_loop_queue_comes_back_to_the_first_track(scene):
    await playing(scene, query="https://music.example/track/first-lap?length=2000")
    await scene.cmd(1, "alice", "play", query="https://music.example/track/second-lap?length=2000")
    await scene.cmd(1, "alice", "loop", mode="queue")
    await scene.wait_track(1, "second-lap", timeout=15)
    await scene.wait_track(1, "first-lap", timeout=15)


async def test_queue_editing_commands_and_their_bounds(scene):
    await playing(scene)
    for slug in ("q1", "q2", "q3", "q4"):
        await scene.cmd(1, "alice", "play", query=track_url(slug))
    moved = await scene.cmd(1, "alice", "move", **{"from": 4, "to": 1})
    assert "from #4 to #1" in moved.content
    removed = await scene.cmd(1, "alice", "remove", position=2)
    assert "Q1" in removed.content
    page = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
    assert page.index("Q4") < page.index("Q2") < page.index("Q3") and "Q1" not in page
    for command, options, message in (
        ("remove", {"position": 9}, "from 1 to 3"),
        ("move", {"from": 1, "to": 50}, "from 1 to 3"),
    ):
        answer = await scene.cmd(1, "alice", command, **options)
        assert answer.ephemeral and message in answer.content, answer.content
    shuffled = await scene.cmd(1, "alice", "shuffle")
    assert shuffled.content == "Shuffled 3 songs."
    cleared = await scene.cmd(1, "alice", "clear")
    assert cleared.content == "Cleared 3 songs from the queue."
    again = await scene.cmd(1, "alice", "clear")
    assert again.ephemeral and "already empty" in again.content


async def test_queue_is_paginated_with_buttons(scene):
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query="https://music.example/playlist/long-list?n=25")
    first = await scene.cmd(1, "alice", "queue")
    embed = first.embeds[0]
    assert embed["footer"]["text"].startswith("Page 1/3 · 24 tracks") and "loop: off" in embed["footer"]["text"]
    next_id = first.components[0]["components"][1]["custom_id"]
    turned = await scene.press(1, "alice", first.message_id, next_id)
    assert turned.callback_type == 7 and turned.embeds[0]["footer"]["text"].startswith("Page 2/3")
    # The queue is an ephemeral message: Discord shows it, and its buttons, to alice alone.
    assert first.ephemeral
    with pytest.raises(InvalidInvocation, match="ephemeral"):
        await scene.press(1, "bob", first.message_id, turned.components[0]["components"][1]["custom_id"])


async def test_nowplaying_shows_progress_volume_and_loop(scene):
    await playing(scene)
    await scene.cmd(1, "alice", "volume", level=80)
    embed = (await scene.cmd(1, "alice", "nowplaying")).embeds[0]
    assert "Long Song" in embed["description"] and "🔘" in embed["description"] and "/ 10:00" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Volume"] == "80%" and fields["Loop"] == "off" and fields["Requested by"].startswith("<@")


async def test_previous_goes_back_in_history(scene):
    await playing(scene, query=track_url("earlier"))
    await scene.cmd(1, "alice", "play", query=track_url("later"))
    await scene.cmd(1, "alice", "skip")
    await scene.wait_track(1, "later")
    result = await scene.cmd(1, "alice", "previous")
    assert result.content == "Back to **Earlier**."
    await scene.wait_track(1, "earlier")
    queue = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
    assert "Later" in queue


async def test_control_needs_the_bots_voice_channel(scene):
    await playing(scene)
    outsider = await scene.cmd(1, "bob", "skip")
    assert outsider.ephemeral and outsider.content == "Join a voice channel first, then try again."
    await scene.join("bob", "Studio")
    elsewhere = await scene.cmd(1, "bob", "pause")
    assert elsewhere.ephemeral and "You need to be in <#" in elsewhere.content
    assert scene.player(1)["paused"] is False


async def test_autoplay_keeps_playing_related_songs_when_the_queue_runs_out(scene):
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query="summer signals")  # a YouTube search result: recommendations exist
    first = await scene.wait_player(1, lambda p: p["track"] is not None)
    turned_on = await scene.cmd(1, "alice", "autoplay", mode="on")
    assert turned_on.content == "Autoplay is now on."
    seconds = first["track"]["length"] // 1000 - 2
    await scene.cmd(1, "alice", "seek", time=f"{seconds // 60}:{seconds % 60:02d}")
    related = await scene.wait_player(1, lambda p: p["identifier"] not in (None, first["identifier"]), timeout=20)
    assert related["track"]["sourceName"] == "youtube"
    panel = await scene.wait_panel(related["title"][:20], timeout=10)
    fields = {f["name"]: f["value"] for f in panel["embeds"][0]["fields"]}
    assert fields["Requested by"] == "autoplay" and fields["Autoplay"] == "on"
    turned_off = await scene.cmd(1, "alice", "autoplay", mode="off")
    assert turned_off.content == "Autoplay is now off."


# ---- the panel ---------------------------------------------------------------------------------------------

async def test_panel_buttons_control_playback_and_old_panels_are_refused(scene):
    await playing(scene, query=track_url("panel-one"))
    await scene.cmd(1, "alice", "play", query=track_url("panel-two"))
    await scene.cmd(1, "alice", "play", query=track_url("panel-three"))
    panel = await scene.wait_panel("Panel One")
    paused = await scene.press(1, "alice", int(panel["id"]), "panel:pause")
    assert paused.callback_type == 6 and paused.message_id == int(panel["id"])  # deferred, then the panel edited
    await scene.wait_player(1, lambda p: p["paused"] is True)
    labels = [c.get("label") for c in paused.components[0]["components"]]
    assert labels[0] == "Resume"
    await scene.press(1, "alice", int(panel["id"]), "panel:pause")
    await scene.wait_player(1, lambda p: p["paused"] is False)

    skipped = await scene.press(1, "alice", int(panel["id"]), "panel:skip")
    assert skipped.content.startswith("⏭️ Skipped by")
    await scene.wait_track(1, "panel-two")
    second = await scene.wait_panel("Panel Two")
    await scene.fleet.discord.wait_for(lambda: scene.fleet.discord.message(int(panel["id"])) is None
                                       or scene.fleet.discord.message(int(panel["id"])).get("deleted"), timeout=5)
    assert [p["id"] for p in scene.panels()] == [second["id"]]  # replaced, not duplicated

    # If the old panel cannot be deleted (a failed request), its buttons must not act on the new track.
    scene.fleet.discord.inject_status("DELETE", r"/channels/\d+/messages/\d+", status=403, count=1)
    await scene.cmd(1, "alice", "skip")
    third = await scene.wait_panel("Panel Three")
    stale = await scene.press(1, "alice", int(second["id"]), "panel:pause")
    assert stale.ephemeral and "outdated" in stale.content
    assert scene.player(1)["paused"] is False

    # Buttons from an older version of the bot: unknown actions and ids get an answer, never silence.
    old = await scene.post_as_bot(1, "old panel", ["panel:explode", "something:else", "queue:1:2:next"])
    forged = await scene.press(1, "alice", old, "panel:explode")
    assert forged.ephemeral and "not one of mine" in forged.content
    unknown = await scene.press(1, "alice", old, "something:else")
    assert unknown.ephemeral and "expired" in unknown.content
    other = await scene.press(1, "alice", old, "queue:1:2:next")
    assert other.ephemeral and "your own view" in other.content
    looped = await scene.press(1, "alice", int(third["id"]), "panel:loop")
    assert [c.get("label") for c in looped.components[0]["components"]][3] == "Loop: track"
    outsider = await scene.press(1, "bob", int(third["id"]), "panel:stop")
    assert outsider.ephemeral and "Join a voice channel first" in outsider.content
    stopped = await scene.press(1, "alice", int(third["id"]), "panel:stop")
    assert stopped.content.startswith("Stopped by") and stopped.components == []
    await scene.wait_player(1, lambda p: p["track"] is None)


# ---- track events, timeouts ---------------------------------------------------------------------------------

async def test_track_end_plays_the_next_and_announces_the_end_of_the_queue(scene):
    await playing(scene, query=SHORT)
    await scene.cmd(1, "alice", "play", query="https://music.example/track/closing-song?length=2000")
    await scene.wait_track(1, "closing-song", timeout=15)
    await scene.wait_message("The queue is finished", timeout=15)
    await scene.wait_player(1, lambda p: p["track"] is None)


async def test_failing_and_stuck_tracks_are_skipped_with_a_message(scene):
    await playing(scene, query="https://music.example/track/explode-now?length=60000")
    await scene.cmd(1, "alice", "play", query="https://music.example/track/stuck-forever?length=60000")
    await scene.cmd(1, "alice", "play", query=track_url("survivor"))
    await scene.wait_message("Couldn't play **Explode Now**", timeout=15)
    await scene.wait_message("**Stuck Forever** got stuck; skipping it.", timeout=20)
    await scene.wait_track(1, "survivor", timeout=15)


async def test_bot_leaves_when_alone(scene):
    await playing(scene)
    await scene.join("alice", None)
    await scene.wait_message("Everyone left the voice channel, so I left too.", timeout=20)
    assert scene.bot_voice_channel(1) is None


async def test_bot_leaves_after_idling(scene):
    await playing(scene, query=SHORT)
    await scene.wait_message("The queue is finished", timeout=15)
    await scene.wait_message("Nothing played for a while", timeout=25)
    assert scene.bot_voice_channel(1) is None


# ---- the fleet ---------------------------------------------------------------------------------------------

async def test_two_bots_play_in_two_channels_and_the_busy_one_names_the_free_one(scene):
    await playing(scene, bot=1, member="alice", channel="Lounge", query=track_url("lounge-song"))
    await scene.join("bob", "Studio")
    busy = await scene.cmd(1, "bob", "play", query=track_url("studio-song"))
    assert busy.ephemeral
    assert busy.content == (f"I'm already playing in <#{scene.voice('Lounge')}>. "
                            f"Try <@{scene.app(2).user_id}>: it is free here.")

    result = await scene.cmd(2, "bob", "play", query=track_url("studio-song"))
    assert result.content.startswith("Now playing: **[Studio Song](<")
    one = await scene.wait_track(1, "lounge-song")
    two = await scene.wait_track(2, "studio-song")
    assert one["session_id"] != two["session_id"]
    assert scene.bot_voice_channel(1) == scene.voice("Lounge") and scene.bot_voice_channel(2) == scene.voice("Studio")

    await scene.cmd(2, "bob", "pause")
    await scene.wait_player(2, lambda p: p["paused"])
    assert scene.player(1)["paused"] is False

    await scene.join("carol", "Lounge")
    none_free = await scene.cmd(2, "carol", "play", query="anything")
    assert none_free.ephemeral and "No other bot of the fleet is free" in none_free.content


async def test_preflight_refuses_channels_the_bot_cannot_use(scene):
    discord = scene.fleet.discord
    locked = discord.create_voice_channel(scene.guild_id, "Locked")
    await discord.set_overwrite(locked.id, scene.app(1).user_id, deny=1 << 20)  # CONNECT
    mute = discord.create_voice_channel(scene.guild_id, "Mute")
    await discord.set_overwrite(mute.id, scene.app(1).user_id, deny=1 << 21)  # SPEAK
    tiny = discord.create_voice_channel(scene.guild_id, "Tiny", user_limit=1)
    stage = discord.create_stage_channel(scene.guild_id, "Stage")
    cases = ((locked, "permission to join"), (mute, "not allowed to speak"), (tiny, "is full"),
             (stage, "stage channels"))
    for channel, expected in cases:
        await discord.move_member(scene.guild_id, scene.member("alice"), channel.id)
        answer = await scene.cmd(1, "alice", "play", query="anything")
        assert answer.ephemeral and expected in answer.content, (channel.name, answer.content)
    assert scene.bot_voice_channel(1) is None
    assert not discord.voice_ops.get(scene.app(1).user_id) or all(
        str(op["guild_id"]) != str(scene.guild_id) for op in discord.voice_ops[scene.app(1).user_id])


async def test_audio_server_down_gives_a_clear_answer_then_playback_continues(fleet):
    scene = await fleet.scene()
    await playing(scene, query=track_url("survives-restart"))
    await scene.cmd(1, "alice", "play", query=track_url("still-queued"))
    await asyncio.sleep(1.0)
    await fleet.lavalink.restart(downtime=4.0)
    down = await scene.cmd(1, "alice", "play", query="anything")
    assert down.ephemeral and "audio server is unreachable" in down.content
    player = await scene.wait_player(1, lambda p: p["identifier"] is not None and "survives-restart" in p["identifier"],
                                     timeout=40)
    assert player["position"] > 0
    await scene.cmd(1, "alice", "skip")
    await scene.wait_track(1, "still-queued")


async def idle_in_lounge(scene):
    """Bot 1 in the Lounge with nothing to play and nobody listening: it may follow a member elsewhere."""
    await playing(scene)
    await scene.cmd(1, "alice", "stop")
    await scene.wait_player(1, lambda p: p["track"] is None)
    await scene.join("alice", None)


async def test_idle_bot_follows_the_member_after_acknowledging(scene):
    await idle_in_lounge(scene)
    await scene.join("alice", "Studio")
    result = await scene.cmd(1, "alice", "play", query=track_url("followed"))
    assert result.deferred and result.content.startswith("Now playing: **[Followed]"), result.content
    assert scene.bot_voice_channel(1) == scene.voice("Studio")
    await scene.wait_track(1, "followed")


@pytest.mark.parametrize("kind", ["locked", "full", "stage"])
async def test_idle_bot_does_not_follow_into_a_channel_it_cannot_use(scene, kind):
    discord = scene.fleet.discord
    await idle_in_lounge(scene)
    if kind == "locked":
        target = discord.create_voice_channel(scene.guild_id, "Locked")
        await discord.set_overwrite(target.id, scene.app(1).user_id, deny=1 << 20)  # CONNECT
        expected = "permission to join"
    elif kind == "full":
        target = discord.create_voice_channel(scene.guild_id, "Tiny", user_limit=1)
        expected = "is full"
    else:
        target = discord.create_stage_channel(scene.guild_id, "Stage")
        expected = "stage channels"
    await discord.move_member(scene.guild_id, scene.member("alice"), target.id)
    answer = await scene.cmd(1, "alice", "play", query=track_url("nowhere"))
    assert answer.ephemeral and expected in answer.content, answer.content
    assert answer.latency is not None and answer.latency < 1.5
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")  # stayed where it was


async def test_a_moderator_moving_the_bot_hands_the_new_voice_credentials_to_lavalink(scene):
    """Discord keeps the bot's voice session and issues a new voice token: playback must follow it."""
    await playing(scene, query=track_url("moved-song"))
    discord, app = scene.fleet.discord, scene.app(1)
    before = discord.voice_server(app, scene.guild_id)
    await scene.wait_player(1, lambda p: (p["voice"] or {}).get("token") == before["token"])
    await discord.move_member(scene.guild_id, app.user_id, scene.voice("Studio"))
    after = discord.voice_server(app, scene.guild_id)
    assert after["token"] != before["token"] and after["session_id"] == before["session_id"]
    player = await scene.wait_player(1, lambda p: (p["voice"] or {}).get("token") == after["token"])
    assert player["voice"]["sessionId"] == after["session_id"] and "moved-song" in player["identifier"]
    # the node accepted the new token: still connected, the song plays on, no voice connection was lost
    assert player["connected"] and player["voice_closed"] is None
    await scene.wait_player(1, lambda p: p["position"] > player["position"])
    assert scene.bot_voice_channel(1) == scene.voice("Studio")
    [moved] = [e for e in discord.voice_moderations if e.guild_id == scene.guild_id]
    assert (moved.from_channel_id, moved.to_channel_id) == (scene.voice("Lounge"), scene.voice("Studio"))
