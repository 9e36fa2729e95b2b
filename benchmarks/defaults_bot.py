"""The same bot as bot.py, but with discord.py's default client settings: the "defaults" side of the memory
benchmark. bot.py is not modified: this script only changes the keyword arguments MusicBot hands to
commands.Bot (intents, member cache, chunking, message cache), then runs bot.main() unchanged.

    python -m benchmarks.defaults_bot --variant defaults --bot 3 --env-file /dev/null
    python -m benchmarks.defaults_bot --variant members  --bot 4 --env-file /dev/null

defaults: discord.Intents.default() (no privileged intent), MemberCacheFlags from those intents,
          chunk_guilds_at_startup (discord.py: = intents.members), max_messages=1000.
members:  the same plus the privileged members intent, which is what most music-bot templates switch on
          (Intents.all() or .members = True): every member of every guild cached, chunked at start-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import discord  # noqa: E402
from discord.ext import commands  # noqa: E402

import bot  # noqa: E402

_OURS = ("intents", "member_cache_flags", "chunk_guilds_at_startup", "max_messages")


def use_discord_defaults(members: bool) -> None:
    original = commands.Bot.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        for key in _OURS:
            kwargs.pop(key, None)
        intents = discord.Intents.default()
        intents.members = members
        original(self, *args, intents=intents, **kwargs)

    commands.Bot.__init__ = init  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--variant", choices=("defaults", "members"), required=True)
    known, rest = parser.parse_known_args()
    use_discord_defaults(members=known.variant == "members")
    return bot.main(rest)


if __name__ == "__main__":
    sys.exit(main())
