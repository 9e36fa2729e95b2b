"""Gateway faults while a bot plays: RECONNECT, INVALID_SESSION (resumable or not), close 4000, an abrupt drop.

Each case: bot 1 plays with a queue, bot 2 (a sibling in the same guild) plays too. After the fault bot 1
must be back on the gateway (resumed, or re-identified), its track must still be playing at Lavalink with
the queue kept, and commands must keep working; bot 2 must not notice anything.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.e2e.fleet import running_fleet
from tests.faults.helpers import assert_advancing, playing, queue_titles, track_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    # A short heartbeat interval so that discord.py notices a silently dropped connection quickly.
    async with running_fleet(tmp_path_factory, 2, sandbox_options={"heartbeat_interval": 2000}) as fleet:
        yield fleet


async def _fault(fleet, app, kind: str) -> None:
    discord = fleet.discord
    if kind == "reconnect":
        assert await discord.send_reconnect(app)
    elif kind == "invalid_session_resumable":
        assert await discord.send_invalid_session(app, resumable=True)
    elif kind == "invalid_session":
        assert await discord.send_invalid_session(app, resumable=False)
    elif kind == "close_4000":
        assert await discord.close_gateway(app, 4000, "Unknown error")
    elif kind == "drop":
        assert await discord.drop_gateway(app)
    else:  # pragma: no cover
        raise AssertionError(kind)


# What the bot must do after each fault: resume the session, or identify anew (the server forgot it).
EXPECTED = {
    "reconnect": "resume",
    "invalid_session_resumable": "resume",
    "invalid_session": "identify",
    "close_4000": "resume",
    "drop": "resume",
}


@pytest.mark.parametrize("kind", EXPECTED)
async def test_gateway_fault_while_playing_keeps_queue_and_playback(fleet, kind):
    scene = await fleet.scene()
    one, two = scene.app(1), scene.app(2)
    await playing(scene, bot=1, member="alice", channel="Lounge", query=track_url(f"{kind}-one"),
                  queued=(f"{kind}-next", f"{kind}-last"))
    await playing(scene, bot=2, member="bob", channel="Studio", query=track_url(f"{kind}-sibling"))
    before_one, before_two = fleet.discord.gateway_stats(one), fleet.discord.gateway_stats(two)
    track_starts = len(fleet.lavalink.events)
    voice_before = fleet.discord.voice_server(one, scene.guild_id)

    await _fault(fleet, one, kind)

    key = "resumes" if EXPECTED[kind] == "resume" else "identifies"
    await fleet.discord.wait_for(lambda: fleet.discord.gateway_stats(one)[key] > before_one[key]
                                 and fleet.discord.gateway_stats(one)["connected"], timeout=20)
    await fleet.discord.wait_until_ready(one, timeout=15)

    # Playback never stopped: same track, still advancing, no new track started, nothing paused.
    await assert_advancing(scene, 1, f"{kind}-one")
    # ... on a voice connection Discord would accept now: after a new gateway session the bot rejoined and
    # handed its node the new session's credentials (the node refuses stale ones, as production does).
    player = await scene.wait_player(
        1, lambda p: p["connected"] and fleet.sandbox.verify_voice(one.user_id, scene.guild_id, p["voice"]) is None)
    assert player["voice"]["sessionId"] == fleet.discord.voice_server(one, scene.guild_id)["session_id"]
    if EXPECTED[kind] == "identify":  # a new gateway session means a new voice session
        assert player["voice"]["sessionId"] != voice_before["session_id"], (voice_before, player["voice"])
    # Commands keep working, and the bot still knows its player and its queue.
    queue = await scene.cmd(1, "alice", "queue")
    assert "Next" in queue_titles(queue) and "Last" in queue_titles(queue), queue_titles(queue)
    now = await scene.cmd(1, "alice", "nowplaying")
    assert now.embeds and "One" in now.embeds[0]["description"], now.content
    skipped = await scene.cmd(1, "alice", "skip")
    assert skipped.content.startswith("Skipped **"), skipped.content
    await scene.wait_track(1, f"{kind}-next")

    # The sibling saw nothing: no reconnect of its own, no new track, playback moving.
    after_two = fleet.discord.gateway_stats(two)
    for counter in ("connections", "identifies", "resumes", "invalid_sessions"):
        assert after_two[counter] == before_two[counter], (counter, before_two, after_two)
    assert after_two["connected"]
    await assert_advancing(scene, 2, f"{kind}-sibling", over=0.6)
    sibling_starts = fleet.lavalink.find_events("TrackStartEvent", user_id=two.user_id, guild_id=scene.guild_id,
                                                start=track_starts)
    assert sibling_starts == []
