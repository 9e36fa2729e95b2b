"""Feature flags and cooldowns end to end: DISABLED_COMMANDS, per-member cooldowns, the throttled autocomplete.

One bot with DISABLED_COMMANDS=seek and the production cooldowns. Its commands are registered the way
the fleet fixture always does, without DISABLED_COMMANDS: /seek stays registered with the sandbox, as it
would with Discord after someone turned it off without registering again (a stale command).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest
import pytest_asyncio

from sandbox.discord_interactions import CommandNotRegistered
from tests.e2e.fleet import running_fleet
from tests.helpers import ROOT, Proc, clean_env, register_commands, start_bot
from utils.replies import TURNED_OFF

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

SLOW_DOWN = re.compile(r"^Slow down a little: try again in (\d+) s\.$")
GAP = 0.3  # the autocomplete's per-member search gap


def track_url(slug: str) -> str:
    return f"https://music.example/track/{slug}?length=600000"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    # COOLDOWN_*="": the production defaults (the test harness turns cooldowns off for every other test).
    async with running_fleet(tmp_path_factory, 1, DISABLED_COMMANDS="seek", COOLDOWN_PLAY="",
                             COOLDOWN_CONTROLS="") as fleet:
        yield fleet


@pytest_asyncio.fixture(loop_scope="module")
async def scene(fleet):
    return await fleet.scene()


async def test_a_disabled_command_is_off_in_the_bot_and_left_out_of_the_registration(fleet, scene):
    await fleet.bots[0].wait_for_line(r"commands turned off by DISABLED_COMMANDS: /seek$")
    assert "seek" in {c["name"] for c in fleet.discord.commands(scene.app(1))}  # registered before: stale
    await scene.join("alice", "Lounge")
    assert (await scene.cmd(1, "alice", "play", query=track_url("seek-target"))).content.startswith("Now playing")
    patches = len([r for r in fleet.lavalink.requests if r["method"] == "PATCH"])

    stale = await scene.cmd(1, "alice", "seek", time="4:00")
    assert stale.ephemeral and stale.content == TURNED_OFF
    assert len([r for r in fleet.lavalink.requests if r["method"] == "PATCH"]) == patches  # nothing was sent
    assert scene.player(1)["position"] < 60_000

    out = await register_commands({**fleet.sandbox.bot_env(fleet.apps), "DISABLED_COMMANDS": "seek"})
    assert "turned off by DISABLED_COMMANDS: seek" in out and re.search(r"^Bot 1 .*: updated: -seek$", out, re.M), out
    registered = {c["name"] for c in fleet.discord.commands(scene.app(1))}
    assert "seek" not in registered and {"play", "volume", "skip"} <= registered
    with pytest.raises(CommandNotRegistered):  # no client offers it any more
        await scene.cmd(1, "alice", "seek", time="4:00")


async def test_the_sixth_play_within_ten_seconds_is_told_to_slow_down(scene):
    await scene.join("alice", "Lounge")
    await scene.join("bob", "Lounge")
    answers = await asyncio.gather(*(scene.cmd(1, "alice", "play", query=track_url(f"burst-{i}"))
                                     for i in range(6)))
    refused = [a for a in answers if SLOW_DOWN.match(a.content or "")]
    assert len(refused) == 1, [a.content for a in answers]
    assert refused[0].ephemeral and 1 <= int(SLOW_DOWN.match(refused[0].content)[1]) <= 10
    played = [a for a in answers if a not in refused]
    assert all(a.content.startswith(("Now playing", "Queued at position")) for a in played), played
    queue = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
    assert sum(f"Burst {i}" in queue for i in range(6)) == 5  # the refused one was not queued either

    other = await scene.cmd(1, "bob", "play", query=track_url("bobs-turn"))  # per member: bob is not slowed
    assert other.content.startswith("Queued at position"), other.content

    levels = await asyncio.gather(*(scene.cmd(1, "alice", "volume", level=40 + i) for i in range(11)))
    slowed = [a for a in levels if SLOW_DOWN.match(a.content or "")]
    assert len(slowed) == 1 and slowed[0].ephemeral, [a.content for a in levels]
    assert sum((a.content or "").startswith("Volume set to") for a in levels) == 10


def searches(fleet, app) -> list[dict]:
    return [r for r in fleet.lavalink.requests if r["path"] == "/v4/loadtracks" and r["user_id"] == str(app.user_id)]


async def test_autocomplete_bursts_search_at_most_once_per_gap_and_repeat_queries_come_from_the_cache(fleet, scene):
    app = scene.app(1)

    async def typing(member: str, text: str) -> list[dict]:
        return await fleet.discord.autocomplete(app, guild_id=scene.guild_id, channel_id=scene.world.text_id,
                                                user_id=scene.member(member), command="play",
                                                options={"query": text}, focused="query")

    before = len(searches(fleet, app))
    word = "midnight lanterns"
    keystrokes = [word[:n] for n in range(3, len(word) + 1)]  # 15 keystrokes, sent as fast as possible
    answers = await asyncio.gather(*(typing("carol", text) for text in keystrokes))
    burst = searches(fleet, app)[before:]
    assert 1 <= len(burst) < len(keystrokes)
    times = [r["time"] for r in burst]
    # The bot spaces its searches GAP apart; half of it is left for the requests' travel time.
    assert all(b - a >= GAP / 2 for a, b in zip(times, times[1:])), [round(b - a, 3) for a, b in zip(times, times[1:])]
    final = answers[-1]
    assert final and all("Midnight Lanterns" in c["name"] for c in final[:1]), final  # the last keystroke searched
    assert burst[-1]["query"]["identifier"].lower().endswith(word)

    again = await typing("alice", "  MIDNIGHT   Lanterns ")  # another member, the same query: the cache answers
    assert again == final
    assert len(searches(fleet, app)) == before + len(burst)


async def test_an_unknown_disabled_name_stops_the_bot_and_the_registration_with_exit_78(fleet, tmp_path):
    """A typo must not leave on a command the operator meant to turn off: one line, exit 78, nothing started."""
    env = {**fleet.sandbox.bot_env(fleet.apps), "DISABLED_COMMANDS": "seek,lyric"}
    expected = "DISABLED_COMMANDS names no such command: lyric (commands: "
    registered = fleet.discord.commands(fleet.apps[0])
    registration = await Proc.start([sys.executable, str(ROOT / "register_commands.py"), "--env-file", os.devnull,
                                     "--global"], env=clean_env(env), name="register_commands.py")
    try:
        assert await registration.wait(timeout=60) == 78
    finally:
        await registration.kill()
    assert registration.lines[-1].startswith(f"register_commands.py: {expected}"), registration.output
    assert fleet.discord.commands(fleet.apps[0]) == registered  # nothing uploaded

    bot = await start_bot(1, env, log_dir=tmp_path / "logs")
    try:
        assert await bot.wait(timeout=60) == 78
    finally:
        await bot.kill()
    errors = [line for line in bot.lines if "configuration error" in line]
    assert len(errors) == 1 and expected in errors[0] and errors[0].startswith("[Bot 1]"), bot.output
    assert not any("ready as" in line for line in bot.lines)
    assert not (tmp_path / "state").exists()  # no cog started: not even the snapshot heartbeat was written
