"""Tracks the audio server no longer accepts (their encoding rejected with 400, as after a Lavalink upgrade or a
source plugin change): found again by their URI and played, or skipped with one message."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.e2e.fleet import running_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


def track_url(slug: str, length: int = 600_000) -> str:
    return f"https://music.example/track/{slug}?length={length}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 1) as fleet:
        yield fleet


async def start_with_queue(fleet, *queued: str):
    scene = await fleet.scene()
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("opener", 1500))
    for slug in queued:
        result = await scene.cmd(1, "alice", "play", query=track_url(slug))
        assert result.content.startswith("Queued at position"), result.content
    return scene


async def test_a_queued_track_rejected_at_play_time_is_found_again_and_plays(fleet):
    scene = await start_with_queue(fleet, "rejected-once")
    loads = len([r for r in fleet.lavalink.requests if "loadtracks" in r["path"]])
    fleet.lavalink.fail_next(r"/sessions/[^/]+/players/", status=400)  # the next play: "cannot decode"
    await scene.wait_track(1, "rejected-once", timeout=15)
    lookups = [r for r in fleet.lavalink.requests[:] if "loadtracks" in r["path"]][loads:]
    assert [r["query"]["identifier"] for r in lookups] == [track_url("rejected-once")]
    assert scene.player(1)["user_data"].get("requester_id") == str(scene.member("alice"))
    await scene.wait_panel("Rejected Once")
    assert not [m for m in scene.messages() if "can no longer" in (m.get("content") or "")]


async def test_a_track_that_cannot_be_found_again_is_skipped_with_one_message(fleet):
    scene = await start_with_queue(fleet, "vanished", "still-here")
    fleet.lavalink.fail_next(r"/sessions/[^/]+/players/", status=400)
    fleet.lavalink.fail_next(r"loadtracks.*vanished", status=500)
    await scene.wait_track(1, "still-here", timeout=15)
    message = await scene.wait_message("can no longer find")
    assert message["content"] == "The audio server can no longer find **Vanished**; skipped."
    assert len([m for m in scene.messages() if "can no longer" in (m.get("content") or "")]) == 1
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")
