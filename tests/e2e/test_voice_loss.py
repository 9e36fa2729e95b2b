"""The real bot when its node loses the voice connection: a moderator's disconnect (4014), a drop (4006/1006).

wavelink 3.5 acts on WebSocketClosedEvent only for 4014 with byRemote (it waits 1 s for a new voice
connection, then destroys the player); other codes are only dispatched as on_wavelink_websocket_closed.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.e2e.fleet import running_fleet
from tests.faults.helpers import assert_advancing, playing, track_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 1) as fleet:
        yield fleet


async def test_a_moderator_disconnecting_the_bot_ends_its_player_and_play_brings_it_back(fleet):
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url("kicked-song"))
    since = len(fleet.lavalink.events)
    await fleet.discord.disconnect_member(scene.guild_id, app.user_id)
    closed = await fleet.lavalink.wait_for_event("WebSocketClosedEvent", user_id=app.user_id,
                                                 guild_id=scene.guild_id, start=since)
    assert (closed["code"], closed["byRemote"]) == (4014, True)
    # wavelink destroys the player on its own VOICE_STATE_UPDATE without a channel: nothing is left at the node
    await fleet.lavalink.wait_for(lambda: scene.player(1) is None, timeout=10)
    assert scene.bot_voice_channel(1) is None
    # ... and the next /play joins again with fresh credentials that the node accepts
    answer = await scene.cmd(1, "alice", "play", query=track_url("after-kick"))
    assert not answer.ephemeral, answer.content
    player = await scene.wait_player(1, lambda p: p["connected"] and p["position"] > 0, timeout=10)
    assert "after-kick" in player["identifier"]
    assert fleet.sandbox.verify_voice(app.user_id, scene.guild_id, player["voice"]) is None


@pytest.mark.parametrize("code", [4006, 1006])
async def test_after_a_voice_drop_the_bot_reconnects_and_plays_on(fleet, code):
    scene = await fleet.scene()
    app = scene.app(1)
    await playing(scene, query=track_url(f"dropped-{code}"))
    await scene.cmd(1, "alice", "play", query=track_url(f"queued-{code}"))
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
    texts = [m.get("content") or "" for m in scene.messages()]
    assert not [t for t in texts if "voice connection" in t or "skipping it" in t], texts  # a first-try rejoin is silent
