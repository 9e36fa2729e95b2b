"""A running fleet against the sandbox, and a per-test guild ("scene") to drive it through the control API.

The fleet (sandbox + real bot.py processes) is started once per test module; each test gets a guild of
its own, so tests do not share players or queues even though they share the bot processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.control import Sandbox, World
from tests.helpers import Proc, register_commands, start_bot

_guild_numbers = itertools.count(1)

#: Lavalink's playerUpdateInterval in production (lavalink/application.yml): tests of stall detection and of
#: restored positions run with it, so the bot sees positions as rarely as it will in production.
PRODUCTION_PLAYER_UPDATE_INTERVAL = 5.0


@dataclass
class Fleet:
    sandbox: Sandbox
    apps: list[Any]
    bots: list[Proc]
    log_dir: Path
    _registration: asyncio.Task | None = field(default=None, repr=False)

    async def register(self) -> None:
        """Register the fleet's commands globally through the real register_commands.py, once.

        The sandbox invokes only registered commands and checks options against what was registered;
        start_fleet does this while the bots start, Scene.cmd for fleets assembled by hand.
        """
        if not self.apps:
            return  # no bot, nothing to register (register_commands.py rightly refuses an empty fleet)
        if self._registration is None:
            self._registration = asyncio.create_task(register_commands(self.sandbox.bot_env(self.apps)))
        await asyncio.shield(self._registration)

    @property
    def discord(self):
        return self.sandbox.discord

    @property
    def lavalink(self):
        return self.sandbox.lavalink

    async def scene(self, *, voice_channels=("Lounge", "Studio"), members=("alice", "bob", "carol"),
                    wait_ready: bool = True) -> Scene:
        """A new guild with every bot of the fleet in it (wait_ready=False before the bots are started)."""
        world = await self.sandbox.create_world(self.apps, name=f"Guild {next(_guild_numbers)}",
                                                voice_channels=voice_channels, members=members)
        for app in self.apps if wait_ready else ():
            await self.discord.wait_until_ready(app, timeout=15)
        return Scene(self, world)

    async def stop(self) -> None:
        for bot in self.bots:
            await bot.kill()


@contextlib.asynccontextmanager
async def running_fleet(tmp_path_factory, count: int, *, sandbox_options: dict[str, Any] | None = None,
                        **env: str) -> AsyncIterator[Fleet]:
    """A sandbox with `count` real bots for a whole test module, stopped afterwards."""
    async with Sandbox(**{"player_update_interval": 0.5, **(sandbox_options or {})}) as sandbox:
        fleet = await start_fleet(sandbox, count, tmp_path_factory.mktemp("fleet") / "logs", **env)
        try:
            yield fleet
        finally:
            await fleet.stop()
        # A route the Lavalink emulator does not serve fails the module that hit it (issue 10).
        assert not sandbox.lavalink.unimplemented, f"Lavalink routes not emulated: {sandbox.lavalink.unimplemented}"
        sandbox.discord.assert_all_emulated()  # a Discord route the sandbox answered 501 fails the module


async def start_fleet(sandbox: Sandbox, count: int, log_dir: Path, **env: str) -> Fleet:
    apps = sandbox.add_bots(count)
    full_env = {**sandbox.bot_env(apps), **env}
    fleet = Fleet(sandbox, apps, [], log_dir)
    registration = asyncio.create_task(fleet.register())  # while the bots start
    try:
        for n in range(1, count + 1):
            fleet.bots.append(await start_bot(n, full_env, log_dir=log_dir))
        await registration
        for app, bot in zip(apps, fleet.bots):
            await sandbox.discord.wait_until_ready(app, timeout=30)
            await bot.wait_for_line(r"ready as", timeout=15)
            await sandbox.lavalink.wait_for(
                lambda app=app: any(s["user_id"] == app.user_id and s["client_ready"]
                                    for s in sandbox.lavalink.sessions.values()), timeout=20)
    except BaseException:
        registration.cancel()
        await fleet.stop()
        raise
    return fleet


@dataclass
class Scene:
    fleet: Fleet
    world: World
    results: list[Any] = field(default_factory=list)

    @property
    def guild_id(self) -> int:
        return self.world.guild_id

    def voice(self, name: str) -> int:
        return self.world.voice_ids[name]

    def member(self, name: str) -> int:
        return self.world.member_ids[name]

    def app(self, bot: int) -> Any:
        return self.fleet.apps[bot - 1]

    async def join(self, member: str, channel: str | None) -> None:
        await self.fleet.discord.move_member(self.guild_id, self.member(member),
                                             None if channel is None else self.voice(channel))

    async def cmd(self, bot: int, member: str, command: str, timeout: float = 15.0, **options: Any):
        await self.fleet.register()
        result = await self.fleet.discord.invoke(self.app(bot), guild_id=self.guild_id, channel_id=self.world.text_id,
                                                 user_id=self.member(member), command=command,
                                                 options=options or None, timeout=timeout)
        self.results.append(result)
        return result

    async def press(self, bot: int, member: str, message_id: int, custom_id: str, timeout: float = 15.0):
        return await self.fleet.discord.press_button(self.app(bot), guild_id=self.guild_id,
                                                     channel_id=self.world.text_id, user_id=self.member(member),
                                                     message_id=message_id, custom_id=custom_id, timeout=timeout)

    async def post_as_bot(self, bot: int, content: str, custom_ids: list[str]) -> int:
        """Post a message with buttons as the bot would have (e.g. an older version's panel); returns its id."""
        import aiohttp

        components = [{"type": 1, "components": [{"type": 2, "style": 2, "label": cid, "custom_id": cid}
                                                 for cid in custom_ids]}]
        url = f"{self.fleet.discord.api_base}/channels/{self.world.text_id}/messages"
        headers = {"Authorization": f"Bot {self.app(bot).token}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"content": content, "components": components}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                return int((await resp.json())["id"])

    def player(self, bot: int) -> dict[str, Any] | None:
        """What the emulated Lavalink holds for this bot in this guild."""
        return self.fleet.lavalink.player(self.app(bot).user_id, self.guild_id)

    async def wait_player(self, bot: int, predicate, timeout: float = 10.0) -> dict[str, Any]:
        await self.fleet.lavalink.wait_for(lambda: (p := self.player(bot)) is not None and predicate(p),
                                           timeout=timeout)
        return self.player(bot)

    async def wait_track(self, bot: int, identifier_part: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.wait_player(
            bot, lambda p: p["identifier"] is not None and identifier_part in p["identifier"], timeout)

    def bot_voice_channel(self, bot: int) -> int | None:
        state = self.fleet.discord.voice_state(self.guild_id, self.app(bot).user_id)
        return int(state["channel_id"]) if state and state.get("channel_id") else None

    def messages(self) -> list[dict[str, Any]]:
        return self.fleet.discord.messages(self.world.text_id)

    def panels(self) -> list[dict[str, Any]]:
        return [m for m in self.messages()
                if any(e.get("title") == "Now playing" for e in m.get("embeds") or [])]

    async def wait_panel(self, title_part: str, timeout: float = 10.0) -> dict[str, Any]:
        def find():
            for message in reversed(self.panels()):
                if any(title_part in (e.get("description") or "") for e in message["embeds"]):
                    return message
            return None

        await self.fleet.discord.wait_for(lambda: find() is not None, timeout=timeout)
        return find()

    async def wait_message(self, text: str, timeout: float = 10.0) -> dict[str, Any]:
        def find():
            return next((m for m in self.messages() if text in (m.get("content") or "")), None)

        await self.fleet.discord.wait_for(lambda: find() is not None, timeout=timeout)
        return find()
