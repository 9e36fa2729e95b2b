"""Shared pieces of the fault suite: track URLs, "is it still playing" checks, and process_manager runs."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from sandbox.discord_ratelimit import FaultRule
from tests.helpers import ROOT, Proc, clean_env


def track_url(slug: str, length: int = 600_000) -> str:
    return f"https://music.example/track/{slug}?length={length}"


async def playing(scene: Any, bot: int = 1, member: str = "alice", channel: str = "Lounge",
                  query: str | None = None, queued: tuple[str, ...] = ()) -> dict[str, Any]:
    """`member` joins `channel`, /play on `bot`, then queues `queued` slugs; returns the Lavalink player."""
    await scene.join(member, channel)
    result = await scene.cmd(bot, member, "play", query=query or track_url(f"fault-{bot}-{scene.guild_id}"))
    assert "Now playing" in result.content, result.content
    for slug in queued:
        answer = await scene.cmd(bot, member, "play", query=track_url(slug))
        assert answer.content.startswith("Queued at position"), answer.content
    return await scene.wait_player(bot, lambda p: p["track"] is not None and p["position"] > 0, timeout=10)


async def assert_advancing(scene: Any, bot: int, identifier_part: str, *, over: float = 1.0) -> tuple[int, int]:
    """The bot's player plays `identifier_part`, unpaused, and its position moves forward over `over` s."""
    first = scene.player(bot)
    assert first is not None and first["identifier"] and identifier_part in first["identifier"], first
    await asyncio.sleep(over)
    second = scene.player(bot)
    assert second is not None and second["identifier"] == first["identifier"], (first, second)
    assert not second["paused"] and second["position"] > first["position"], (first, second)
    return first["position"], second["position"]


def queue_titles(result: Any) -> str:
    return result.embeds[0]["description"] if result.embeds else ""


async def start_manager(env: dict[str, str], log_dir: Path, *args: str) -> Proc:
    """The real process_manager.py (bots are real bot.py children) with `env` (a sandbox's bot_env)."""
    # STATE_DIR: the bots' snapshots (issue 7) must not go to the repository's state/, where runs with the
    # sandbox's deterministic guild ids would restore each other's players.
    full = clean_env({"STATE_DIR": str(log_dir.parent / "state"), **env, "LOG_DIR": str(log_dir),
                      "LOG_LEVEL": env.get("LOG_LEVEL", "INFO")})
    command = [sys.executable, str(ROOT / "process_manager.py"), "--env-file", os.devnull,
               "--status-interval", "0", *args]
    return await Proc.start(command, env=full, name="process_manager")


def manager_children(manager: Proc) -> list[Any]:
    """The manager's bot children as psutil.Process (each runs in a session of its own, not in its group)."""
    try:
        return psutil.Process(manager.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def bot_pid(manager: Proc, number: int) -> int | None:
    for child in manager_children(manager):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--bot" in cmdline and cmdline[cmdline.index("--bot") + 1] == str(number):
            return child.pid
    return None


async def wait_lavalink_ready(sandbox: Any, app, *, after: set[str] = frozenset(), timeout: float = 20) -> str:
    """The id of a Lavalink session of `app` (not in `after`) that finished wavelink's start-up."""
    def ready():
        return next((sid for sid, s in sandbox.lavalink.sessions.items()
                     if s["user_id"] == app.user_id and s["client_ready"] and sid not in after), None)
    return await sandbox.lavalink.wait_for(ready, timeout=timeout)


async def stop_manager(manager: Proc, timeout: float = 20.0) -> int | None:
    """SIGTERM (graceful fleet stop); then SIGKILL the manager and any bot it left behind."""
    import signal

    children = manager_children(manager)
    manager.send_signal(signal.SIGTERM)
    code = None
    try:
        code = await manager.wait(timeout)
    except AssertionError:
        pass
    finally:
        await manager.kill()
        for child in children:
            try:
                if child.is_running():  # same pid AND same start time: never someone else's process
                    child.kill()
            except psutil.NoSuchProcess:
                pass
    return code


# ---- REST 429 storms ------------------------------------------------------------------------------------------

# Routes an answering bot uses: the interaction callback, edits of the original answer, follow-ups, and the
# channel message routes of the now-playing panel (post, edit, delete). Patterns are searched in the path
# after /api/v10, as the emulator's fault rules do.
STORM_ROUTES = (
    ("POST", r"^/interactions/\d+/[^/]+/callback"),
    ("PATCH", r"^/webhooks/\d+/[^/]+/messages/"),
    ("DELETE", r"^/webhooks/\d+/[^/]+/messages/"),
    ("POST", r"^/webhooks/\d+/[^/]+$"),
    ("POST", r"^/channels/\d+/messages$"),
    ("PATCH", r"^/channels/\d+/messages/\d+$"),
    ("DELETE", r"^/channels/\d+/messages/\d+$"),
)


class _StormRule(FaultRule):
    """A 429 rule for one route that lets every request path through after `streak` consecutive 429s.

    Real Discord's 429 promises that the request succeeds once `retry_after` has passed (for that bucket);
    a storm that kept refusing a well-behaved client forever would test nothing but discord.py's 5-try limit.
    """

    def __init__(self, method: str, pattern: str, streak: int, retry_after: float) -> None:
        super().__init__(method.upper(), re.compile(pattern), 10**9, 429, retry_after, False)
        self.streak, self.active = streak, True
        self.refused: dict[str, int] = {}  # path -> consecutive 429s so far

    def matches(self, method: str, path: str) -> bool:
        if not self.active or not super().matches(method, path):
            return False
        if self.refused.get(path, 0) >= self.streak:
            self.refused[path] = 0  # this attempt goes through; the next request to the path is refused again
            return False
        self.refused[path] = self.refused.get(path, 0) + 1
        return True


class RateLimitStorm:
    """For `seconds`, requests to the storm routes get 429s (retry_after `retry_after`): each request path
    `streak` times in a row, then one attempt goes through, then it is refused again, until the storm ends.

    With streak=2 every answer of a bot that honours retry_after is delayed by about 2 x retry_after; a bot
    that gave up on a 429, or retried without waiting, would lose answers.
    """

    def __init__(self, discord: Any, seconds: float, *, streak: int = 2, retry_after: float = 0.3,
                 routes: tuple[tuple[str, str], ...] = STORM_ROUTES) -> None:
        self.discord, self.seconds, self.streak = discord, seconds, streak
        self.retry_after, self.routes = retry_after, routes
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._rules: list[_StormRule] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RateLimitStorm:
        self._rules = [_StormRule(m, p, self.streak, self.retry_after) for m, p in self.routes]
        self.discord.faults.rules.extend(self._rules)
        self.started_at = time.monotonic()
        self._task = asyncio.create_task(self._end_later())
        return self

    async def _end_later(self) -> None:
        try:
            await asyncio.sleep(self.seconds)
        finally:
            for rule in self._rules:
                rule.active = False
            self.ended_at = time.monotonic()

    async def wait(self) -> None:
        assert self._task is not None
        await asyncio.shield(self._task)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        if not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        faults = self.discord.faults
        faults.rules[:] = [r for r in faults.rules if all(r is not mine for mine in self._rules)]

    def served(self) -> int:
        """How many 429s the emulator answered during the storm."""
        start, end = self.started_at or 0.0, self.ended_at or time.monotonic()
        return sum(1 for r in self.discord.requests if r.status == 429 and start <= r.at <= end + 0.01)


async def wait_for_new_line(proc: Proc, pattern: str, *, start: int, timeout: float = 20.0) -> str:
    """The first line of `proc`'s output from index `start` on matching the regex `pattern`."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        found = next((line for line in proc.lines[start:] if regex.search(line)), None)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} did not print /{pattern}/ within {timeout}s:\n"
                                 + "\n".join(proc.lines[start:])[-4000:])
        await asyncio.sleep(0.05)
