"""Rules that need their own bot configuration: the DJ role, and an audio server that stops answering."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from sandbox.control import Sandbox
from sandbox.discord_interactions import InteractionTimeout
from tests.e2e.fleet import PRODUCTION_PLAYER_UPDATE_INTERVAL, running_fleet, start_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


def track_url(slug: str) -> str:
    return f"https://music.example/track/{slug}?length=600000"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 1, DJ_ROLE="DJ",
                             sandbox_options={"player_update_interval": PRODUCTION_PLAYER_UPDATE_INTERVAL}) as fleet:
        yield fleet


async def test_dj_role_limits_control_to_djs_requesters_and_lone_listeners_and_others_vote_to_skip(fleet):
    scene = await fleet.scene(members=("alice", "bob"))
    dj = fleet.discord.create_role(scene.guild_id, "DJ")
    dave = fleet.discord.add_member(scene.guild_id, "dave", roles=[dj.id])
    scene.world.member_ids["dave"] = dave.id
    for member in ("alice", "bob", "dave"):
        await scene.join(member, "Lounge")

    await scene.cmd(1, "alice", "play", query=track_url("alices-song"))
    queued = await scene.cmd(1, "bob", "play", query=track_url("bobs-song"))  # anyone may add songs
    assert queued.content.startswith("Queued at position 1")

    voted = await scene.cmd(1, "bob", "skip")  # neither DJ nor requester: a vote (three listeners: two votes skip)
    assert not voted.ephemeral and voted.content.endswith("(1/2 votes).")
    panel = await scene.wait_panel("Alices Song")
    button = await scene.press(1, "bob", int(panel["id"]), "panel:pause")
    assert button.ephemeral and button.content.startswith("Only members with the DJ role")
    assert scene.player(1)["paused"] is False

    requester = await scene.cmd(1, "alice", "pause")  # requester of the current song
    assert requester.content.startswith("Paused by")
    await scene.cmd(1, "alice", "resume")
    by_dj = await scene.cmd(1, "dave", "skip")  # a DJ
    assert by_dj.content.startswith("Skipped **Alices Song**")
    await scene.wait_track(1, "bobs-song")

    await scene.cmd(1, "alice", "play", query=track_url("third-song"))
    not_mine = await scene.cmd(1, "alice", "skip")
    assert not_mine.content.endswith("(1/2 votes).")
    assert "bobs-song" in scene.player(1)["identifier"]
    await scene.join("bob", None)
    await scene.join("dave", None)
    alone = await scene.cmd(1, "alice", "skip")  # alone with the bot
    assert alone.content.startswith("Skipped **Bobs Song**")


async def test_a_hanging_audio_server_is_acknowledged_in_time_and_the_views_agree_after(fleet):
    scene = await fleet.scene()
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("hang-song"))
    await scene.wait_player(1, lambda p: p["track"] is not None)
    fleet.lavalink.hang(r"/players/")
    try:
        answer = await scene.cmd(1, "alice", "pause", timeout=20)
        assert answer.latency is not None and answer.latency < 3.0  # Discord's deadline, whatever the node does
        assert answer.ephemeral and "audio server is unreachable" in answer.content
        assert scene.player(1)["paused"] is False
    finally:
        fleet.lavalink.unhang()
    # The node applies the held pause once it answers again; the bot must know it, or /resume says
    # "It's already playing" while nothing plays.
    await scene.wait_player(1, lambda p: p["paused"] is True)
    resumed = await scene.cmd(1, "alice", "resume")
    assert resumed.content.startswith("Resumed by"), resumed.content
    await scene.wait_player(1, lambda p: p["paused"] is False)


async def test_disconnect_leaves_voice_at_once_while_the_audio_server_hangs(fleet):
    scene = await fleet.scene()
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("hung-goodbye"))
    await scene.wait_player(1, lambda p: p["track"] is not None)
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")
    fleet.lavalink.hang(r"/players/")
    try:
        answer = await scene.cmd(1, "alice", "disconnect", timeout=20)
        assert answer.latency is not None and answer.latency < 3.0
        assert answer.content.startswith("Left <#"), answer.content
        await fleet.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=6)
    finally:
        fleet.lavalink.unhang()
    await fleet.lavalink.wait_for(lambda: scene.player(1) is None, timeout=10)


async def test_a_track_that_stops_making_progress_is_skipped(fleet):
    scene = await fleet.scene()
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("frozen-song"))
    await scene.cmd(1, "alice", "play", query=track_url("thawed-song"))
    await scene.wait_player(1, lambda p: p["position"] > 0)
    fleet.lavalink.set_speed(0)  # Lavalink keeps reporting, but the position no longer moves
    try:
        # Worst case: one more changed position up to an update interval (5 s) after the freeze, then the
        # bot's 10 s stall threshold and its 2 s sweep: 17 s; 40 s keeps more than 2x slack.
        await scene.wait_message("**Frozen Song** stopped making progress; skipping it.", timeout=40)
    finally:
        fleet.lavalink.set_speed(1.0)
    await scene.wait_track(1, "thawed-song")


async def test_failed_requests_are_capped_per_bot(tmp_path):
    async with Sandbox() as sandbox:
        fleet = await start_fleet(sandbox, 1, tmp_path / "logs", FAILED_REQUEST_BUDGET="3")
        try:
            scene = await fleet.scene()
            await scene.join("alice", "Lounge")
            # Every track start posts a panel; make three of those posts fail with 403.
            sandbox.discord.inject_status("POST", r"/channels/\d+/messages", status=403, count=3)
            await scene.cmd(1, "alice", "play", query=track_url("budget-1"))
            for slug in ("budget-2", "budget-3"):
                await scene.cmd(1, "alice", "play", query=track_url(slug))
                await scene.cmd(1, "alice", "skip")
            await sandbox.discord.wait_for(lambda: sum(
                r.status == 403 for r in sandbox.discord.requests if r.app == scene.app(1).user_id) >= 3, timeout=10)
            # The budget is used up: the bot's next request is held back instead of sent.
            held = asyncio.create_task(scene.cmd(1, "alice", "nowplaying", timeout=5))
            line = await fleet.bots[0].wait_for_line(r"failed Discord requests .* holding back requests", timeout=10)
            assert "3 failed Discord requests (401/403/429) in 10 min" in line
            with pytest.raises(InteractionTimeout):
                await held

        finally:
            await fleet.stop()
