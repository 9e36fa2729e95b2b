"""The real register_commands.py against the sandbox: register, unchanged, dry run, clear, failures, 429s."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import ROOT, Proc, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

COMMANDS = re.compile(r"^/applications/\d+(/guilds/\d+)?/commands$")


async def register(env: dict[str, str], *args: str) -> tuple[int, str]:
    cmd = [sys.executable, str(ROOT / "register_commands.py"), "--env-file", os.devnull, *args]
    proc = await Proc.start(cmd, env=clean_env(env), name="register_commands.py")
    code = await proc.wait(timeout=60)
    return code, proc.output


def command_requests(sandbox, method: str) -> list:
    return [r for r in sandbox.discord.requests if r.method == method and COMMANDS.match(r.path)]


def names(commands: list[dict]) -> set[str]:
    return {c["name"] for c in commands}


def assert_no_token(output: str, apps) -> None:
    for app in apps:
        assert app.token not in output and app.token.split(".")[2] not in output


async def test_global_registration_then_unchanged_then_clear(sandbox):
    apps = sandbox.add_bots(2)
    env = sandbox.bot_env(apps)

    code, out = await register(env)
    assert code == 0, out
    assert re.search(r"^Bot 1 \(Music 1\): updated: \+ping \+play ", out, re.M), out
    assert re.search(r"^Bot 2 \(Music 2\): updated: \+ping ", out, re.M), out
    registered = [names(sandbox.discord.commands(app)) for app in apps]
    assert registered[0] == registered[1] and {"ping", "play", "queue", "volume"} <= registered[0]
    assert len(command_requests(sandbox, "PUT")) == 2
    assert_no_token(out, apps)

    code, out = await register(env)
    assert code == 0, out
    count = len(registered[0])
    assert f"Bot 1 (Music 1): unchanged ({count} commands)" in out
    assert f"Bot 2 (Music 2): unchanged ({count} commands)" in out
    assert len(command_requests(sandbox, "PUT")) == 2  # nothing uploaded the second time

    code, out = await register(env, "--clear", "--bots", "2")
    assert code == 0, out
    assert f"Bot 2 (Music 2): cleared ({count} commands removed)" in out and "Bot 1" not in out
    assert sandbox.discord.commands(apps[1]) == [] and names(sandbox.discord.commands(apps[0])) == registered[0]
    assert command_requests(sandbox, "PUT")[-1].json == []


async def test_guild_registration_leaves_global_commands_alone(sandbox):
    apps = sandbox.add_bots(2)
    world = await sandbox.create_world(apps)
    env = {**sandbox.bot_env(apps), "TEST_GUILD_ID": str(world.guild_id)}

    code, out = await register(env)
    assert code == 0, out
    assert f"in guild {world.guild_id} for 2 bot(s)" in out
    for app in apps:
        assert "play" in names(sandbox.discord.commands(app, world.guild_id))
        assert sandbox.discord.commands(app) == []
    puts = command_requests(sandbox, "PUT")
    assert [r.path for r in puts] == [f"/applications/{app.application_id}/guilds/{world.guild_id}/commands"
                                      for app in apps]

    code, out = await register(env, "--guild", str(world.guild_id))  # same scope via the flag: nothing to do
    assert code == 0 and out.count("unchanged") == 2, out
    assert len(command_requests(sandbox, "PUT")) == 2


async def test_dry_run_prints_the_difference_and_uploads_nothing(sandbox):
    (app,) = sandbox.add_bots(1)
    old = [{"name": "ping", "description": "An outdated description", "type": 1},
           {"name": "old", "description": "A command the cogs no longer define", "type": 1}]
    url = f"{sandbox.discord.api_base}/applications/{app.application_id}/commands"
    async with aiohttp.ClientSession() as session:
        async with session.put(url, json=old, headers={"Authorization": f"Bot {app.token}"}) as response:
            assert response.status == 200
    puts_before = len(command_requests(sandbox, "PUT"))

    code, out = await register(sandbox.bot_env([app]), "--dry-run")
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.startswith("Bot 1"))
    assert line.startswith("Bot 1 (Music 1): would update: +play ")
    assert " ~ping " in line and line.endswith(" -old")
    assert "    ~ping: description" in out
    assert len(command_requests(sandbox, "PUT")) == puts_before
    assert names(sandbox.discord.commands(app)) == {"ping", "old"}


def tree(root: Path) -> dict[Path, tuple[bytes, int] | None]:
    """Every path under root, files with their content and mtime: what a run changed shows as a difference."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None for p in root.rglob("*")}


async def test_registering_starts_none_of_the_bots_machinery(sandbox, tmp_path: Path):
    """register_commands.py reads the command definitions only: no snapshot sampler, no restore of bot 1's
    snapshots, no Lavalink connection, no shutdown flush; bot 1's state directory stays as it was."""
    (app,) = sandbox.add_bots(1)
    bot_state = tmp_path / "state" / "bot-1"
    bot_state.mkdir(parents=True)
    (bot_state / "guild-1.json").write_bytes(b"not a snapshot")  # a restore renames an unreadable one *.bad
    (bot_state / "lavalink-sessions.json").write_text('{"node-1": "session-of-the-running-bot"}')
    before = tree(tmp_path)
    connections: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(repr(await reader.read(200)))
        writer.close()

    lavalink = await asyncio.start_server(record, "127.0.0.1", 0)
    port = lavalink.sockets[0].getsockname()[1]
    try:
        env = {**sandbox.bot_env([app]), "STATE_DIR": str(tmp_path / "state"),
               "LAVALINK_URI": f"http://127.0.0.1:{port}"}
        code, out = await register(env, "--dry-run")
    finally:
        lavalink.close()
        await lavalink.wait_closed()
    assert code == 0, out
    assert out.splitlines()[-1].startswith("Bot 1 (Music 1): would update: +ping ")
    assert connections == []
    assert tree(tmp_path) == before
    assert not re.search(r"snapshot|restor|sampl|lavalink|wavelink|traceback|error", out, re.I), out
    assert len(out.splitlines()) == 2  # the summary and bot 1's line, nothing logged


async def test_rejected_token_fails_that_bot_only(sandbox):
    apps = sandbox.add_bots(2)
    first, _, _ = apps[1].token.split(".")
    forged = f"{first}.AAAAAA.this-token-was-revoked-xxxxxxxxxxxxx"
    env = {**sandbox.bot_env(apps), "BOT_TOKEN_2": forged}

    code, out = await register(env)
    assert code == 1, out
    assert "Bot 2: FAILED: token rejected (401 Unauthorized): check BOT_TOKEN_2" in out
    assert "Bot 1 (Music 1): updated: +ping" in out
    assert "play" in names(sandbox.discord.commands(apps[0])) and sandbox.discord.commands(apps[1]) == []
    for secret in (forged, forged.split(".")[2], apps[0].token):
        assert secret not in out


async def test_a_429_on_the_upload_is_waited_out(sandbox):
    (app,) = sandbox.add_bots(1)
    sandbox.discord.inject_429("PUT", r"/applications/\d+/commands$", count=1, retry_after=1.0)

    code, out = await register(sandbox.bot_env([app]))
    assert code == 0, out
    assert "Bot 1 (Music 1): updated: +ping" in out
    assert [r.status for r in command_requests(sandbox, "PUT")] == [429, 200]
    assert "play" in names(sandbox.discord.commands(app))


async def test_missing_tokens_exit_78_naming_the_variable(sandbox):
    code, out = await register(sandbox.endpoint_env())
    assert code == 78 and "no bot token configured" in out, out

    (app,) = sandbox.add_bots(1)
    code, out = await register(sandbox.bot_env([app]), "--bots", "1,3")
    assert code == 78 and "BOT_TOKEN_3 is not set" in out, out
    assert sandbox.discord.requests == []
