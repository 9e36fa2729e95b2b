"""The sandbox as one object: emulated Discord + emulated Lavalink, and how to point bots at them.

    async with Sandbox() as sb:
        apps = sb.add_bots(2)                      # "Music 1", "Music 2"
        world = await sb.create_world(apps)        # a guild with text/voice channels and members
        env = sb.bot_env(apps)                     # BOT_TOKEN_n + endpoint variables for bot.py
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.discord_emulator import DiscordEmulator
from sandbox.lavalink import LavalinkEmulator

LAVALINK_PASSWORD = "sandbox-lavalink-password"


@dataclass
class World:
    """A ready-made guild: ids of what the demo and the tests use most."""

    name: str
    guild_id: int
    text_id: int
    voice_ids: dict[str, int]
    member_ids: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    def __init__(self, *, host: str = "127.0.0.1", discord_port: int = 0, lavalink_port: int = 0,
                 heartbeat_interval: int = 41250, interaction_deadline: float | None = 3.0,
                 lavalink_speed: float = 1.0, player_update_interval: float = 1.0) -> None:
        self.discord = DiscordEmulator(host=host, port=discord_port, heartbeat_interval=heartbeat_interval,
                                       interaction_deadline=interaction_deadline)
        self.lavalink = LavalinkEmulator(host=host, port=lavalink_port, password=LAVALINK_PASSWORD,
                                         speed=lavalink_speed, player_update_interval=player_update_interval)
        self.apps: list[Any] = []

    async def start(self) -> None:
        await self.discord.start()
        try:
            await self.lavalink.start()
        except BaseException:
            await self.discord.stop()
            raise

    async def stop(self) -> None:
        try:
            await self.lavalink.stop()
        finally:
            await self.discord.stop()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        await self.stop()
        if exc_type is None:  # never hide the test's own failure behind this one
            self.discord.assert_all_emulated()

    def add_bots(self, count: int, *, prefix: str = "Music") -> list[Any]:
        """Register `count` more bot applications, named "<prefix> <n>" with n continuing the numbering."""
        new = [self.discord.add_bot(f"{prefix} {len(self.apps) + i + 1}") for i in range(count)]
        self.apps.extend(new)
        return new

    def bot_number(self, app: Any) -> int:
        return self.apps.index(app) + 1

    def endpoint_env(self) -> dict[str, str]:
        """Variables that point bot.py / process_manager.py / register_commands.py at this sandbox."""
        return {
            "DISCORD_API_BASE": self.discord.api_base,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "LAVALINK_URI": self.lavalink.uri,
            "LAVALINK_PASSWORD": LAVALINK_PASSWORD,
        }

    def bot_env(self, apps: Sequence[Any] | None = None) -> dict[str, str]:
        """Endpoint variables plus BOT_TOKEN_n for each app (n = its number in this sandbox)."""
        env = self.endpoint_env()
        for app in self.apps if apps is None else apps:
            env[f"BOT_TOKEN_{self.bot_number(app)}"] = app.token
        return env

    async def create_world(self, apps: Sequence[Any] = (), *, name: str = "Sandbox Guild",
                           voice_channels: Sequence[str] = ("Lounge", "Studio"),
                           members: Sequence[str] = ("alice", "bob", "carol")) -> World:
        """A guild with #general, the given voice channels and human members, with `apps` in it."""
        d = self.discord
        guild = d.create_guild(name, owner_name="owner")
        text = d.create_text_channel(guild.id, "general")
        voices = {v: d.create_voice_channel(guild.id, v).id for v in voice_channels}
        people = {m: d.add_member(guild.id, m).id for m in members}
        for app in apps:
            await d.add_bot_to_guild(app, guild.id)
        return World(name=name, guild_id=guild.id, text_id=text.id, voice_ids=voices, member_ids=people)
