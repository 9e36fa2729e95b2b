"""The real supervisord with the shipped supervisord.conf, running real bot.py processes against the sandbox.

supervisord resolves %(here)s to the conf's directory, and tests must not write into the repository, so each
test builds a small stand-in of it in /tmp: supervisord.conf copied byte for byte, bot.py and .venv as
symlinks to the real ones (Python resolves the script's symlink, so the bots import the repository's code),
and logs/ exactly as a fresh clone has it (the files git tracks there; no mkdir). The bots' working directory is that stand-in, so no developer .env is read.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, Proc, clean_env, copy_tracked

pytestmark = pytest.mark.e2e

VENV_BIN = ROOT / ".venv" / "bin"


class Supervisor:
    """supervisord -n in a stand-in of the repository, driven through supervisorctl."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.conf = home / "supervisord.conf"
        self.proc: Proc | None = None
        self.seen_pids: set[int] = set()

    @property
    def log(self) -> str:
        path = self.home / "logs" / "supervisord.log"
        return path.read_text() if path.exists() else ""

    async def start(self, env: dict[str, str]) -> None:
        self.proc = await Proc.start([str(VENV_BIN / "supervisord"), "-n", "-c", str(self.conf)], env=env,
                                     cwd=self.home, name="supervisord")
        await self.wait_for(lambda s: s is not None, "supervisorctl answers", timeout=15)

    async def ctl(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "supervisorctl"), "-c", str(self.conf), *args, cwd=self.home,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=clean_env())
        out, _ = await asyncio.wait_for(process.communicate(), 20)
        return out.decode()

    async def status(self) -> dict[str, str] | None:
        """'bot:bot-1' -> state, or None while supervisord does not answer yet."""
        out = await self.ctl("status")
        rows = dict(re.findall(r"^(bot:bot-\d+)\s+([A-Z]+)", out, re.M))
        return rows or None

    async def wait_for(self, predicate, what: str, timeout: float = 30) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.status()
            if predicate(status):
                return status
            if loop.time() > deadline:
                raise AssertionError(f"not {what} within {timeout}s: {status}\n{self.log}")
            await asyncio.sleep(0.3)

    async def pid(self, name: str) -> int:
        pid = int((await self.ctl("pid", name)).strip())
        self.seen_pids.add(pid)
        return pid

    async def stop(self) -> None:
        """Teardown: shutdown through supervisorctl, and kill whatever is still alive after that."""
        if self.proc is None:
            return
        children = []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        if self.proc.process.returncode is None:
            await self.ctl("shutdown")
            try:
                await asyncio.wait_for(self.proc.process.wait(), 20)
            except asyncio.TimeoutError:
                pass
        await self.proc.kill()
        for pid in {c.pid for c in children} | self.seen_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    home = Path(tempfile.mkdtemp(prefix="sv-", dir="/tmp"))  # short: the unix socket path is limited to ~107 bytes
    shutil.copyfile(ROOT / "supervisord.conf", home / "supervisord.conf")
    (home / "bot.py").symlink_to(ROOT / "bot.py")
    (home / ".venv").symlink_to(ROOT / ".venv")
    copy_tracked("logs", home)  # as cloned: supervisord refuses to start when logs/ is missing
    sv = Supervisor(home)
    try:
        yield sv
    finally:
        await sv.stop()
        shutil.rmtree(home, ignore_errors=True)


def fleet_env(sandbox_env: dict[str, str], count: int, home: Path) -> dict[str, str]:
    return clean_env({**sandbox_env, "BOT_COUNT": str(count), "LOG_DIR": str(home / "logs")})


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(180)
async def test_fleet_under_supervisord_stop_one_kill_one_shutdown(sandbox, supervisor):
    apps = sandbox.add_bots(3)
    await sandbox.create_world(apps)
    await supervisor.start(fleet_env(sandbox.bot_env(apps), 3, supervisor.home))

    for app in apps:
        await sandbox.discord.wait_until_ready(app, timeout=60)
    await supervisor.wait_for(lambda s: s and set(s.values()) == {"RUNNING"} and len(s) == 3, "all RUNNING")
    others = (apps[0], apps[2])
    before = {app.user_id: sandbox.discord.gateway_stats(app) for app in others}

    # Stopping bot 2 is a SIGTERM to bot 2 only: it exits 0, the other sessions are untouched.
    assert "bot:bot-2: stopped" in await supervisor.ctl("stop", "bot:bot-2")
    assert (await supervisor.status())["bot:bot-2"] == "STOPPED"
    assert "stopped: bot-2 (exit status 0)" in supervisor.log
    await sandbox.discord.wait_for(lambda: not sandbox.discord.gateway_stats(apps[1])["connected"], timeout=5)
    for app in others:
        stats = sandbox.discord.gateway_stats(app)
        assert stats["connected"]
        for key in ("identifies", "resumes", "connections"):
            assert stats[key] == before[app.user_id][key], (key, app.name)

    # SIGKILL of bot 1: supervisord restarts it at once (an unexpected exit after startsecs).
    old_pid = await supervisor.pid("bot:bot-1")
    identifies = sandbox.discord.gateway_stats(apps[0])["identifies"]
    os.kill(old_pid, signal.SIGKILL)
    await sandbox.discord.wait_for(lambda: sandbox.discord.gateway_stats(apps[0])["identifies"] == identifies + 1,
                                   timeout=60)
    await sandbox.discord.wait_until_ready(apps[0], timeout=30)
    assert re.search(r"exited: bot-1 \(terminated by SIGKILL; not expected\)", supervisor.log)
    new_pid = await supervisor.pid("bot:bot-1")
    assert new_pid != old_pid and not alive(old_pid)
    assert sandbox.discord.gateway_stats(apps[2])["identifies"] == before[apps[2].user_id]["identifies"]

    # shutdown: every bot gets SIGTERM, then supervisord exits; no process is left behind.
    bot_pids = [new_pid, await supervisor.pid("bot:bot-3")]
    assert "Shut down" in await supervisor.ctl("shutdown")
    assert await supervisor.proc.wait(timeout=30) == 0
    for pid in (supervisor.proc.pid, *bot_pids):
        assert not alive(pid), pid
    for app in apps:
        assert not sandbox.discord.gateway_stats(app)["connected"]
    assert re.search(r"stopped: bot-3 \(exit status 0\)", supervisor.log)
    for name in ("supervisor-bot-1.log", "supervisor-bot-3.log", "bot-1.log"):
        text = (supervisor.home / "logs" / name).read_text()
        assert "ready as" in text and not any(app.token in text for app in apps)


@pytest.mark.timeout(150)
async def test_a_configuration_error_is_one_attempt_then_exited_until_started(sandbox, supervisor):
    """README, supervisord: a bad token is one login attempt, then EXITED "exit status 78; expected", until
    `supervisorctl start`; with tokens missing in the numbering (bot-2 here), that bot ends EXITED as well."""
    app = sandbox.discord.add_bot("Registered")
    first, _, _ = app.token.split(".")
    forged = f"{first}.AAAAAA.this-token-was-revoked-xxxxxxxxxxxxx"  # well formed, unknown to "Discord"
    env = {**sandbox.endpoint_env(), "BOT_TOKEN_1": forged}  # BOT_COUNT=2: BOT_TOKEN_2 is not set
    await supervisor.start(fleet_env(env, 2, supervisor.home))

    def ended(s: dict[str, str] | None) -> bool:  # FATAL is what every early exit 78 used to end in
        return bool(s) and all(state in ("EXITED", "FATAL") for state in s.values())

    def attempts() -> tuple[int, int, int]:
        rejected = [r for r in sandbox.discord.requests if r.path == "/users/@me" and r.status == 401]
        return len(rejected), supervisor.log.count("spawned: 'bot-1'"), supervisor.log.count("spawned: 'bot-2'")

    assert await supervisor.wait_for(ended, "ended", 90) == {"bot:bot-1": "EXITED", "bot:bot-2": "EXITED"}
    assert attempts() == (1, 1, 1)
    for name in ("bot-1", "bot-2"):
        assert f"success: {name} entered RUNNING state" in supervisor.log
        assert f"exited: {name} (exit status 78; expected)" in supervisor.log
    assert "not expected" not in supervisor.log and "gave up" not in supervisor.log

    # supervisord decides on a restart in its state machine, run once per pass of its loop; every supervisorctl
    # request is such a pass. Many of them later the bots are still EXITED and nothing was spawned again.
    for _ in range(10):
        assert (await supervisor.status()) == {"bot:bot-1": "EXITED", "bot:bot-2": "EXITED"}
    assert attempts() == (1, 1, 1)

    output = (supervisor.home / "logs" / "supervisor-bot-1.log").read_text()
    assert output.count("BOT_TOKEN_1 was rejected by Discord") == 1
    assert output.count("configuration error under supervisord: exiting 78 in ") == 1
    assert "BOT_TOKEN_2 is not set" in (supervisor.home / "logs" / "supervisor-bot-2.log").read_text()

    # "until supervisorctl start": one more attempt, and it reports a start, not a spawn error.
    assert "bot:bot-1: started" in await supervisor.ctl("start", "bot:bot-1")
    await supervisor.wait_for(lambda s: s and s["bot:bot-1"] in ("EXITED", "FATAL", "BACKOFF"), "ended again", 60)
    assert (await supervisor.status())["bot:bot-1"] == "EXITED"
    assert attempts() == (2, 2, 1)

    output = (supervisor.home / "logs" / "supervisor-bot-1.log").read_text()
    for secret in (forged, forged.split(".")[2]):
        assert secret not in output and secret not in supervisor.log
