"""The fleet demo behind `make run` when no real token is configured.

Starts the sandbox (emulated Discord + Lavalink) in this process, runs the real fleet against it
(`process_manager.py` with three `bot.py` children) and plays a short scene a newcomer can watch:
members join two voice channels, two bots play at once, a queue, a skip, a sound effect, a vote to
skip, the busy-bot hint, bot 2 killed with SIGKILL and brought back by the manager, playing again from
its snapshot, while bot 1 keeps playing; a clean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from sandbox.control import Sandbox, World

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("[manager]", "ready as", "ERROR", "Traceback")  # bot lines shown without --verbose


class Narrator:
    def __init__(self, verbose: bool, pace: float) -> None:
        self.verbose = verbose
        self.pace = pace
        self.started = time.monotonic()

    async def beat(self) -> None:
        """A pause between steps, so a person can follow the scene."""
        await asyncio.sleep(self.pace)

    def say(self, text: str) -> None:
        print(f"[demo {time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def quote(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"             | {line}", flush=True)

    def fleet_line(self, line: str) -> None:
        if self.verbose or any(mark in line for mark in SHOWN):
            print(f"    {line}", flush=True)


class Demo:
    def __init__(self, sandbox: Sandbox, world: World, apps: list, narrator: Narrator) -> None:
        self.sb = sandbox
        self.world = world
        self.apps = apps
        self.say = narrator.say
        self.narrator = narrator

    async def command(self, bot: int, member: str, command: str, **options) -> str:
        result = await self.sb.discord.invoke(self.apps[bot - 1], guild_id=self.world.guild_id,
                                              channel_id=self.world.text_id, user_id=self.world.member_ids[member],
                                              command=command, options=options or None, timeout=15)
        shown = " ".join(f"{k}:{v}" for k, v in options.items())
        visibility = "only they see it" if result.ephemeral else "everyone sees it"
        self.say(f"{member} uses /{command} {shown} on {self.apps[bot - 1].name} ({visibility}):")
        text = result.content or ""
        for embed in result.embeds or []:
            text += "\n" + "\n".join(filter(None, (embed.get("title"), embed.get("description"),
                                                   (embed.get("footer") or {}).get("text"))))
        self.narrator.quote(text.strip())
        await self.narrator.beat()
        return text

    async def join(self, member: str, channel: str) -> None:
        await self.sb.discord.move_member(self.world.guild_id, self.world.member_ids[member],
                                          self.world.voice_ids[channel])
        self.say(f"{member} joins the voice channel {channel}")
        await self.narrator.beat()

    def playing(self, bot: int) -> dict | None:
        return self.sb.lavalink.player(self.apps[bot - 1].user_id, self.world.guild_id)


async def _pump(stream: asyncio.StreamReader, narrator: Narrator) -> None:
    while raw := await stream.readline():
        narrator.fleet_line(raw.decode("utf-8", "replace").rstrip())


def bot_pid(manager_pid: int, number: int) -> int | None:
    try:
        children = psutil.Process(manager_pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if "--bot" in cmdline and cmdline[cmdline.index("--bot") + 1:][:1] == [str(number)]:
            return child.pid
    return None


async def wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def register_commands(sb: Sandbox, apps: list, narrator: Narrator, log_dir: str) -> None:
    """Register the bots' slash commands through the real register_commands.py, as an operator would:
    the emulated Discord, like the real one, shows a member only registered commands. Its result lines
    are shown; its whole output goes to register_commands.log in the log directory."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "register_commands.py"), "--env-file", os.devnull, "--global",
        "--bots", ",".join(str(sb.bot_number(app)) for app in apps), cwd=ROOT,
        env={**os.environ, **sb.bot_env(apps), "PYTHONUNBUFFERED": "1"}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    raw, _ = await process.communicate()
    output = raw.decode("utf-8", "replace")
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    (Path(log_dir) / "register_commands.log").write_text(output)
    if process.returncode != 0:
        narrator.quote(output.strip())
        raise RuntimeError(f"register_commands.py exited with {process.returncode}")
    narrator.say("registered the slash commands with register_commands.py --global:")
    narrator.quote("\n".join(line for line in output.splitlines() if re.match(r"(Bot \d+\b|\d+ commands )", line)))


async def scene(demo: Demo, manager_pid: int, state_dir: Path) -> None:
    sb, say = demo.sb, demo.say
    for bot in range(1, len(demo.apps) + 1):
        await demo.command(bot, "alice", "ping")
    await demo.join("alice", "Lounge")
    await demo.join("bob", "Lounge")
    await demo.join("carol", "Studio")
    await demo.command(1, "alice", "play", query="golden harbor")
    await demo.command(1, "bob", "play", query="https://music.example/track/midnight-signals?length=200000")
    await demo.command(1, "bob", "play", query="https://music.example/track/paper-lanterns?length=180000")
    await demo.command(1, "alice", "queue")
    await demo.command(1, "alice", "skip")
    await demo.command(1, "alice", "filter", preset="nightcore")
    await demo.command(1, "alice", "skip")  # bob asked for this one: alice's skip is a vote (2 listeners: 2 needed)
    await demo.command(1, "carol", "play", query="velvet highway")
    await demo.command(2, "carol", "play", query="velvet highway")
    say(f"two bots now play at once: {demo.apps[0].name} in Lounge, {demo.apps[1].name} in Studio")
    await demo.narrator.beat()

    bot1 = demo.apps[0]
    before = sb.discord.gateway_stats(bot1)
    position = (demo.playing(1) or {}).get("position", 0)
    # Snapshots are written within half a second of a change; let bot 2 write its first one.
    await wait_for_file(state_dir / "bot-2" / f"guild-{demo.world.guild_id}.json", timeout=5)
    pid = bot_pid(manager_pid, 2)
    if pid is None:
        raise RuntimeError("could not find bot 2's process")
    say(f"killing {demo.apps[1].name} (pid {pid}) with SIGKILL, as a crash would")
    os.kill(pid, signal.SIGKILL)
    identifies = sb.discord.gateway_stats(demo.apps[1])["identifies"]
    await sb.discord.wait_for(lambda: sb.discord.gateway_stats(demo.apps[1])["identifies"] > identifies, timeout=60)
    await sb.discord.wait_until_ready(demo.apps[1], timeout=60)
    say(f"{demo.apps[1].name} is back: process_manager restarted it and it reconnected to the gateway")
    after = sb.discord.gateway_stats(bot1)
    now = (demo.playing(1) or {}).get("position", 0)
    untouched = (after["identifies"], after["resumes"]) == (before["identifies"], before["resumes"])
    say(f"meanwhile {bot1.name} kept playing: position {position / 1000:.1f}s -> {now / 1000:.1f}s, "
        f"{'no reconnect' if untouched else 'it reconnected (unexpected)'}")
    await demo.narrator.beat()
    def resumed_note() -> str | None:
        return next((m["content"] for m in sb.discord.messages(demo.world.text_id)
                     if (m.get("content") or "").startswith("Back after a restart")), None)

    await sb.discord.wait_for(lambda: resumed_note() is not None, timeout=30)
    say(f"{demo.apps[1].name} restored its player from its own snapshot and posted in #general:")
    demo.narrator.quote(resumed_note() or "")
    await demo.narrator.beat()
    await demo.command(2, "carol", "nowplaying")
    await demo.command(1, "alice", "nowplaying")


async def run_demo(verbose: bool, hold: float, pace: float) -> int:
    narrator = Narrator(verbose, pace)
    async with Sandbox() as sb:
        apps = sb.add_bots(3)
        world = await sb.create_world(apps)
        narrator.say(f"sandbox up: emulated Discord at {sb.discord.api_base}, emulated Lavalink at {sb.lavalink.uri}")
        narrator.say(f"guild '{world.name}': #general, voice channels {', '.join(world.voice_ids)}; "
                     f"members {', '.join(world.member_ids)}; bots {', '.join(a.name for a in apps)}")
        log_dir = os.environ.get("LOG_DIR") or str(ROOT / "logs" / "demo")
        state_dir = tempfile.mkdtemp(prefix="fleet-demo-state-")  # snapshots of this run only
        env = {**os.environ, **sb.bot_env(apps), "LOG_DIR": log_dir, "STATE_DIR": state_dir,
               "PYTHONUNBUFFERED": "1"}
        manager = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "process_manager.py"), "--env-file", os.devnull, "--status-interval", "0",
            "--stagger", "0.2", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        assert manager.stdout is not None
        pump = asyncio.create_task(_pump(manager.stdout, narrator))
        narrator.say(f"started process_manager.py (pid {manager.pid}): one bot.py per BOT_TOKEN_n")
        code = None
        try:
            await register_commands(sb, apps, narrator, log_dir)
            for app in apps:
                await sb.discord.wait_until_ready(app, timeout=60)
            await sb.lavalink.wait_for(
                lambda: {s["user_id"] for s in sb.lavalink.sessions.values() if s["client_ready"]}
                >= {a.user_id for a in apps}, timeout=30)
            narrator.say("all three bots are READY, each with its own gateway and Lavalink session")
            await narrator.beat()
            await scene(Demo(sb, world, apps, narrator), manager.pid, Path(state_dir))
            if hold:
                narrator.say(f"holding for {hold:.0f} s (Ctrl-C to end sooner)")
                await asyncio.sleep(hold)
            sb.discord.assert_all_emulated()
        finally:
            narrator.say("stopping the fleet: SIGTERM to process_manager.py")
            if manager.returncode is None:
                manager.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(manager.wait(), 30)
            except asyncio.TimeoutError:
                os.killpg(manager.pid, signal.SIGKILL)
                code = await manager.wait()
            await asyncio.wait_for(pump, 5)
            shutil.rmtree(state_dir, ignore_errors=True)
    narrator.say(f"process_manager.py exited with {code} (0 = clean stop); the bots' logs are in {log_dir}")
    return 0 if code == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Exit code 0 when the scene played and the fleet stopped cleanly.")
    parser.add_argument("--hold", type=float, default=0, help="seconds to keep running after the scene (default 0)")
    parser.add_argument("--pace", type=float, default=1.5, help="seconds between steps of the scene (default 1.5)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every line of the fleet's output")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run_demo(args.verbose, args.hold, max(0.0, args.pace)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
