"""N bot clients in ONE process (the alternative to a process per token), for the scale benchmark.

    python -m benchmarks.one_process 1 2 3 ...   # bot numbers: BOT_TOKEN_n from the environment

Each client has the settings of bot.py's MusicBot (intents, member cache, no chunking, no message cache)
and the same imports (discord, wavelink, the bot's modules), but no cogs and no Lavalink connection:
wavelink's Pool is process-wide, so one process cannot host N independent wavelink clients as it is.
The figures are therefore a lower bound for a one-process fleet.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import discord  # noqa: E402
import wavelink  # noqa: E402,F401  (a real bot imports it: part of the memory compared)
from discord.ext import commands  # noqa: E402

import bot  # noqa: E402,F401  (the bot's modules, as a bot process has them)
from utils.config import Settings  # noqa: E402
from utils.endpoints import apply_endpoint_overrides  # noqa: E402


def make_client(settings: Settings) -> commands.Bot:
    intents = bot.build_intents()
    return commands.Bot(command_prefix=commands.when_mentioned, help_command=None, intents=intents,
                        application_id=settings.client_id,
                        member_cache_flags=discord.MemberCacheFlags.from_intents(intents),
                        chunk_guilds_at_startup=False, max_messages=None,
                        allowed_mentions=discord.AllowedMentions.none())


async def main(numbers: list[int]) -> int:
    all_settings = [Settings.from_env(n) for n in numbers]
    apply_endpoint_overrides(all_settings[0].api_base, all_settings[0].gateway_url)
    clients = [make_client(s) for s in all_settings]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(c.start(s.token)) for c, s in zip(clients, all_settings)]
    print(f"started {len(clients)} clients", flush=True)
    await stop.wait()
    for client in clients:
        await client.close()
    for task in tasks:
        task.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main([int(a) for a in sys.argv[1:]])))
