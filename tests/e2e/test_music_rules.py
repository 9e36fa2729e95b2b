"""Rules that need their own bot configuration: the DJ role, and an audio server that stops answering."""

from __future__ import annotations

import time

import pytest
import pytest_asyncio

from sandbox.control import Sandbox
from tests.e2e.fleet import start_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


def track_url(slug: str) -> str:
    return f"https://music.example/track/{slug}?length=600000"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with Sandbox(player_update_interval=0.5) as sandbox:
        fleet = await start_fleet(sandbox, 1, tmp_path_factory.mktemp("logs"), DJ_ROLE="DJ")
        try:
            yield fleet
        finally:
            await fleet.stop()


async def test_dj_role_limits_control_to_djs_requesters_and_lone_listeners(fleet):
    scene = await fleet.scene(members=("alice", "bob"))
    dj = fleet.discord.create_role(scene.guild_id, "DJ")
    dave = fleet.discord.add_member(scene.guild_id, "dave", roles=[dj.id])
    scene.world.member_ids["dave"] = dave.id
    for member in ("alice", "bob", "dave"):
        await scene.join(member, "Lounge")

    await scene.cmd(1, "alice", "play", query=track_url("alices-song"))
    queued = await scene.cmd(1, "bob", "play", query=track_url("bobs-song"))  # anyone may add songs
    assert queued.content.startswith("Queued at position 1")

    refused = await scene.cmd(1, "bob", "skip")
    assert refused.ephemeral and refused.content.startswith("Only members with the DJ role")
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
    assert not_mine.ephemeral and "DJ role" in not_mine.content
    await scene.join("bob", None)
    await scene.join("dave", None)
    alone = await scene.cmd(1, "alice", "skip")  # alone with the bot
    assert alone.content.startswith("Skipped **Bobs Song**")


async def test_a_hanging_audio_server_gets_a_clear_answer_within_three_seconds(fleet):
    scene = await fleet.scene()
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("hang-song"))
    await scene.wait_player(1, lambda p: p["track"] is not None)
    fleet.lavalink.hang(r"/players/")
    try:
        started = time.monotonic()
        answer = await scene.cmd(1, "alice", "pause", timeout=10)
        assert time.monotonic() - started < 3.0
        assert answer.ephemeral and "audio server is unreachable" in answer.content
    finally:
        fleet.lavalink.unhang()
    again = await scene.cmd(1, "alice", "volume", level=50)
    assert again.content == "Volume set to 50%."
