from __future__ import annotations

import pytest

from sandbox.control import Sandbox
from tests.helpers import Proc, start_bot


@pytest.fixture
async def sandbox():
    async with Sandbox(lavalink_speed=1.0) as sb:
        yield sb
    # A route the Lavalink emulator does not serve fails the test that hit it (issue 10).
    assert not sb.lavalink.unimplemented, f"Lavalink routes not emulated: {sb.lavalink.unimplemented}"


@pytest.fixture
async def run_bot(tmp_path):
    """Start real bot.py processes; every one is killed at teardown if still running."""
    started: list[Proc] = []

    async def start(number, env, **kwargs):
        proc = await start_bot(number, env, log_dir=kwargs.pop("log_dir", tmp_path / "logs"), **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await proc.kill()
