"""Exit 78 under supervisord: bot.py outlasts startsecs first (utils/config_exit.py); elsewhere it exits at once.

The real supervisord is in tests/e2e/test_supervisord.py; here the waiting itself, with a missing token
(a configuration error that needs no Discord), and the process manager's path.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from process_manager import SubprocessSpawner
from tests.helpers import ROOT, Proc, clean_env
from utils.config import EX_CONFIG
from utils.config_exit import DEFAULT_STARTSECS, MARGIN, config_exit_delay

MISSING = 97  # BOT_TOKEN_97: set nowhere
WAITING = r"exiting 78 in [\d.]+ s, once past its startsecs"


def test_no_wait_unless_supervisord_started_the_bot():
    assert config_exit_delay({}, 0.1) == 0
    assert config_exit_delay({"SUPERVISOR_STARTSECS": "60"}, 0.1) == 0  # process_manager.py, a shell, systemd


@pytest.mark.parametrize(("startsecs", "uptime", "delay"), [
    ("3", 1.0, 3 + MARGIN - 1.0),
    ("10", 0.0, 10 + MARGIN),
    ("3", 3 + MARGIN, 0.0),  # rejected late (a slow login): supervisord already counts it RUNNING
    ("3", 30.0, 0.0),
    ("0", 0.2, MARGIN - 0.2),
    (None, 0.0, DEFAULT_STARTSECS + MARGIN),
    ("soon", 0.0, DEFAULT_STARTSECS + MARGIN),
    ("-1", 0.0, DEFAULT_STARTSECS + MARGIN),
    ("nan", 0.0, DEFAULT_STARTSECS + MARGIN),
])
def test_wait_outlasts_startsecs(startsecs, uptime, delay):
    env = {"SUPERVISOR_ENABLED": "1", **({"SUPERVISOR_STARTSECS": startsecs} if startsecs is not None else {})}
    assert config_exit_delay(env, uptime) == pytest.approx(delay)


async def start_missing_token_bot(**env: str) -> Proc:
    args = [sys.executable, str(ROOT / "bot.py"), "--bot", str(MISSING), "--env-file", os.devnull]
    return await Proc.start(args, env=clean_env(env), name="bot.py")


@pytest.mark.timeout(60)
async def test_under_supervisord_a_configuration_error_exits_78_after_startsecs():
    started = time.monotonic()
    bot = await start_missing_token_bot(SUPERVISOR_ENABLED="1", SUPERVISOR_STARTSECS="2")
    assert await bot.wait(timeout=30) == EX_CONFIG
    assert time.monotonic() - started >= 2  # what supervisord measures: spawn to exit
    assert bot.lines[0] == f"[Bot {MISSING}] configuration error: BOT_TOKEN_{MISSING} is not set " \
                           f"(put the bot's token in .env or the environment, or its path in BOT_TOKEN_FILE_{MISSING})"
    assert len(bot.lines) == 2 and bot.lines[1].startswith(f"[Bot {MISSING}] configuration error under "
                                                          "supervisord: exiting 78 in ")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_request_ends_the_wait_at_once(sig):
    bot = await start_missing_token_bot(SUPERVISOR_ENABLED="1", SUPERVISOR_STARTSECS="600")
    await bot.wait_for_line(WAITING)
    bot.send_signal(sig)
    assert await bot.wait(timeout=15) == EX_CONFIG  # far below the 600 s wait and supervisord's stopwaitsecs
    assert bot.lines[-1] == f"[Bot {MISSING}] {sig.name} received, exiting now"


@pytest.mark.timeout(60)
async def test_without_supervisord_a_configuration_error_exits_at_once():
    bot = await start_missing_token_bot(SUPERVISOR_STARTSECS="600")
    assert await bot.wait(timeout=15) == EX_CONFIG
    assert bot.lines == [f"[Bot {MISSING}] configuration error: BOT_TOKEN_{MISSING} is not set "
                         f"(put the bot's token in .env or the environment, or its path in BOT_TOKEN_FILE_{MISSING})"]


@pytest.mark.timeout(60)
async def test_process_managers_bots_do_not_wait_even_when_it_runs_under_supervisord(monkeypatch):
    """process_manager.py handles 78 itself; a manager started by supervisord must not pass SUPERVISOR_ENABLED on."""

    class NoDotenv(SubprocessSpawner):
        def command(self, index: int) -> list[str]:
            return [*super().command(index), "--env-file", os.devnull]

    for name in [n for n in os.environ if n not in clean_env()]:
        monkeypatch.delenv(name)  # no developer token may reach the child
    monkeypatch.setenv("SUPERVISOR_ENABLED", "1")  # as supervisord sets it for the manager
    monkeypatch.setenv("SUPERVISOR_STARTSECS", "600")
    lines: list[str] = []
    child = NoDotenv()(MISSING, lines.append)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while (code := child.poll()) is None:
        assert loop.time() < deadline, f"still running: {lines}"
        await asyncio.sleep(0.05)
    assert code == EX_CONFIG
    assert lines == [f"[Bot {MISSING}] configuration error: BOT_TOKEN_{MISSING} is not set "
                     f"(put the bot's token in .env or the environment, or its path in BOT_TOKEN_FILE_{MISSING})"]
