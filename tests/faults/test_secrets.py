"""Secrets never leak: run the fleet with known tokens through a busy life, then grep everything it wrote.

process_manager.py with three real bots at LOG_LEVEL=DEBUG (the chattiest), a few commands, a refused
command, a gateway reconnect, a Lavalink restart, a SIGKILLed bot that the manager restarts and a graceful
stop. Then every log file, every state file and the captured stdout/stderr of the manager (which carries
every bot's stream) are searched for each of the three segments of every token and for the Lavalink password.
"""

from __future__ import annotations

import os
import signal

import pytest

from sandbox.control import LAVALINK_PASSWORD, Sandbox
from tests.e2e.fleet import Fleet
from tests.faults.helpers import (
    bot_pid, playing, start_manager, stop_manager, track_url, wait_for_new_line, wait_lavalink_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def secret_needles(tokens: list[str]) -> dict[str, str]:
    needles = {"LAVALINK_PASSWORD": LAVALINK_PASSWORD}
    for n, token in enumerate(tokens, start=1):
        needles[f"BOT_TOKEN_{n} (whole)"] = token
        for i, segment in enumerate(token.split(".")):
            needles[f"BOT_TOKEN_{n} segment {i + 1}"] = segment
    return needles


def leaks(text: str, needles: dict[str, str]) -> list[str]:
    return [name for name, value in needles.items() if value and value in text]


async def test_no_token_or_password_in_any_log_or_stream(tmp_path):
    async with Sandbox(player_update_interval=0.5) as sandbox:
        apps = sandbox.add_bots(3)
        needles = secret_needles([app.token for app in apps])
        assert all(len(v) >= 6 for v in needles.values())
        log_dir, state_dir = tmp_path / "logs", tmp_path / "state"
        env = {**sandbox.bot_env(apps), "LOG_LEVEL": "DEBUG", "STATE_DIR": str(state_dir)}
        manager = await start_manager(env, log_dir, "--stagger", "0.1", "--status-interval", "1")
        try:
            for app in apps:
                await sandbox.discord.wait_until_ready(app, timeout=30)
                await wait_lavalink_ready(sandbox, app)
            scene = await Fleet(sandbox, apps, [], log_dir).scene()
            await playing(scene, bot=1, query=track_url("secret-song"), queued=("secret-next",))
            await scene.cmd(1, "alice", "queue")
            await scene.cmd(2, "alice", "play", query="https://music.example/broken/cable")  # a refusal
            await scene.cmd(3, "bob", "pause")  # not in voice: refused
            await sandbox.discord.send_reconnect(apps[1])
            await sandbox.discord.send_invalid_session(apps[2], resumable=False)
            await sandbox.lavalink.restart(downtime=0.5, wait=True)
            mark = len(manager.lines)
            os.kill(bot_pid(manager, 1), signal.SIGKILL)
            await wait_for_new_line(manager, r"Bot 1: BACKOFF -> STARTING", start=mark, timeout=10)
            await wait_for_new_line(manager, r"\[Bot 1\].*ready as", start=mark, timeout=20)
            await scene.cmd(1, "alice", "nowplaying")
            # Status tables (every 1 s) go through the same grep: wait until one has listed every bot with its pid.
            mark = len(manager.lines)
            await wait_for_new_line(manager, r"\[manager\] BOT +STATE +PID +UPTIME", start=mark, timeout=10)
            for n in (1, 2, 3):
                await wait_for_new_line(manager, rf"\[manager\] Bot {n} +RUNNING +\d+ ", start=mark, timeout=15)
        finally:
            await stop_manager(manager)

    assert "ready as" in manager.output and "Bot 1" in manager.output  # the stream really was captured
    found = {"manager stdout+stderr": leaks(manager.output, needles)}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("bot-1") for p in files) and any(p.name == "manager.log" for p in files), files
    assert "RESTARTS" in (log_dir / "manager.log").read_text()  # the status tables were logged too
    for path in files:
        found[str(path.relative_to(tmp_path))] = leaks(path.read_text("utf-8", "replace"), needles)
    found = {where: what for where, what in found.items() if what}
    assert not found, f"secrets leaked: {found}"


def test_needles_cover_each_segment():
    token = "MTIz.AbCdEf.0123456789abcdefghijklmnopqrstuvwxyz01"
    needles = secret_needles([token])
    assert set(needles.values()) >= {token, "MTIz", "AbCdEf", "0123456789abcdefghijklmnopqrstuvwxyz01"}
    assert leaks(f"x {token[:20]} y", needles) == ["BOT_TOKEN_1 segment 1", "BOT_TOKEN_1 segment 2"]
