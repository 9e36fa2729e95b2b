"""`python -m sandbox`: run the emulated Discord and Lavalink standalone, for bots started by hand."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from sandbox.control import Sandbox


def write_env_file(path: Path, env: dict[str, str]) -> None:
    lines = ["# Written by `python -m sandbox`: points bots at the running sandbox. Not a real token."]
    lines += [f"{key}={value}" for key, value in env.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


async def serve(args: argparse.Namespace) -> None:
    async with Sandbox(discord_port=args.discord_port, lavalink_port=args.lavalink_port,
                       lavalink_speed=args.speed) as sb:
        apps = sb.add_bots(args.bots)
        world = await sb.create_world(apps)
        env = sb.bot_env(apps)
        write_env_file(args.env_file, env)
        print(f"Sandbox running (Ctrl-C to stop).\n"
              f"  Discord REST     {sb.discord.api_base}\n"
              f"  Discord gateway  {sb.discord.gateway_url}\n"
              f"  Lavalink v4      {sb.lavalink.uri}\n"
              f"  Guild '{world.name}' (id {world.guild_id}): #general, voice {', '.join(world.voice_ids)}, "
              f"members {', '.join(world.member_ids)}\n"
              f"Wrote BOT_TOKEN_1..{args.bots} and the endpoint variables to {args.env_file}. Register the slash\n"
              f"commands (the sandbox, like Discord, offers only registered ones), then start bots:\n"
              f"  python register_commands.py --env-file {args.env_file}\n"
              f"  python bot.py --bot 1 --env-file {args.env_file}\n"
              f"  python process_manager.py --env-file {args.env_file}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("Sandbox stopping.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--discord-port", type=int, default=0, help="port of the emulated Discord (default: any free)")
    parser.add_argument("--lavalink-port", type=int, default=0, help="port of the emulated Lavalink (default: any free)")
    parser.add_argument("--bots", type=int, default=3, help="bot applications to create (default 3)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback clock speed factor (default 1.0)")
    parser.add_argument("--env-file", type=Path, default=Path("sandbox.env"), help="where to write the bots' env")
    parser.add_argument("--log-level", default="INFO", help="sandbox log level (default INFO)")
    args = parser.parse_args(argv)
    if not 1 <= args.bots <= 64:
        parser.error("--bots must be between 1 and 64")
    logging.basicConfig(level=args.log_level.upper(), format="[sandbox] %(asctime)s %(levelname)-7s %(name)s: %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
