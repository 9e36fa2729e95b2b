"""/healthz and /metrics of a real bot, and the manager's use of them (status table, --status, HEALTH_TIMEOUT).

One bot serves both endpoints for the first two tests: its login is held by the sandbox so /healthz is seen
before READY; a Lavalink restart makes it not ready again; a /play moves the Prometheus counters.
The manager test stops a real bot with SIGSTOP: from the outside, a stuck event loop.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp
import psutil
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from sandbox.control import Sandbox
from tests.e2e.fleet import Fleet
from tests.helpers import ROOT, Proc, clean_env, start_bot

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LONG = "https://music.example/track/long-song?length=600000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status, await resp.text()


async def health(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status, await resp.json()


async def wait_health(port: int, status: int, timeout: float = 30.0) -> dict:
    """Poll /healthz until it answers `status`; its body."""
    last = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            last = await health(port)
        except aiohttp.ClientConnectionError as exc:  # not listening yet (a restarting bot)
            last = exc
        else:
            if last[0] == status:
                return last[1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"/healthz did not answer {status} within {timeout} s; last: {last}")


async def scrape(port: int) -> dict[tuple[str, tuple], float]:
    status, text = await get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory):
    """A sandbox and one bot serving /healthz on METRICS_PORT+1; also what /healthz said while login was held."""
    async with Sandbox(player_update_interval=0.5) as sandbox:
        apps = sandbox.add_bots(1)
        port = free_port()
        log_dir = tmp_path_factory.mktemp("health") / "logs"
        sandbox.discord.set_latency("GET", r"^/users/@me$", 5.0)  # login held: the bot is up but not READY
        bot = await start_bot(1, {**sandbox.bot_env(apps), "METRICS_PORT": str(port - 1)}, log_dir=log_dir)
        fleet = Fleet(sandbox, apps, [bot], log_dir)
        try:
            await bot.wait_for_line(rf"serving /healthz and /metrics on http://127\.0\.0\.1:{port}$", timeout=30)
            early = await health(port)
            sandbox.discord.set_latency("GET", r"^/users/@me$", 0)
            await sandbox.discord.wait_until_ready(apps[0], timeout=30)
            await bot.wait_for_line(r"ready as", timeout=15)
            yield fleet, port, early
        finally:
            await fleet.stop()


async def test_healthz_is_503_before_ready_200_when_ready_and_503_while_lavalink_is_down(served):
    fleet, port, (status, body) = served
    bot = fleet.bots[0]
    assert status == 503 and body["ready"] is False and body["bot"] == 1 and body["pid"] == bot.pid
    assert "not connected to Discord (no READY yet, or the gateway is reconnecting)" in body["problems"]

    body = await wait_health(port, 200)  # READY, and the node connects in the background
    assert body["ready"] is True and "problems" not in body
    assert body["bot"] == 1 and body["pid"] == bot.pid and body["nodes"] == {"node-1": "CONNECTED"}
    assert body["players"] == 0 and body["queued_tracks"] == 0
    assert isinstance(body["gateway_latency_ms"], float) and 0 <= body["loop_lag_ms"] < 500

    await fleet.lavalink.restart(downtime=5.0)  # the node goes away: the bot cannot play anything
    body = await wait_health(port, 503, timeout=10)
    assert body["problems"] == ["no Lavalink node connected"] and body["nodes"]["node-1"] != "CONNECTED"
    await fleet.lavalink.wait_until_up(timeout=20)
    body = await wait_health(port, 200, timeout=60)  # wavelink reconnects with its backoff
    assert body["nodes"] == {"node-1": "CONNECTED"}

    status, text = await get(port, "/nope")
    assert status == 404 and "try /healthz or /metrics" in text
    assert not [line for line in bot.lines if "aiohttp.access" in line]  # probes and scrapes are not logged


async def test_metrics_count_a_play_and_a_refusal(served):
    fleet, port, _ = served
    scene = await fleet.scene()
    before = await scrape(port)
    assert before[("musicbot_ready", ())] == 1.0
    assert before[("musicbot_failed_request_budget", ())] == 500.0
    assert before[("process_resident_memory_bytes", ())] > 20 * 2**20  # prometheus_client's process collector

    await scene.join("alice", "Lounge")
    result = await scene.cmd(1, "alice", "play", query=LONG)
    assert "Now playing" in result.content, result.content
    for track in ("second", "third"):
        result = await scene.cmd(1, "alice", "play", query=f"https://music.example/track/{track}?length=600000")
        assert "Queued at position" in result.content, result.content
    await scene.join("bob", "Studio")
    refused = await scene.cmd(1, "bob", "skip")  # not in the bot's channel: an expected refusal, not a bug
    assert refused.ephemeral

    after = await scrape(port)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("musicbot_interactions_total", command="play", outcome="ok") == 3
    assert delta("musicbot_interactions_total", command="skip", outcome="refused") == 1
    assert delta("musicbot_interactions_total", command="play", outcome="error") == 0
    assert delta("musicbot_interaction_ack_seconds_count") == 4  # every interaction acknowledged once
    assert 0 < delta("musicbot_interaction_ack_seconds_sum") < 4 * 3.0  # each within Discord's 3 s
    assert delta("musicbot_lavalink_requests_total") >= 4  # 3 searches and a play at least
    assert delta("musicbot_lavalink_request_seconds_count") == delta("musicbot_lavalink_requests_total")
    assert after[("musicbot_players", ())] == 1.0
    assert after[("musicbot_queued_tracks", ())] == 2.0
    assert after[("musicbot_lavalink_nodes_connected", ())] == 1.0
    assert after[("musicbot_gateway_connects_total", ())] >= 1.0
    status, body = await health(port)
    assert status == 200 and body["players"] == 1 and body["queued_tracks"] == 2


async def test_metrics_count_429s_gateway_resumes_and_voice_rejoins(served):
    fleet, port, _ = served
    bot = fleet.bots[0]
    scene = await fleet.scene()
    await scene.join("carol", "Lounge")
    assert "Now playing" in (await scene.cmd(1, "carol", "play", query=LONG)).content
    await scene.wait_player(1, lambda p: p["track"] is not None and p["voice"] is not None)
    before = await scrape(port)

    fleet.discord.inject_429("POST", r"^/interactions/\d+/[^/]+/callback$", count=1, retry_after=0.2)
    result = await scene.cmd(1, "carol", "nowplaying")  # discord.py waits out the 429 and answers
    assert result.content or result.embeds
    await fleet.discord.send_reconnect(scene.app(1))  # op 7: the bot reconnects and resumes its session
    await bot.wait_for_line(r"gateway session resumed", timeout=15)
    fleet.sandbox.drop_voice(scene.app(1), scene.guild_id, 4006)  # the node loses voice: the bot rejoins
    await bot.wait_for_line(rf"guild {scene.guild_id}: voice connection back in #Lounge", timeout=30)

    after = await scrape(port)

    def delta(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    assert delta("musicbot_discord_429_total") == 1
    assert delta("musicbot_discord_failed_requests_total") == 1
    assert after[("musicbot_failed_request_budget_used", ())] >= 1
    assert delta("musicbot_interaction_ack_seconds_count") == 1  # the retry that passed, once
    assert delta("musicbot_gateway_resumes_total") == 1
    assert delta("musicbot_gateway_disconnects_total") == 1
    assert delta("musicbot_gateway_connects_total") == 0  # resumed: no new session
    assert delta("musicbot_voice_rejoins_total") == 1 and delta("musicbot_voice_rejoin_failures_total") == 0


# ---- the manager ---------------------------------------------------------------------------------------------

async def run_status(env: dict[str, str]) -> tuple[int, list[str]]:
    proc = await Proc.start([sys.executable, str(ROOT / "process_manager.py"), "--env-file", "/dev/null", "--status"],
                            env=env, name="process_manager.py --status")
    try:
        return await proc.wait(timeout=20), proc.lines
    finally:
        await proc.kill()


@pytest.mark.timeout(120)
async def test_manager_shows_health_and_restarts_a_bot_whose_healthz_goes_silent(tmp_path):
    async with Sandbox() as sandbox:
        apps = sandbox.add_bots(1)
        await sandbox.create_world(apps)
        port = free_port()
        env = clean_env({**sandbox.bot_env(apps), "LOG_DIR": str(tmp_path / "logs"), "STATE_DIR": str(tmp_path / "st"),
                         "METRICS_PORT": str(port - 1), "HEALTH_TIMEOUT": "15"})
        manager = await Proc.start([sys.executable, str(ROOT / "process_manager.py"), "--env-file", "/dev/null",
                                    "--startsecs", "1", "--status-interval", "1"], env=env, name="process_manager.py")
        try:
            await manager.wait_for_line(r"Bot 1: STARTING -> RUNNING", timeout=30)
            await sandbox.discord.wait_until_ready(apps[0], timeout=30)
            await wait_health(port, 200)
            pid = int((await manager.wait_for_line(r"Bot 1: STOPPED -> STARTING \(pid \d+\)")).split("pid ")[1][:-1])

            code, lines = await run_status(env)
            assert code == 0, lines
            assert lines[0].split()[:6] == ["BOT", "READY", "PID", "UPTIME", "LATENCY", "PLAYERS"]
            assert lines[1].split()[:4] == ["Bot", "1", "yes", str(pid)] and "node-1 CONNECTED" in lines[1], lines

            # The manager's own table (every second here): readiness, gateway latency, players from /healthz.
            await manager.wait_for_line(rf"^\[manager\] Bot 1\s+RUNNING\s+{pid}\s+\S+\s+0\s+[\d.]+ MB\s+[\d.]+ MB\s+yes\s+"
                                        rf"\d+ ms\s+0\s+-$", timeout=15)

            stopped_at = asyncio.get_running_loop().time()
            psutil.Process(pid).suspend()  # SIGSTOP: the process exists, its loop answers nothing
            code, lines = await run_status(env)
            assert code == 1 and lines[1].split()[:4] == ["Bot", "1", "no", "answer"], lines
            assert f"127.0.0.1:{port}: timed out" in lines[1], lines

            await manager.wait_for_line(rf"Bot 1: /healthz silent for \d+ s \(HEALTH_TIMEOUT 15 s\): "
                                        rf"SIGKILL to pid {pid}, restarting it", timeout=40)
            assert asyncio.get_running_loop().time() - stopped_at >= 15 - 2  # not before its time (probe interval)
            # Killed while RUNNING: restarted at once, like any crash of a running bot.
            await manager.wait_for_line(r"Bot 1: RUNNING -> BACKOFF \(signal SIGKILL after .*restarting now\)")
            line = await manager.wait_for_line(r"Bot 1: BACKOFF -> STARTING \(pid \d+\)", timeout=15)
            new_pid = int(line.split("pid ")[1][:-1])
            body = await wait_health(port, 200, timeout=40)
            assert body["pid"] == new_pid != pid
            await manager.wait_for_line(rf"^\[manager\] Bot 1\s+RUNNING\s+{new_pid}\s+\S+\s+1\s+[\d.]+ MB\s+[\d.]+ MB\s+yes\s+"
                                        rf"\d+ ms\s+0\s+signal SIGKILL \(/healthz silent\), \d+s ago$", timeout=15)

            manager.send_signal(signal.SIGTERM)
            assert await manager.wait(timeout=30) == 0
        finally:
            try:
                children = psutil.Process(manager.pid).children(recursive=True)
            except psutil.Error:
                children = []
            await manager.kill()
            for child in children:  # bots run in sessions of their own: killing the manager's group misses them
                try:
                    child.kill()
                except psutil.Error:
                    pass
