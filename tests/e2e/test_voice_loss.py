"""The real bot when its voice connection goes (issue 11, section 1): a drop (4006/1006, or the voice state
vanishing without a moderator) is rejoined, a moderator's disconnect (4014 and the voice state cleared) is not,
a moderator's move is followed, and after three failed tries the bot gives up but keeps its snapshot.

The fleet runs with VOICE_REJOIN_DELAYS=1,1,1: the first try comes when it does in production (1 s), the later
ones sooner than production's 5 and 15 s, so a give-up takes seconds.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.fleet import running_fleet
from tests.faults.helpers import assert_advancing, playing, track_url
from tests.helpers import start_bot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]

REJOIN_DELAYS = "1,1,1"
LOST = "I lost my voice connection in"
BACK = "Back in"
GAVE_UP = "I couldn't get back into"
KICKED = "A moderator disconnected me from"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 1, VOICE_REJOIN_DELAYS=REJOIN_DELAYS) as fleet:
        yield fleet


def mark(scene) -> int:
    """The newest message id in the text channel so far (0: none)."""
    return max((int(m["id"]) for m in scene.messages()), default=0)


def said(scene, since: int) -> list[str]:
    """What the bots wrote in the text channel after message `since` (a mark); panels have no content."""
    return [m["content"] for m in scene.messages() if int(m["id"]) > since and m.get("content")]


def snapshot_file(fleet, guild_id: int) -> Path:
    return fleet.log_dir.parent / "state" / "bot-1" / f"guild-{guild_id}.json"


def joins(fleet, app, guild_id: int, since: int) -> list[dict]:
    """The bot's gateway op 4 requests to be in a channel (not to leave) in the guild, after number `since`."""
    ops = fleet.discord.gateway.voice_ops.get(app.user_id, [])[since:]
    return [op for op in ops if str(op.get("guild_id")) == str(guild_id) and op.get("channel_id") is not None]


def voice_ops(fleet, app) -> int:
    return len(fleet.discord.gateway.voice_ops.get(app.user_id, []))


async def test_a_moderator_disconnecting_the_bot_ends_its_player_says_so_once_and_never_rejoins(fleet):
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url("kicked-song"), queued=("kicked-queued",))
    await scene.wait_panel("kicked-song")
    await fleet.discord.wait_for(lambda: snapshot_file(fleet, scene.guild_id).exists(), timeout=10)
    since, ops = mark(scene), voice_ops(fleet, app)
    events = len(fleet.lavalink.events)
    await fleet.discord.disconnect_member(scene.guild_id, app.user_id)
    closed = await fleet.lavalink.wait_for_event("WebSocketClosedEvent", user_id=app.user_id,
                                                 guild_id=scene.guild_id, start=events)
    assert (closed["code"], closed["byRemote"]) == (4014, True)
    await scene.wait_message(KICKED)
    await fleet.lavalink.wait_for(lambda: scene.player(1) is None, timeout=10)  # the node's player is gone
    await fleet.discord.wait_for(lambda: not scene.panels(), timeout=10)  # so is the panel
    await fleet.discord.wait_for(lambda: not snapshot_file(fleet, scene.guild_id).exists(), timeout=10)
    # A drop would be rejoined after 1 s: watch twice that long for a rejoin that must not come.
    await asyncio.sleep(2.0)
    assert joins(fleet, app, scene.guild_id, ops) == []
    assert scene.bot_voice_channel(1) is None
    assert said(scene, since) == [f"A moderator disconnected me from <#{scene.voice('Lounge')}>, so I stopped and "
                                  "cleared the queue. Use /play to bring me back."]
    # ... and the next /play joins again with fresh credentials that the node accepts, with an empty queue
    answer = await scene.cmd(1, "alice", "play", query=track_url("after-kick"))
    assert not answer.ephemeral, answer.content
    player = await scene.wait_player(1, lambda p: p["connected"] and p["position"] > 0, timeout=10)
    assert "after-kick" in player["identifier"]
    assert fleet.sandbox.verify_voice(app.user_id, scene.guild_id, player["voice"]) is None
    queue = await scene.cmd(1, "alice", "queue")
    assert "Kicked Queued" not in str(queue.embeds), queue.embeds


@pytest.mark.parametrize("code", [4006, 1006])
async def test_after_a_voice_drop_the_bot_reconnects_and_plays_on(fleet, code):
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url(f"dropped-{code}"))
    await scene.cmd(1, "alice", "play", query=track_url(f"queued-{code}"))
    since = mark(scene)
    fleet.sandbox.drop_voice(app, scene.guild_id, code=code)
    await scene.wait_player(1, lambda p: not p["connected"], timeout=5)
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")  # Discord still has it in the channel
    # The bot rejoins (first try after 1 s) and the same song plays on with a voice session the node accepts.
    player = await scene.wait_player(1, lambda p: p["connected"], timeout=10)
    assert fleet.sandbox.verify_voice(app.user_id, scene.guild_id, player["voice"]) is None
    await assert_advancing(scene, 1, f"dropped-{code}")
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")
    queue = await scene.cmd(1, "alice", "queue")
    assert f"Queued {code}" in queue.embeds[0]["description"]  # nothing was skipped while it was silent
    assert said(scene, since) == []  # a first-try rejoin is silent


@pytest.mark.parametrize("close_code", [1006, None], ids=["node-closed", "node-not-told"])
async def test_a_voice_state_vanishing_without_a_moderator_is_a_drop_and_is_rejoined(fleet, close_code):
    scene = await fleet.scene()
    app = scene.app(1)
    slug = f"vanished-{close_code}"
    await playing(scene, query=track_url(slug))
    since, ops = mark(scene), voice_ops(fleet, app)
    at_drop = scene.player(1)["position"]
    fleet.sandbox.vanish_voice(app, scene.guild_id, close_code=close_code)
    assert scene.bot_voice_channel(1) is None
    # No 4014 comes: after waiting for one (1 s) the bot asks for its channel again, gets new credentials, and the
    # node plays the same song on with them.
    await fleet.discord.wait_for(lambda: scene.bot_voice_channel(1) == scene.voice("Lounge"), timeout=10)
    player = await scene.wait_player(
        1, lambda p: p["connected"] and fleet.sandbox.verify_voice(app.user_id, scene.guild_id, p["voice"]) is None,
        timeout=10)
    assert slug in player["identifier"] and player["position"] >= at_drop
    await assert_advancing(scene, 1, slug)
    assert len(joins(fleet, app, scene.guild_id, ops)) == 1
    assert said(scene, since) == []
    assert scene.panels(), "the panel stays"


async def test_a_moderator_move_is_followed_and_the_requester_moving_does_not_move_the_bot(fleet):
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url("moved-song"), queued=("moved-queued",))
    panel = await scene.wait_panel("moved-song")
    since, ops = mark(scene), voice_ops(fleet, app)
    # The requester goes elsewhere: the bot stays where it is and plays on.
    await scene.join("alice", "Studio")
    await assert_advancing(scene, 1, "moved-song", over=1.5)
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")
    assert joins(fleet, app, scene.guild_id, ops) == []
    # A moderator moves the bot: it plays the same song on in the new channel, queue and panel intact.
    before = scene.player(1)["position"]
    await fleet.discord.move_member(scene.guild_id, app.user_id, scene.voice("Studio"))
    player = await scene.wait_player(
        1, lambda p: p["connected"] and fleet.sandbox.verify_voice(app.user_id, scene.guild_id, p["voice"]) is None,
        timeout=10)
    assert "moved-song" in player["identifier"] and player["position"] >= before
    await assert_advancing(scene, 1, "moved-song")
    assert scene.bot_voice_channel(1) == scene.voice("Studio")
    queue = await scene.cmd(1, "alice", "queue")
    assert "Moved Queued" in queue.embeds[0]["description"]
    assert fleet.discord.message(int(panel["id"])) is not None  # the same panel: not deleted
    assert said(scene, since) == []
    assert joins(fleet, app, scene.guild_id, ops) == []  # wavelink followed the move; the bot asked for nothing


async def test_when_the_first_rejoin_fails_the_channel_hears_it_once_and_again_when_back(fleet):
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url("second-try"))
    since, ops = mark(scene), voice_ops(fleet, app)
    fleet.sandbox.refuse_voice(app, scene.guild_id, times=1)
    fleet.sandbox.drop_voice(app, scene.guild_id, code=4006)
    await scene.wait_message(BACK, timeout=15)
    lounge = f"<#{scene.voice('Lounge')}>"
    assert said(scene, since) == [f"I lost my voice connection in {lounge}; trying to get back...",
                                  f"Back in {lounge}; playing on."]
    assert len(joins(fleet, app, scene.guild_id, ops)) == 2
    await scene.wait_player(1, lambda p: p["connected"], timeout=5)
    await assert_advancing(scene, 1, "second-try")


async def test_after_three_failed_tries_the_bot_leaves_with_one_message_and_a_restart_restores_it(fleet):
    """Last in the module: it restarts the bot."""
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url("given-up", length=900_000), queued=("given-up-queued",))
    since, ops = mark(scene), voice_ops(fleet, app)
    fleet.sandbox.refuse_voice(app, scene.guild_id, times=3)
    fleet.sandbox.drop_voice(app, scene.guild_id, code=4006)
    await scene.wait_player(1, lambda p: not p["connected"], timeout=5)
    at_drop = scene.player(1)["position"]  # the node's track stands still without a voice connection
    await scene.wait_message(GAVE_UP, timeout=20)
    lounge = f"<#{scene.voice('Lounge')}>"
    assert said(scene, since) == [
        f"I lost my voice connection in {lounge}; trying to get back...",
        f"I couldn't get back into {lounge} after 3 tries, so I left. I saved the song and the queue: they come "
        "back when I'm restarted, or use /play to start again."]
    assert len(joins(fleet, app, scene.guild_id, ops)) == 3
    assert fleet.sandbox.voice_refusals_left(app, scene.guild_id) == 0
    await fleet.lavalink.wait_for(lambda: scene.player(1) is None, timeout=10)  # left: no player at the node
    await fleet.discord.wait_for(lambda: scene.bot_voice_channel(1) is None and not scene.panels(), timeout=10)
    assert snapshot_file(fleet, scene.guild_id).exists()

    # A deploy later: SIGTERM flushes every snapshot (and must not drop the kept one), the next start restores it.
    bot = fleet.bots[0]
    bot.send_signal(signal.SIGTERM)
    assert await bot.wait(timeout=20) == 0
    assert snapshot_file(fleet, scene.guild_id).exists()
    requests = len(fleet.lavalink.requests)
    env = {**fleet.sandbox.bot_env(fleet.apps), "VOICE_REJOIN_DELAYS": REJOIN_DELAYS}
    fleet.bots[0] = await start_bot(1, env, log_dir=fleet.log_dir)
    await scene.wait_message("Back after a restart - resuming **Given Up**", timeout=30)
    player = await scene.wait_player(1, lambda p: p["connected"] and p["position"] > 0, timeout=10)
    assert "given-up" in player["identifier"]
    start = next(r["json"]["position"] for r in fleet.lavalink.requests[requests:]
                 if r["method"] == "PATCH" and r["path"].endswith(f"/players/{scene.guild_id}")
                 and str(r.get("user_id")) == str(app.user_id) and (r.get("json") or {}).get("track"))
    assert abs(start - at_drop) < 1_500, (start, at_drop)  # where it went silent, not where it would be by now
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")
    queue = await scene.cmd(1, "alice", "queue")
    assert "Given Up Queued" in queue.embeds[0]["description"]
