"""The demo behind `make run` when no real token is configured.

Starts the sandbox (emulated Discord + Lavalink) in this process, runs real `bot.py` processes
against it, and plays a short scripted scene a newcomer can watch in the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from sandbox.control import Sandbox, World

ROOT = Path(__file__).resolve().parent.parent


class Narrator:
    """Prints the scene: the demo's own lines, and the bots' lines as they come."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[demo {time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def bot_line(self, line: str) -> None:
        if self.verbose:
            print(f"    {line}", flush=True)


async def _pump(stream: asyncio.StreamReader, narrator: Narrator, lines: list[str]) -> None:
    while raw := await stream.readline():
        line = raw.decode("utf-8", "replace").rstrip()
        lines.append(line)
        narrator.bot_line(line)


async def start_bot(number: int, env: dict[str, str], narrator: Narrator, lines: list[str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bot.py"), "--bot", str(number), "--env-file", os.devnull,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    assert proc.stdout is not None
    asyncio.create_task(_pump(proc.stdout, narrator, lines))
    return proc


async def scene(sb: Sandbox, world: World, apps: list, narrator: Narrator) -> None:
    for app in apps:
        result = await sb.discord.invoke(app, guild_id=world.guild_id, channel_id=world.text_id,
                                         user_id=world.member_ids["alice"], command="ping", timeout=10)
        narrator.say(f"alice runs /ping on {app.name}; it answers ({result.latency * 1000:.0f} ms, "
                     f"{'ephemeral' if result.ephemeral else 'public'}):")
        for line in result.content.splitlines():
            print(f"        | {line}", flush=True)


async def run_demo(bots: int, verbose: bool, hold: float) -> int:
    narrator = Narrator(verbose)
    async with Sandbox() as sb:
        apps = sb.add_bots(bots)
        world = await sb.create_world(apps)
        narrator.say(f"sandbox up: Discord at {sb.discord.api_base}, Lavalink at {sb.lavalink.uri}")
        narrator.say(f"guild '{world.name}' with #general, voice channels {', '.join(world.voice_ids)}; "
                     f"members {', '.join(world.member_ids)}")
        env = {**os.environ, **sb.bot_env(apps), "LOG_DIR": str(ROOT / "logs" / "demo"), "PYTHONUNBUFFERED": "1"}
        lines: list[str] = []
        procs = []
        for n in range(1, bots + 1):
            procs.append(await start_bot(n, env, narrator, lines))
            narrator.say(f"started bot.py --bot {n} (pid {procs[-1].pid})")
        try:
            for app in apps:
                await sb.discord.wait_until_ready(app, timeout=60)
                narrator.say(f"{app.name} is READY on the gateway")
            await sb.lavalink.wait_for(
                lambda: {s["user_id"] for s in sb.lavalink.sessions.values() if s["client_ready"]}
                >= {a.user_id for a in apps}, timeout=30)
            narrator.say("every bot holds its own Lavalink session")
            await scene(sb, world, apps, narrator)
            if hold:
                narrator.say(f"holding for {hold:.0f} s (Ctrl-C to end sooner)")
                await asyncio.sleep(hold)
        finally:
            narrator.say("stopping the bots with SIGTERM")
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            codes = []
            for proc in procs:
                try:
                    codes.append(await asyncio.wait_for(proc.wait(), 10))
                except asyncio.TimeoutError:
                    proc.kill()
                    codes.append(await proc.wait())
            narrator.say(f"bots exited with {codes} (0 = clean stop)")
    if any(codes):
        print("demo: a bot did not stop cleanly; its log is in logs/demo/", file=sys.stderr)
        return 1
    narrator.say("done. Logs of this run: logs/demo/bot-N.log")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fleet against the sandbox and play a short scene.")
    parser.add_argument("--bots", type=int, default=2, help="number of bots to start (default 2)")
    parser.add_argument("--hold", type=float, default=0, help="seconds to keep running after the scene (default 0)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print every bot log line")
    args = parser.parse_args(argv)
    if not 1 <= args.bots <= 16:
        parser.error("--bots must be between 1 and 16")
    try:
        return asyncio.run(run_demo(args.bots, args.verbose, args.hold))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
