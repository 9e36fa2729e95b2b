"""Fleet awareness without shared state: which sibling bots are free in a guild.

A sibling is free here when it is a member of the guild and not in any of its voice channels.
Voice states come from our own gateway cache; guild membership of siblings (not cached: we do
not use the members intent) is asked once over REST and remembered for a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import discord

log = logging.getLogger(__name__)
MEMBERSHIP_TTL = 600.0


class SiblingDirectory:
    def __init__(self, sibling_ids: Iterable[int]) -> None:
        self.sibling_ids = tuple(sibling_ids)
        self._membership: dict[tuple[int, int], tuple[bool, float]] = {}

    async def _is_member(self, guild: discord.Guild, user_id: int) -> bool:
        if guild.get_member(user_id) is not None:
            return True
        key = (guild.id, user_id)
        cached = self._membership.get(key)
        now = time.monotonic()
        if cached and now - cached[1] < MEMBERSHIP_TTL:
            return cached[0]
        try:
            await guild.fetch_member(user_id)
            found = True
        except discord.NotFound:
            found = False
        except discord.HTTPException as exc:
            log.info("guild %s: could not check sibling %s (%s)", guild.id, user_id, exc.status)
            return False
        self._membership[key] = (found, now)
        return found

    async def free_in(self, guild: discord.Guild) -> list[int]:
        """User ids of sibling bots that are in `guild` and not in one of its voice channels."""
        candidates = []
        for uid in self.sibling_ids:
            member = guild.get_member(uid)
            if member is not None and member.voice is not None and member.voice.channel is not None:
                continue
            candidates.append(uid)
        # One REST lookup per uncached sibling, all at once rather than one after another.
        found = await asyncio.gather(*(self._is_member(guild, uid) for uid in candidates))
        return [uid for uid, member in zip(candidates, found) if member]


def busy_message(channel: discord.abc.GuildChannel, free: list[int]) -> str:
    where = f"I'm already playing in {channel.mention}."
    if not free:
        return f"{where} No other bot of the fleet is free in this server right now; try again later."
    mentions = [f"<@{uid}>" for uid in free[:3]]
    names = mentions[0] if len(mentions) == 1 else ", ".join(mentions[:-1]) + f" or {mentions[-1]}"
    return f"{where} Try {names}: {'it is' if len(mentions) == 1 else 'they are'} free here."
