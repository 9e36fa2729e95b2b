"""The real process_manager.py supervising real `bot.py` children against the sandbox.

Crash loops and backoff are covered with a fake bot script in test_process_manager_children.py; here the
children are the real bots, so what is checked is what only they can show: tokens really rejected by
(emulated) Discord, gateway sessions really opened and closed, real pids and memory in the status table.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from sandbox.control import LAVALINK_PASSWORD, Sandbox
from tests.helpers import ROOT, Proc, clean_env

pytestmark = pytest.mark.e2e

MANAGER = ROOT / "process_manager.py"
# A status table row: "[manager] Bot 1  RUNNING  4242  5s  0  7.9 MB  21.3 MB  -" (USS, PSS)
STATUS_ROW = re.compile(r"^\[manager\] Bot (\d+)\s+([A-Z]+)\s+(\d+|-)\s+(\S+)\s+(\d+)\s+"
                        r"(\d+\.\d MB|-)\s+(\d+\.\d MB|-)\s+")
PREFIXED = re.compile(r"^\[(Bot \d+|manager)\]( |$)")


def forged(token: str) -> str:
    """Well-formed (the real bot's user id first) but unknown to Discord: a revoked or mistyped token."""
    return token.split(".", 1)[0] + ".AAAAAA.revoked-xxxxxxxxxxxxxxxxxxxxxxxxx"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def manager_env(sandbox: Sandbox, apps, log_dir: Path, **overrides: str) -> dict[str, str]:
    """The sandbox's variables; logs and bot state under the test's directory (the bots' cwd is the repo)."""
    return clean_env({**sandbox.bot_env(apps), "LOG_DIR": str(log_dir), "STATE_DIR": str(log_dir.parent / "state"),
                      **overrides})


def assert_no_secrets(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, "a secret reached the output"


@pytest.fixture
async def sandbox():
    async with Sandbox() as sb:
        yield sb


@pytest.fixture
async def run_manager():
    """Start process_manager.py; at teardown kill any survivor: the manager and every bot it started."""
    started: list[Proc] = []

    async def start(*args: str, env: dict[str, str]) -> Proc:
        proc = await Proc.start([sys.executable, str(MANAGER), "--env-file", "/dev/null", *args], env=env,
                                name="process_manager.py")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        await proc.kill()
        for child in children:  # the bots run in sessions of their own: killing the manager's group misses them
            try:
                child.kill()
            except psutil.Error:
                pass


@pytest.mark.timeout(30)
async def test_check_asks_the_sandbox_about_each_token_and_the_node(sandbox, run_manager, tmp_path):
    apps = sandbox.add_bots(2)
    good = manager_env(sandbox, apps, tmp_path / "logs")
    secrets = [app.token for app in apps] + [forged(apps[1].token), LAVALINK_PASSWORD, "wrong-lavalink-password"]
    node = f"Lavalink node-1 {sandbox.lavalink.uri}"

    async def check(env: dict[str, str]) -> tuple[int, list[str]]:
        proc = await run_manager("--check", env=env)
        code = await proc.wait(timeout=15)
        assert_no_secrets(proc.output, secrets)
        return code, proc.lines

    code, lines = await check(good)
    assert code == 0, lines
    assert lines[:2] == [f"Bot 1: OK — Music 1 (id {apps[0].user_id})", f"Bot 2: OK — Music 2 (id {apps[1].user_id})"]
    assert len(lines) == 3 and lines[2].startswith(f"{node}: OK — version "), lines

    code, lines = await check({**good, "BOT_TOKEN_2": forged(apps[1].token)})
    assert code == 1 and lines[0].startswith("Bot 1: OK") and lines[2].startswith(f"{node}: OK"), lines
    assert lines[1] == "Bot 2: REJECTED (401) — check BOT_TOKEN_2"

    code, lines = await check({**good, "LAVALINK_PASSWORD": "wrong-lavalink-password"})
    assert code == 1 and lines[-1] == f"{node}: UNAUTHORIZED — check LAVALINK_PASSWORD", lines

    port = closed_port()
    code, lines = await check({**good, "LAVALINK_URI": f"http://127.0.0.1:{port}"})
    assert code == 1 and lines[-1].startswith(f"Lavalink node-1 http://127.0.0.1:{port}: UNREACHABLE — "), lines

    assert not any(sandbox.discord.gateway_stats(app)["connected"] for app in apps)  # no bot was started
    assert not (tmp_path / "logs").exists() and not (tmp_path / "state").exists()  # --check starts no bot


@pytest.mark.timeout(75)
async def test_fleet_of_real_bots_isolates_a_rejected_token_reports_and_stops_cleanly(sandbox, run_manager, tmp_path):
    apps = sandbox.add_bots(3)
    bad_token = forged(apps[1].token)
    env = manager_env(sandbox, apps, tmp_path / "logs", BOT_TOKEN_2=bad_token)
    manager = await run_manager("--startsecs", "1", "--stagger", "0.2", "--status-interval", "0", env=env)

    # Bots 1 and 3 come up; bot 2's token is rejected once and it is never started again (exit 78).
    for app in (apps[0], apps[2]):
        await sandbox.discord.wait_until_ready(app, timeout=30)
    await manager.wait_for_line(r"^\[manager\] .*Bot 1: STARTING -> RUNNING", timeout=15)
    await manager.wait_for_line(r"^\[manager\] .*Bot 3: STARTING -> RUNNING", timeout=15)
    await manager.wait_for_line(r"Bot 2 exited 78 \(configuration error\): not restarting", timeout=15)
    ended = await manager.wait_for_line(r"Bot 2: (STARTING|RUNNING) -> (FATAL|EXITED) \(exit 78 ", timeout=5)
    assert manager.process.returncode is None, "the manager must keep running for the other bots"

    # On demand, the status table: real pids and a memory figure for the running bots, bot 2 ended.
    manager.send_signal(signal.SIGUSR1)
    await manager.wait_for_line(r"^\[manager\] BOT\s+STATE\s+PID", timeout=5)
    await manager.wait_for_line(r"^\[manager\] Bot 3\s", timeout=5)
    rows = {int(m[1]): m for line in manager.lines if (m := STATUS_ROW.match(line))}
    assert sorted(rows) == [1, 2, 3], manager.output
    bot_pids = {n: int(rows[n][3]) for n in (1, 3)}
    for n, pid in bot_pids.items():
        assert rows[n][2] == "RUNNING" and rows[n][5] == "0" and float(rows[n][6].split()[0]) > 1, rows[n].string
        assert psutil.Process(pid).cmdline()[-3:] == [str(ROOT / "bot.py"), "--bot", str(n)]  # forked ones too
    assert rows[2][2] == ended.split(" -> ")[1].split()[0] and rows[2][3] == "-" and rows[2][6] == "-"
    assert "exit 78" in rows[2].string
    children = psutil.Process(manager.pid).children()  # the bots, and the fork server under --spawn fork
    assert set(bot_pids.values()) == {c.pid for c in children if c.name() != "fork_server.py"}
    assert [sandbox.discord.gateway_stats(app)["connected"] for app in apps] == [True, False, True]
    await asyncio.sleep(1.5)  # longer than the first backoff step: a wrongly restarted bot 2 would be back

    # SIGTERM: every bot stops on request (exit 0, its gateway closed), no process left, manager exits 0.
    manager.send_signal(signal.SIGTERM)
    assert await manager.wait(timeout=20) == 0, manager.output
    out = manager.output
    for n in (1, 3):
        assert re.search(rf"Bot {n}: STOPPING -> STOPPED \(exit 0 after", out), out
    assert ": SIGKILL to pid" not in out
    assert not any(alive(pid) for pid in bot_pids.values())
    await sandbox.discord.wait_for(lambda: not any(sandbox.discord.gateway_stats(app)["connected"] for app in apps),
                                   timeout=5)
    assert "all bots stopped, manager exiting with status 0" in manager.lines[-1]
    for app in (apps[0], apps[2]):  # one session each, from start to stop
        assert sandbox.discord.gateway_stats(app)["identifies"] == 1

    # Bot 2 was started exactly once and asked Discord exactly once.
    assert len(re.findall(r"Bot 2: STOPPED -> STARTING", out)) == 1 and "Bot 2: BACKOFF" not in out
    rejected = [r for r in sandbox.discord.requests if r.path == "/users/@me" and r.status == 401]
    assert len(rejected) == 1 and rejected[0].method == "GET" and rejected[0].app is None

    # Every line is the manager's or a bot's, each prefixed once; no secret anywhere, logs included.
    assert all(PREFIXED.match(line) for line in manager.lines), out
    assert not re.search(r"\[Bot \d+\]\s*\[Bot \d+\]", out)
    for n in (1, 2, 3):
        assert any(line.startswith(f"[Bot {n}] ") for line in manager.lines), f"no line from bot {n}"
    secrets = [apps[0].token, apps[2].token, bad_token, LAVALINK_PASSWORD]
    assert_no_secrets(out, secrets)
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert {"manager.log", "bot-1.log", "bot-3.log"} <= set(logs), logs
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert_no_secrets(path.read_text(errors="replace"), secrets)
    assert (tmp_path / "state" / "bot-1").is_dir()  # the bots kept their state here, not in the repo


@pytest.mark.timeout(90)
@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_bots_stop_cleanly_when_the_manager_is_killed(tmp_path, spawn):
    """A SIGKILLed manager cannot stop its children; they notice (PR_SET_PDEATHSIG) and stop themselves."""
    async with Sandbox() as sandbox:
        apps = sandbox.add_bots(2)
        await sandbox.create_world(apps)
        log_dir = tmp_path / "logs"
        manager = await Proc.start([sys.executable, str(MANAGER), "--env-file", "/dev/null", "--status-interval",
                                    "0", "--stagger", "0.1", "--spawn", spawn], env=manager_env(sandbox, apps, log_dir),
                                   name="manager")
        try:
            for app in apps:
                await sandbox.discord.wait_until_ready(app, timeout=30)
            children = psutil.Process(manager.pid).children()
            bots = [c.pid for c in children if c.name() != "fork_server.py"]
            assert len(bots) == 2
            servers = [c.pid for c in children if c.name() == "fork_server.py"]
            assert len(servers) == (1 if spawn == "fork" else 0)
            manager.process.kill()
            await manager.wait(timeout=10)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while any(alive(pid) for pid in bots) and loop.time() < deadline:
                await asyncio.sleep(0.2)
            assert not any(alive(pid) for pid in bots), "bots outlived their manager"
            while any(alive(pid) for pid in servers) and loop.time() < deadline:
                await asyncio.sleep(0.2)
            assert not any(alive(pid) for pid in servers), "the fork server outlived its manager"
            for number in (1, 2):
                log = (log_dir / f"bot-{number}.log").read_text()
                assert "SIGTERM received, shutting down" in log and "stopped" in log
            await sandbox.discord.wait_for(
                lambda: not any(sandbox.discord.gateway_stats(app)["connected"] for app in apps), timeout=10)
        finally:
            await manager.kill()
            for child in psutil.Process().children(recursive=True):
                if "bot.py" in " ".join(child.cmdline()):
                    child.kill()
