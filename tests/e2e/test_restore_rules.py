"""The restore rules of the README, seen from the guild: what comes back after a restart, what does not, and how
a bot stops. Real bot.py processes against the sandbox (the patterns of test_restore.py).

- the old panel is removed when the restored song's panel is posted (never two panels);
- `RESTORE_MAX_AGE`: an older snapshot is not restored, and deleted;
- no restore into a channel the bot may no longer join (Connect denied while it was down);
- history (/previous) and autoplay come back with the song;
- auto-leave (ALONE_TIMEOUT, IDLE_TIMEOUT) ends the snapshot: a restart does not rejoin;
- privileged intents refused by Discord (gateway close 4014) -> exit 78, a configuration error;
- bots never sync their slash commands on start-up (register_commands.py does, when asked).
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.e2e.test_restore import ready, scene_for, snapshot_file, track_url, wait_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

CONNECT = 1 << 20


async def one_bot(sandbox, tmp_path, run_bot, **extra: str):
    """One real bot.py (state in tmp_path, `extra` settings), READY, with alice in the Lounge of a fresh guild."""
    (app,) = sandbox.add_bots(1)
    scene = await scene_for(sandbox, [app])
    state = tmp_path / "state"
    env = {**sandbox.bot_env([app]), "STATE_DIR": str(state), **extra}
    bot = await run_bot(1, env)
    await ready(sandbox, [app])
    await scene.join("alice", "Lounge")
    return app, scene, state, env, bot


async def crash(bot) -> None:
    bot.process.kill()  # SIGKILL: no goodbye, the snapshot is all that is left
    await bot.wait()


def voice_ops_in(sandbox, app, scene) -> list[dict]:
    return [op for op in sandbox.discord.voice_ops.get(app.user_id, []) if str(op["guild_id"]) == str(scene.guild_id)]


def said(scene, text: str) -> list[str]:
    return [m.get("content") or "" for m in scene.messages() if text in (m.get("content") or "")]


async def silenced(bot, scene) -> None:
    """The player the killed process left on the (resumed) Lavalink session is dropped: nothing plays on."""
    await bot.wait_for_line(rf"dropped the leftover player of guild {scene.guild_id}", timeout=30)
    assert scene.player(1) is None


async def marker_guild(sandbox, app, state, slug: str):
    """A second guild where the bot plays for bob, snapshot written. Snapshots are restored in guild id order
    and this guild is newer, so once its song is back the restore pass has dealt with the test's guild too."""
    marker = await scene_for(sandbox, [app])
    await marker.join("bob", "Lounge")
    await marker.cmd(1, "bob", "play", query=track_url(slug))
    await wait_snapshot(state, 1, marker.guild_id, lambda d: d["current"] is not None)
    return marker


async def test_the_old_panel_is_removed_when_the_restored_song_posts_its_own(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("panel-before"))
    old = await scene.wait_panel("Panel Before")
    await wait_snapshot(state, 1, scene.guild_id, lambda d: str(d.get("panel_message_id")) == str(old["id"]))
    await crash(bot)
    assert [p["id"] for p in scene.panels()] == [old["id"]]  # the dead bot's panel is still there

    await run_bot(1, env)
    await scene.wait_message("Back after a restart - resuming **Panel Before**", timeout=30)
    new = await scene.wait_panel("Panel Before")
    assert new["id"] != old["id"]
    gone = sandbox.discord.message(int(old["id"]))
    assert gone is None or gone.get("deleted"), gone
    assert [p["id"] for p in scene.panels()] == [new["id"]]  # replaced, not duplicated


async def test_a_snapshot_older_than_restore_max_age_is_not_restored_and_is_deleted(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot, RESTORE_MAX_AGE="20")
    await scene.cmd(1, "alice", "play", query=track_url("too-old"))
    data = await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    await crash(bot)
    data["saved_at"] -= 60  # a minute old: far younger than the default 600 s, older than the 20 s configured
    snapshot_file(state, 1, scene.guild_id).write_text(json.dumps(data))
    alive = state / "bot-1" / "alive"  # the bot's heartbeat, where it keeps one: last seen alive then too
    alive.touch()
    os.utime(alive, (data["saved_at"], data["saved_at"]))
    ops = len(voice_ops_in(sandbox, app, scene))

    bot = await run_bot(1, env)
    await bot.wait_for_line(r"not restoring the player \(snapshot is \d+ s old\)", timeout=30)
    assert not snapshot_file(state, 1, scene.guild_id).exists()
    await silenced(bot, scene)
    # Never rejoined; the channel Discord still showed it in after the crash is left, not kept by a mute bot.
    await sandbox.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=10)
    assert [op["channel_id"] for op in voice_ops_in(sandbox, app, scene)[ops:]] == [None]
    assert not said(scene, "Back after a restart")


async def test_no_restore_into_a_channel_the_bot_may_no_longer_join(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("locked-out"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    await crash(bot)
    await sandbox.discord.set_overwrite(scene.voice("Lounge"), app.user_id, deny=CONNECT)  # while it was down
    ops = len(voice_ops_in(sandbox, app, scene))

    bot = await run_bot(1, env)
    line = await bot.wait_for_line(r"guild \d+: not restoring the player", timeout=30)
    assert "permission to join" in line, line
    assert not snapshot_file(state, 1, scene.guild_id).exists()
    await silenced(bot, scene)
    # No join attempt Discord would leave unanswered; only leaving the channel the crash left it in.
    await sandbox.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=10)
    assert [op["channel_id"] for op in voice_ops_in(sandbox, app, scene)[ops:]] == [None]
    assert not said(scene, "Back after a restart")


async def test_history_and_autoplay_come_back_with_the_song(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("history-song"))
    await scene.cmd(1, "alice", "play", query="summer signals")  # a YouTube result: it has related songs
    skipped = await scene.cmd(1, "alice", "skip")
    assert skipped.content.startswith("Skipped **History Song**"), skipped.content
    summer = await scene.wait_player(1, lambda p: p["identifier"] is not None and "history-song" not in p["identifier"])
    assert (await scene.cmd(1, "alice", "autoplay", mode="on")).content == "Autoplay is now on."
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["autoplay"] is True and d["history"]
                        and d["current"]["info"]["identifier"] == summer["identifier"])
    await crash(bot)

    await run_bot(1, env)
    await scene.wait_player(1, lambda p: p["identifier"] == summer["identifier"] and p["voice"] is not None,
                            timeout=30)
    await scene.wait_message("Back after a restart - resuming", timeout=10)
    fields = {f["name"]: f["value"] for f in (await scene.cmd(1, "alice", "nowplaying")).embeds[0]["fields"]}
    assert fields["Autoplay"] == "on", fields

    # History: /previous goes back to the song played before the crash.
    back = await scene.cmd(1, "alice", "previous")
    assert back.content == "Back to **History Song**.", back.content
    await scene.wait_track(1, "history-song")
    # Autoplay: once the queue runs out, a related song follows instead of silence.
    skipped = await scene.cmd(1, "alice", "skip")
    assert skipped.content.startswith("Skipped **History Song**"), skipped.content
    current = await scene.wait_player(1, lambda p: p["identifier"] == summer["identifier"])
    seconds = current["track"]["length"] // 1000 - 2
    await scene.cmd(1, "alice", "seek", time=f"{seconds // 60}:{seconds % 60:02d}")
    related = await scene.wait_player(
        1, lambda p: p["identifier"] not in (None, summer["identifier"]) and "history-song" not in p["identifier"],
        timeout=20)
    assert related["track"]["sourceName"] == "youtube"
    panel = await scene.wait_panel(related["title"][:20], timeout=10)
    assert {f["name"]: f["value"] for f in panel["embeds"][0]["fields"]}["Requested by"] == "autoplay"
    assert not said(scene, "The queue is finished")


@pytest.mark.parametrize(("setting", "leave", "message"), [
    ("ALONE_TIMEOUT", "alone", "Everyone left the voice channel, so I left too."),  # 5 s: the least allowed
    ("IDLE_TIMEOUT", "idle", "Nothing played for a while"),  # 10 s: the least allowed
])
async def test_auto_leave_ends_the_snapshot_and_a_restart_does_not_rejoin(sandbox, tmp_path, run_bot, setting,
                                                                           leave, message):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot, **{setting: "5" if leave == "alone" else "10"})
    path = snapshot_file(state, 1, scene.guild_id)
    if leave == "alone":
        await scene.cmd(1, "alice", "play", query=track_url("left-alone"))
        await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
        await scene.join("alice", None)
    else:  # a short song, then nothing: idle
        await scene.cmd(1, "alice", "play", query=track_url("short-idle", 2_500))
        await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    await scene.wait_message(message, timeout=30)
    await sandbox.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=10)
    await sandbox.discord.wait_for(lambda: not path.exists(), timeout=5)

    marker = await marker_guild(sandbox, app, state, f"marker-{leave}")
    await crash(bot)
    await scene.join("alice", "Lounge")  # someone is listening again: only the ended snapshot keeps it away
    ops = len(voice_ops_in(sandbox, app, scene))
    await run_bot(1, env)
    await marker.wait_message("Back after a restart", timeout=30)  # the restore pass is over
    assert len(voice_ops_in(sandbox, app, scene)) == ops
    assert scene.bot_voice_channel(1) is None
    assert not said(scene, "Back after a restart")
    assert not path.exists()


async def test_privileged_intents_refused_by_discord_exit_78(sandbox, run_bot):
    """Discord closes the gateway with 4014 when an application asks for intents it was not granted:
    an operator must act, so the bot exits 78 (a supervisor does not restart it) and says why."""
    (app,) = sandbox.add_bots(1)
    await sandbox.create_world([app])
    bot = await run_bot(1, sandbox.bot_env([app]))
    await sandbox.discord.wait_until_ready(app, timeout=30)
    await bot.wait_for_line(r"ready as", timeout=15)
    assert await sandbox.discord.close_gateway(app, code=4014, reason="Disallowed intent(s).") == 1
    assert await bot.wait(timeout=20) == 78, bot.output
    assert re.search(r"\[Bot 1\] .*BOT_TOKEN_1: privileged intents are not enabled", bot.output), bot.output
    assert app.token not in bot.output


async def test_bots_never_sync_commands_on_start_up(sandbox, run_bot):
    """README: "Bots never sync commands on start-up". No register_commands.py here: any command write in the
    request log would come from bot.py itself (a start, then a restart after SIGTERM)."""
    apps = sandbox.add_bots(2)
    world = await sandbox.create_world(apps)
    env = sandbox.bot_env(apps)
    bots = [await run_bot(n, env) for n in (1, 2)]
    await ready(sandbox, apps)
    bots[0].send_signal(signal.SIGTERM)
    assert await bots[0].wait() == 0
    identifies = sandbox.discord.gateway_stats(apps[0])["identifies"]
    again = await run_bot(1, env)
    await sandbox.discord.wait_for(lambda: sandbox.discord.gateway_stats(apps[0])["identifies"] > identifies,
                                   timeout=30)
    await again.wait_for_line(r"ready as", timeout=30)
    await ready(sandbox, apps)

    ids = {app.user_id for app in apps}
    from_bots = [r for r in sandbox.discord.requests if r.app in ids]
    assert {r.app for r in from_bots if r.path.endswith("/users/@me")} == ids, \
        "the request log does not show the bots' start-up requests"
    writes = [(r.method, r.path) for r in from_bots
              if r.method in ("PUT", "POST", "PATCH", "DELETE") and re.search(r"/applications/\d+/.*commands", r.path)]
    assert writes == []
    for app in apps:
        assert sandbox.discord.commands(app) == [] and sandbox.discord.commands(app, world.guild_id) == []
