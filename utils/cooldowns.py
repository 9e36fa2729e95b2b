"""Per-member cooldowns of the commands that change the player, on discord.py's app-command cooldowns.

`@play_cooldown()` on /play, /search and /lyrics (COOLDOWN_PLAY, default 5 per 10 s) and `@control_cooldown()`
on each command that changes the player (COOLDOWN_CONTROLS, default 10 per 10 s); one bucket per command. Buckets are per
(guild, member): someone busy in one server is not slowed down in another, and other members are not
slowed down at all. An exhausted bucket raises `app_commands.CommandOnCooldown`, which the tree's error
handler (utils/replies.py) answers ephemerally with the seconds to wait, rounded up.

discord.py measures the time from `Interaction.created_at` (Discord's timestamp in the interaction id).
The panel's buttons have no cooldown: they edit the panel in place and post nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import discord
from discord import app_commands

T = TypeVar("T")


def member_key(interaction: discord.Interaction) -> Hashable:
    return interaction.guild_id, interaction.user.id


def _factory(setting: str) -> Callable[[discord.Interaction], app_commands.Cooldown | None]:
    def factory(interaction: discord.Interaction) -> app_commands.Cooldown | None:
        rate: Any = getattr(getattr(interaction.client, "settings", None), setting, None)
        return app_commands.Cooldown(*rate) if rate else None  # None: this bot runs without the cooldown

    return factory


def play_cooldown() -> Callable[[T], T]:
    """COOLDOWN_PLAY uses per member and guild (None: off)."""
    return app_commands.checks.dynamic_cooldown(_factory("play_cooldown"), key=member_key)


def control_cooldown() -> Callable[[T], T]:
    """COOLDOWN_CONTROLS uses of the decorated command per member and guild (None: off)."""
    return app_commands.checks.dynamic_cooldown(_factory("control_cooldown"), key=member_key)
