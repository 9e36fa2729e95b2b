"""A bot that crashes (or is redeployed) comes back playing: snapshots, restore, and what is not restored.

Real processes throughout: process_manager.py or supervisord running real bot.py children against the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from sandbox.control import Sandbox
from tests.e2e.fleet import PRODUCTION_PLAYER_UPDATE_INTERVAL, Fleet, Scene
from tests.e2e.test_health_metrics import free_port, scrape
from tests.e2e.test_supervisord import fleet_env, supervisor  # noqa: F401  (fixture)
from tests.helpers import ROOT, Proc, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def track_url(slug: str, length: int = 600_000) -> str:
    return f"https://music.example/track/{slug}?length={length}"


class Managed:
    """process_manager.py with N real bots against a sandbox."""

    def __init__(self, sandbox: Sandbox, tmp: Path, count: int, **env: str) -> None:
        self.sandbox = sandbox
        self.apps = sandbox.add_bots(count)
        self.state_dir = tmp / "state"
        self.env = clean_env({**sandbox.bot_env(self.apps), "LOG_DIR": str(tmp / "logs"),
                              "STATE_DIR": str(self.state_dir), **env})
        self.proc: Proc | None = None

    async def start(self) -> None:
        self.proc = await Proc.start([sys.executable, str(ROOT / "process_manager.py"), "--env-file", os.devnull,
                                      "--status-interval", "0", "--stagger", "0.1"], env=self.env, name="manager")

    def bot_pid(self, number: int) -> int:
        assert self.proc is not None
        for child in psutil.Process(self.proc.pid).children():
            cmdline = child.cmdline()
            if "--bot" in cmdline and cmdline[cmdline.index("--bot") + 1] == str(number):
                return child.pid
        raise AssertionError(f"no process for bot {number}")

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.proc.wait(timeout=20)
            finally:
                await self.proc.kill()


async def ready(sandbox: Sandbox, apps) -> None:
    for app in apps:
        await sandbox.discord.wait_until_ready(app, timeout=30)
        await sandbox.lavalink.wait_for(
            lambda app=app: any(s["user_id"] == app.user_id and s["client_ready"]
                                for s in sandbox.lavalink.sessions.values()), timeout=30)


async def scene_for(sandbox: Sandbox, apps, **kwargs) -> Scene:
    fleet = Fleet(sandbox, list(apps), [], Path("."))
    return await fleet.scene(wait_ready=False, **kwargs)


def snapshot_file(state_dir: Path, bot: int, guild_id: int) -> Path:
    return state_dir / f"bot-{bot}" / f"guild-{guild_id}.json"


async def wait_snapshot(state_dir: Path, bot: int, guild_id: int, predicate, timeout: float = 10.0) -> dict:
    path = snapshot_file(state_dir, bot, guild_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            data = json.loads(path.read_text())
            if predicate(data):
                return data
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"snapshot {path} never matched")


def restart_request(sandbox: Sandbox, app, guild_id: int, since: int) -> dict | None:
    """The restored bot's first play request to Lavalink after `since`."""
    for request in sandbox.lavalink.requests[since:]:
        body = request.get("json") or {}
        if (request["method"] == "PATCH" and request["path"].endswith(f"/players/{guild_id}")
                and str(request.get("user_id")) == str(app.user_id) and body.get("track") and "position" in body):
            return request
    return None


def restart_position(sandbox: Sandbox, app, guild_id: int, since: int) -> int | None:
    """Where the restored bot told Lavalink to start the track."""
    request = restart_request(sandbox, app, guild_id, since)
    return None if request is None else request["json"]["position"]


def expected_restart(sandbox: Sandbox, app, guild_id: int, since: int, at_kill: int, killed: float) -> int:
    """Where the song had got to when the restored bot asked Lavalink to play it again: the position at the
    kill plus the time since (a restore resumes where the song would be by now, not where it was saved)."""
    request = restart_request(sandbox, app, guild_id, since)
    assert request is not None
    return at_kill + int((request["time"] - killed) * 1000)


def players_held(sandbox: Sandbox, app, guild_id: int) -> int:
    """Players this bot holds for the guild across all its Lavalink sessions (old sessions included)."""
    return sum(guild_id in s["players"] for s in sandbox.lavalink.sessions.values() if s["user_id"] == app.user_id)


async def kill_and_wait_back(sandbox: Sandbox, app, pid: int) -> None:
    identifies = sandbox.discord.gateway_stats(app)["identifies"]
    os.kill(pid, signal.SIGKILL)
    await sandbox.discord.wait_for(lambda: sandbox.discord.gateway_stats(app)["identifies"] > identifies, timeout=30)


async def one_bot(sandbox: Sandbox, tmp_path: Path, run_bot):
    """One real bot.py with its state in tmp_path, READY, and alice in the Lounge of a fresh guild."""
    (app,) = sandbox.add_bots(1)
    scene = await scene_for(sandbox, [app])
    state = tmp_path / "state"
    env = {**sandbox.bot_env([app]), "STATE_DIR": str(state)}
    bot = await run_bot(1, env)
    await ready(sandbox, [app])
    await scene.join("alice", "Lounge")
    return app, scene, state, env, bot


@pytest.fixture
async def sandbox():
    """The e2e sandbox with production's playerUpdateInterval: snapshot positions come from what the bot
    last heard (plus the time since), so they must hold with updates as rare as in production."""
    async with Sandbox(player_update_interval=PRODUCTION_PLAYER_UPDATE_INTERVAL) as sb:
        yield sb
    assert not sb.lavalink.unimplemented, f"Lavalink routes not emulated: {sb.lavalink.unimplemented}"


@pytest.fixture
async def managed(sandbox, tmp_path):
    fleets: list[Managed] = []

    def make(count: int, **env: str) -> Managed:
        fleets.append(Managed(sandbox, tmp_path, count, **env))
        return fleets[-1]

    yield make
    for fleet in fleets:
        await fleet.stop()


async def test_sigkill_mid_track_comes_back_playing_where_it_was(sandbox, managed):
    fleet = managed(2)
    scene = await scene_for(sandbox, fleet.apps)
    await fleet.start()
    await ready(sandbox, fleet.apps)

    await scene.join("alice", "Lounge")
    await scene.join("bob", "Studio")
    await scene.cmd(1, "alice", "play", query=track_url("crash-song"))
    for slug in ("next-1", "next-2"):
        await scene.cmd(1, "alice", "play", query=track_url(slug))
    await scene.cmd(1, "alice", "loop", mode="queue")
    await scene.cmd(1, "alice", "volume", level=35)
    await scene.cmd(1, "alice", "seek", time="2:00")
    await scene.cmd(2, "bob", "play", query=track_url("sibling-song"))
    await scene.wait_player(2, lambda p: p["track"] is not None and p["position"] > 0)

    before = await wait_snapshot(fleet.state_dir, 1, scene.guild_id,
                                 lambda d: d["volume"] == 35 and d["loop"] == "queue" and d["position"] >= 120_000)
    assert [t["info"]["identifier"].split("/")[-1].split("?")[0] for t in before["queue"]] == ["next-1", "next-2"]
    sibling_stats = sandbox.discord.gateway_stats(scene.app(2))
    await asyncio.sleep(1.0)
    at_kill = scene.player(1)["position"]
    sibling_at_kill = scene.player(2)["position"]

    since = len(sandbox.lavalink.requests)
    killed = time.monotonic()
    await kill_and_wait_back(sandbox, scene.app(1), fleet.bot_pid(1))
    await sandbox.lavalink.wait_for(lambda: restart_position(sandbox, scene.app(1), scene.guild_id, since) is not None,
                                    timeout=30)
    start = restart_position(sandbox, scene.app(1), scene.guild_id, since)
    restored = scene.player(1)
    assert "crash-song" in restored["identifier"] and restored["voice"] is not None
    expected = expected_restart(sandbox, scene.app(1), scene.guild_id, since, at_kill, killed)
    assert abs(start - expected) < 1_000, (start, expected, at_kill)
    assert restored["volume"] == 35 and restored["paused"] is False
    await scene.wait_message("Back after a restart - resuming **Crash Song** at 2:0", timeout=10)
    embed = (await scene.cmd(1, "alice", "queue")).embeds[0]
    assert "Next 1" in embed["description"] and "Next 2" in embed["description"]
    assert "loop: queue" in embed["footer"]["text"]
    assert scene.bot_voice_channel(1) == scene.voice("Lounge")

    # The sibling in the same guild played on, untouched: no reconnect, its position kept advancing.
    after = sandbox.discord.gateway_stats(scene.app(2))
    assert (after["identifies"], after["resumes"], after["connections"]) == (
        sibling_stats["identifies"], sibling_stats["resumes"], sibling_stats["connections"])
    assert scene.player(2)["position"] > sibling_at_kill
    assert players_held(sandbox, scene.app(1), scene.guild_id) == 1  # no leftover player of the dead process


async def test_snapshot_of_an_emptied_channel_is_not_restored(sandbox, managed):
    fleet = managed(1)
    scene = await scene_for(sandbox, fleet.apps)
    await fleet.start()
    await ready(sandbox, fleet.apps)
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("lonely-song"))
    await wait_snapshot(fleet.state_dir, 1, scene.guild_id, lambda d: d["current"] is not None)

    pid = fleet.bot_pid(1)
    os.kill(pid, signal.SIGSTOP)  # frozen: it cannot notice alice leaving
    await scene.join("alice", None)
    identifies = sandbox.discord.gateway_stats(scene.app(1))["identifies"]
    os.kill(pid, signal.SIGKILL)
    await sandbox.discord.wait_for(lambda: sandbox.discord.gateway_stats(scene.app(1))["identifies"] > identifies,
                                   timeout=30)
    await fleet.proc.wait_for_line(r"not restoring the player \(nobody is listening", timeout=20)
    assert not snapshot_file(fleet.state_dir, 1, scene.guild_id).exists()
    # Never rejoined; the channel Discord still showed it in after the crash is left, not kept by a mute bot.
    await sandbox.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=10)
    ops = [op for op in sandbox.discord.voice_ops[scene.app(1).user_id] if str(op["guild_id"]) == str(scene.guild_id)]
    assert [op["channel_id"] is None for op in ops] == [False, True], ops


async def test_corrupt_and_foreign_snapshots_are_ignored_and_each_bot_restores_its_own(sandbox, tmp_path, run_bot):
    apps = sandbox.add_bots(2)
    scene = await scene_for(sandbox, apps)
    state = tmp_path / "state"
    env = {**sandbox.bot_env(apps), "STATE_DIR": str(state)}
    bots = [await run_bot(n, env) for n in (1, 2)]
    await ready(sandbox, apps)
    await scene.join("alice", "Lounge")
    await scene.join("bob", "Studio")
    await scene.cmd(1, "alice", "play", query=track_url("first-bot-song"))
    await scene.cmd(2, "bob", "play", query=track_url("second-bot-song"))
    for n in (1, 2):
        await wait_snapshot(state, n, scene.guild_id, lambda d: d["current"] is not None)
    for bot in bots:
        bot.process.kill()
        await bot.wait()
    (state / "bot-1" / "guild-1.json").write_text('{"version": 1, "guild_id": ')  # truncated
    (state / "bot-1" / "guild-2.json").write_bytes(b"\xff\xfe garbage")
    (state / "bot-2" / "guild-3.json").write_text(json.dumps({"version": 0, "guild_id": 3}))  # older format

    bots = [await run_bot(n, env) for n in (1, 2)]
    await scene.wait_track(1, "first-bot-song", timeout=30)
    await scene.wait_track(2, "second-bot-song", timeout=30)
    assert scene.bot_voice_channel(1) == scene.voice("Lounge") and scene.bot_voice_channel(2) == scene.voice("Studio")
    await bots[0].wait_for_line(r"ignoring unreadable snapshot guild-1.json", timeout=5)
    await bots[0].wait_for_line(r"ignoring unreadable snapshot guild-2.json", timeout=5)
    await bots[1].wait_for_line(r"ignoring unreadable snapshot guild-3.json: format version 0", timeout=5)
    assert (state / "bot-1" / "guild-1.bad").exists() and not (state / "bot-1" / "guild-1.json").exists()
    assert not [line for bot in bots for line in bot.lines if "Traceback" in line]


async def test_sigterm_keeps_the_snapshot_so_a_deploy_resumes(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("deploy-song"))
    await scene.cmd(1, "alice", "play", query=track_url("after-deploy"))
    await scene.cmd(1, "alice", "pause")
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["paused"] is True)

    bot.send_signal(signal.SIGTERM)
    assert await bot.wait() == 0
    assert snapshot_file(state, 1, scene.guild_id).exists()
    port = free_port()
    restarted = await run_bot(1, {**env, "METRICS_PORT": str(port - 1)})
    player = await scene.wait_track(1, "deploy-song", timeout=30)
    assert player["paused"] is True
    queue = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
    assert "After Deploy" in queue
    await restarted.wait_for_line(rf"guild {scene.guild_id}: restored the player", timeout=10)
    assert (await scrape(port))[("musicbot_restores_total", ())] == 1


async def test_deploy_during_a_node_upgrade_resumes_with_fresh_encodings(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("upgrade-song"))
    await scene.cmd(1, "alice", "play", query=track_url("after-upgrade"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None and d["queue"])
    await scene.wait_player(1, lambda p: p["position"] >= 1500)

    # A deploy: the node restarts as a newer version while the bot restarts; the snapshot holds tracks encoded
    # by the old node, which the new one no longer decodes.
    await sandbox.lavalink.restart(2.0, upgrade=True)
    bot.send_signal(signal.SIGTERM)
    assert await bot.wait() == 0
    since = len(sandbox.lavalink.requests)
    await run_bot(1, env)
    player = await scene.wait_track(1, "upgrade-song", timeout=20)
    assert player["paused"] is False
    assert restart_position(sandbox, app, scene.guild_id, since) >= 1500  # resumed where it was, not from 0
    await scene.wait_message("Back after a restart - resuming **Upgrade Song**", timeout=10)
    assert not [m for m in sandbox.discord.messages(scene.world.text_id) if "can no longer" in (m.get("content") or "")]
    await scene.cmd(1, "alice", "skip")
    await scene.wait_track(1, "after-upgrade", timeout=15)  # the queued track was restored playable too


async def test_a_restore_with_nothing_playable_left_leaves_with_one_message(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("gone-song"))
    await scene.cmd(1, "alice", "play", query=track_url("gone-too"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None and d["queue"])

    # The upgraded node rejects the saved encodings and no longer finds the songs (a source plugin was removed).
    await sandbox.lavalink.restart(2.0, upgrade=True)
    bot.send_signal(signal.SIGTERM)
    assert await bot.wait() == 0
    sandbox.lavalink.fail_next(r"loadtracks.*gone-", status=500, count=2)
    await run_bot(1, env)
    await scene.wait_message("can no longer find", timeout=20)
    left = await scene.wait_message("None of the songs I was playing can be found", timeout=10)
    assert "Use /play to start again" in left["content"]
    texts = [m.get("content") or "" for m in sandbox.discord.messages(scene.world.text_id)]
    assert [t for t in texts if "can no longer find" in t] == [
        "The audio server can no longer find **Gone Song**, **Gone Too**; skipped."]
    assert not [t for t in texts if "Back after a restart" in t]  # no promise of a song that never came
    await sandbox.discord.wait_for(lambda: scene.bot_voice_channel(1) is None, timeout=10)
    await sandbox.discord.wait_for(lambda: not snapshot_file(state, 1, scene.guild_id).exists(), timeout=10)


async def test_stop_and_disconnect_end_the_snapshot_and_restore_can_be_turned_off(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    path = snapshot_file(state, 1, scene.guild_id)

    await scene.cmd(1, "alice", "play", query=track_url("stopped-song"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    await scene.cmd(1, "alice", "stop")
    await sandbox.discord.wait_for(lambda: not path.exists(), timeout=5)

    await scene.cmd(1, "alice", "play", query=track_url("left-song"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    await scene.cmd(1, "alice", "disconnect")
    await sandbox.discord.wait_for(lambda: not path.exists(), timeout=5)

    await scene.cmd(1, "alice", "play", query=track_url("not-restored"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    bot.process.kill()
    await bot.wait()
    ops_before = len(sandbox.discord.voice_ops[app.user_id])
    bot = await run_bot(1, {**env, "RESTORE": "off"})
    await bot.wait_for_line(r"ready as", timeout=20)
    await asyncio.sleep(1.0)
    assert len(sandbox.discord.voice_ops[app.user_id]) == ops_before  # did not rejoin
    assert "restored the player" not in bot.output
    assert path.exists()  # RESTORE=off leaves snapshots alone


async def test_stale_snapshots_are_discarded(sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("old-song"))
    data = await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    bot.process.kill()
    await bot.wait()
    data["saved_at"] -= 3600
    snapshot_file(state, 1, scene.guild_id).write_text(json.dumps(data))
    alive = state / "bot-1" / "alive"  # the bot's heartbeat: it was last seen alive an hour ago too
    alive.touch()
    os.utime(alive, (data["saved_at"], data["saved_at"]))
    bot = await run_bot(1, env)
    await bot.wait_for_line(r"not restoring the player \(snapshot is \d+ s old\)", timeout=30)
    assert not snapshot_file(state, 1, scene.guild_id).exists()


async def test_sigkill_under_supervisord_comes_back_playing(sandbox, supervisor):  # noqa: F811
    apps = sandbox.add_bots(1)
    scene = await scene_for(sandbox, apps)
    await supervisor.start(fleet_env(sandbox.bot_env(apps), 1, supervisor.home))
    await ready(sandbox, apps)
    await scene.join("alice", "Lounge")
    await scene.cmd(1, "alice", "play", query=track_url("supervised-song"))
    await scene.cmd(1, "alice", "play", query=track_url("supervised-next"))
    await wait_snapshot(supervisor.home / "state", 1, scene.guild_id, lambda d: d["current"] and d["queue"])
    # The file is not rewritten while the song plays on: the restore must work the position out.
    await scene.wait_player(1, lambda p: p["position"] >= 3000)
    pid = await supervisor.pid("bot:bot-1")
    at_kill, killed = scene.player(1)["position"], time.monotonic()
    since = len(sandbox.lavalink.requests)
    await kill_and_wait_back(sandbox, apps[0], pid)
    await scene.wait_player(1, lambda p: p["identifier"] and "supervised-song" in p["identifier"]
                            and p["voice"] is not None, timeout=30)
    await sandbox.lavalink.wait_for(lambda: restart_position(sandbox, apps[0], scene.guild_id, since) is not None)
    start = restart_position(sandbox, apps[0], scene.guild_id, since)
    expected = expected_restart(sandbox, apps[0], scene.guild_id, since, at_kill, killed)
    assert abs(start - expected) < 1_000, (start, expected, at_kill)
    queue = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
    assert "Supervised Next" in queue


async def test_an_old_snapshot_of_a_bot_alive_until_the_crash_resumes_where_the_song_is_by_now(
        sandbox, tmp_path, run_bot):
    """A long song is never rewritten while it plays; the heartbeat says the bot was alive until it died."""
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("marathon-song", length=7_200_000))
    data = await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    bot.process.kill()
    await bot.wait()
    data["saved_at"] -= 1800  # saved half an hour ago, at about 0:00: the song is at ~30:00 by now
    snapshot_file(state, 1, scene.guild_id).write_text(json.dumps(data))
    (state / "bot-1" / "alive").touch()  # ... and the bot was alive until just now
    since = len(sandbox.lavalink.requests)
    await run_bot(1, env)
    await sandbox.lavalink.wait_for(lambda: restart_position(sandbox, app, scene.guild_id, since) is not None,
                                    timeout=30)
    start = restart_position(sandbox, app, scene.guild_id, since)
    assert 1_800_000 <= start < 1_800_000 + 30_000, start
    await scene.wait_message("Back after a restart - resuming **Marathon Song** at 30:", timeout=10)


async def test_a_change_is_on_disk_within_a_second_and_a_song_playing_on_is_not_rewritten(
        sandbox, tmp_path, run_bot):
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("steady-song"))
    await wait_snapshot(state, 1, scene.guild_id, lambda d: d["current"] is not None)
    changes = [("volume", {"level": 40}, lambda d: d["volume"] == 40),
               ("loop", {"mode": "track"}, lambda d: d["loop"] == "track"),
               ("seek", {"time": "3:00"}, lambda d: 180_000 <= d["position"] < 183_000),
               ("pause", {}, lambda d: d["paused"] is True),
               ("resume", {}, lambda d: d["paused"] is False)]
    for command, options, on_disk in changes:
        await scene.cmd(1, "alice", command, **options)
        await wait_snapshot(state, 1, scene.guild_id, on_disk, timeout=2.0)  # promised: within 1 s

    path = snapshot_file(state, 1, scene.guild_id)
    before = path.stat()
    start = len(sandbox.lavalink.events)
    await sandbox.lavalink.wait_for(lambda: len(sandbox.lavalink.find_events(
        "playerUpdate", user_id=app.user_id, guild_id=scene.guild_id, start=start)) >= 4, timeout=20)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # four updates, no write
    assert scene.player(1)["position"] > 182_000  # the song did play on meanwhile

    # ... and the file it kept is still right: a crash now resumes where the song is, not where it was saved.
    at_kill, killed = scene.player(1)["position"], time.monotonic()
    bot.process.kill()
    await bot.wait()
    since = len(sandbox.lavalink.requests)
    await run_bot(1, env)
    await sandbox.lavalink.wait_for(lambda: restart_position(sandbox, app, scene.guild_id, since) is not None,
                                    timeout=30)
    start_at = restart_position(sandbox, app, scene.guild_id, since)
    expected = expected_restart(sandbox, app, scene.guild_id, since, at_kill, killed)
    assert abs(start_at - expected) < 1_000, (start_at, expected, at_kill)
    assert scene.player(1)["volume"] == 40


async def test_after_sigterm_the_song_resumes_where_it_stopped(sandbox, tmp_path, run_bot):
    """A deploy: the bot left voice, the song stopped; it must not skip the time the bot was away."""
    app, scene, state, env, bot = await one_bot(sandbox, tmp_path, run_bot)
    await scene.cmd(1, "alice", "play", query=track_url("deploy-position-song"))
    await scene.wait_player(1, lambda p: p["position"] >= 3000)
    bot.send_signal(signal.SIGTERM)
    assert await bot.wait() == 0
    path = snapshot_file(state, 1, scene.guild_id)
    data = json.loads(path.read_text())
    assert data["stopped"] is True and data["position"] >= 3000  # the final flush, written before the exit
    data["saved_at"] -= 60  # the deploy took a minute
    path.write_text(json.dumps(data))
    since = len(sandbox.lavalink.requests)
    await run_bot(1, env)
    await sandbox.lavalink.wait_for(lambda: restart_position(sandbox, app, scene.guild_id, since) is not None,
                                    timeout=30)
    assert abs(restart_position(sandbox, app, scene.guild_id, since) - data["position"]) < 500
