"""The real bot.py against the sandbox: start-up, /ping, configuration errors, shutdown."""

from __future__ import annotations

import asyncio
import importlib.util
import signal

import pytest

from tests.helpers import register_commands

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

GUILDS_AND_VOICE_STATES = (1 << 0) | (1 << 7)


async def ping(sandbox, app, world, member="alice"):
    if not sandbox.discord.commands(app):
        await register_commands(sandbox.bot_env([app]))
    return await sandbox.discord.invoke(app, guild_id=world.guild_id, channel_id=world.text_id,
                                        user_id=world.member_ids[member], command="ping", timeout=10)


async def wait_lavalink_connected(sandbox, app, timeout=15.0):
    await sandbox.lavalink.wait_for(
        lambda: any(s["user_id"] == app.user_id and s["client_ready"] for s in sandbox.lavalink.sessions.values()),
        timeout=timeout,
    )


async def test_bot_reaches_ready_and_answers_ping(sandbox, run_bot, tmp_path):
    (app,) = sandbox.add_bots(1)
    world = await sandbox.create_world([app])
    bot = await run_bot(1, sandbox.bot_env([app]))

    await sandbox.discord.wait_until_ready(app, timeout=30)
    await bot.wait_for_line(r"ready as .* in 1 guild", timeout=15)
    await wait_lavalink_connected(sandbox, app)

    result = await ping(sandbox, app, world)
    assert result.callback_type == 4 and result.ephemeral
    assert result.content.startswith("Pong! Gateway latency:")
    assert "Audio server node-1: connected." in result.content
    assert "Bot 1," in result.content

    stats = sandbox.discord.gateway_stats(app)
    # zlib-stream although zstandard is importable, with which discord.py would ask for zstd-stream, whose
    # decoder keeps a 2 MB window per bot (utils/gateway_compression.py)
    assert importlib.util.find_spec("zstandard") is not None
    assert stats["compression"] == ["zlib-stream"]
    assert stats["identifies"] == 1
    assert stats["intents"] == GUILDS_AND_VOICE_STATES  # no privileged intents, nothing unneeded
    assert sandbox.discord.unimplemented == []

    log_file = tmp_path / "logs" / "bot-1.log"
    assert log_file.exists()
    assert all(line.startswith("[Bot 1] ") for line in log_file.read_text().splitlines())
    assert app.token not in bot.output and app.token not in log_file.read_text()


async def test_missing_token_exits_78_naming_the_variable(sandbox, run_bot):
    bot = await run_bot(5, sandbox.endpoint_env())
    assert await bot.wait() == 78
    assert "BOT_TOKEN_5 is not set" in bot.output
    assert len([line for line in bot.lines if line.strip()]) == 1


async def test_rejected_token_exits_78_without_printing_it(sandbox, run_bot, tmp_path):
    app = sandbox.discord.add_bot("Registered")
    await sandbox.create_world([app])
    # A well-formed token that this "Discord" does not know: it answers 401 like the real one.
    first, _, _ = app.token.split(".")
    forged = f"{first}.AAAAAA.this-token-was-revoked-xxxxxxxxxxxxx"
    env = {**sandbox.endpoint_env(), "BOT_TOKEN_2": forged}
    bot = await run_bot(2, env)
    assert await bot.wait(timeout=30) == 78
    assert "BOT_TOKEN_2 was rejected by Discord" in bot.output
    log_text = (tmp_path / "logs" / "bot-2.log").read_text()
    for secret in (forged, forged.split(".")[2]):
        assert secret not in bot.output and secret not in log_text


async def test_sigterm_leaves_voice_and_gateway_and_exits_0(sandbox, run_bot):
    (app,) = sandbox.add_bots(1)
    world = await sandbox.create_world([app])
    bot = await run_bot(1, sandbox.bot_env([app]))
    await sandbox.discord.wait_until_ready(app, timeout=30)
    await bot.wait_for_line(r"ready as", timeout=15)
    await wait_lavalink_connected(sandbox, app)
    # In voice, playing: SIGTERM must take the bot out of the channel, not just end the process.
    import os
    import sys

    from tests.helpers import ROOT, Proc, clean_env

    # /play as a member's client shows it: registered by register_commands.py (bots never sync commands).
    registration = await Proc.start([sys.executable, str(ROOT / "register_commands.py"), "--env-file", os.devnull,
                                     "--guild", str(world.guild_id)], env=clean_env(sandbox.bot_env([app])),
                                    name="register_commands.py")
    assert await registration.wait(timeout=60) == 0, registration.output
    await sandbox.discord.move_member(world.guild_id, world.member_ids["alice"], world.voice_ids["Lounge"])
    played = await sandbox.discord.invoke(app, guild_id=world.guild_id, channel_id=world.text_id,
                                          user_id=world.member_ids["alice"], command="play",
                                          options={"query": "https://music.example/track/deploy?length=600000"},
                                          timeout=15)
    assert played.content.startswith("Now playing"), played.content
    state = sandbox.discord.voice_state(world.guild_id, app.user_id)
    assert state is not None and int(state["channel_id"]) == world.voice_ids["Lounge"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    bot.send_signal(signal.SIGTERM)
    assert await bot.wait(timeout=10) == 0
    assert loop.time() - started < 5
    assert "SIGTERM received, shutting down" in bot.output
    # The Lavalink session is gone (socket closed by the bot), and the gateway connection is closed.
    await sandbox.lavalink.wait_for(
        lambda: not any(s["user_id"] == app.user_id and s["connected"] for s in sandbox.lavalink.sessions.values()),
        timeout=5,
    )
    await sandbox.discord.wait_for(lambda: not sandbox.discord.gateway_stats(app)["connected"], timeout=5)
    # Members see the bot leave the channel (its voice state cleared before the gateway closed).
    left = sandbox.discord.voice_state(world.guild_id, app.user_id)
    assert left is None or left.get("channel_id") is None, left
    leave_ops = [op for op in sandbox.discord.voice_ops[app.user_id] if str(op["guild_id"]) == str(world.guild_id)]
    assert leave_ops[-1]["channel_id"] is None, leave_ops


async def test_two_bots_with_different_tokens_share_one_guild(sandbox, run_bot):
    apps = sandbox.add_bots(2)
    world = await sandbox.create_world(apps)
    env = sandbox.bot_env(apps)
    bots = [await run_bot(n, env) for n in (1, 2)]
    for app, bot in zip(apps, bots):
        await sandbox.discord.wait_until_ready(app, timeout=30)
        await bot.wait_for_line(r"ready as", timeout=15)
        await wait_lavalink_connected(sandbox, app)

    answers = await asyncio.gather(*(ping(sandbox, app, world) for app in apps))
    assert "Bot 1," in answers[0].content and "Bot 2," in answers[1].content
    assert apps[0].user_id != apps[1].user_id
    for app, bot in zip(apps, bots):
        assert f"id {app.user_id}" in (await bot.wait_for_line(r"ready as"))
        assert sandbox.discord.gateway_stats(app)["identifies"] == 1
    sessions = {s["user_id"] for s in sandbox.lavalink.sessions.values() if s["client_ready"]}
    assert {apps[0].user_id, apps[1].user_id} <= sessions


async def test_bot_reconnects_after_a_lavalink_node_restart(sandbox, run_bot):
    (app,) = sandbox.add_bots(1)
    world = await sandbox.create_world([app])
    bot = await run_bot(1, sandbox.bot_env([app]))
    await sandbox.discord.wait_until_ready(app, timeout=30)
    await wait_lavalink_connected(sandbox, app)

    # A real node restart closes the websocket with a close frame; wavelink alone would never reconnect.
    await sandbox.lavalink.restart(downtime=1.0)
    await bot.wait_for_line(r"Lavalink node node-1 closed the connection", timeout=5)
    result = await ping(sandbox, app, world)
    assert "Audio server node-1: connected." not in result.content
    assert "Music commands will not work" in result.content

    await wait_lavalink_connected(sandbox, app, timeout=40)
    result = await ping(sandbox, app, world)
    assert "Audio server node-1: connected." in result.content
    # ... and it really works again: a command that searches and plays through the node.
    await sandbox.discord.move_member(world.guild_id, world.member_ids["alice"], world.voice_ids["Lounge"])
    played = await sandbox.discord.invoke(app, guild_id=world.guild_id, channel_id=world.text_id,
                                          user_id=world.member_ids["alice"], command="play",
                                          options={"query": "https://music.example/track/after-restart?length=600000"},
                                          timeout=15)
    assert played.content.startswith("Now playing: **[After Restart]"), played.content
    await sandbox.lavalink.wait_for(lambda: (p := sandbox.lavalink.player(app.user_id, world.guild_id)) is not None
                                    and p["position"] > 0, timeout=15)


async def test_bot_reaches_ready_while_lavalink_is_unreachable(sandbox, run_bot):
    (app,) = sandbox.add_bots(1)
    world = await sandbox.create_world([app])
    env = {**sandbox.bot_env([app]), "LAVALINK_URI": f"http://127.0.0.1:{free_port()}"}
    bot = await run_bot(1, env)
    await sandbox.discord.wait_until_ready(app, timeout=30)
    await bot.wait_for_line(r"ready as", timeout=15)
    result = await ping(sandbox, app, world)
    assert "Audio server node-1: connecting." in result.content
    assert "Music commands will not work until an audio server is reachable." in result.content


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
