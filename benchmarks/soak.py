"""Part of benchmark 10 (benchmarks/fork.py): per-bot memory over a soak of play and interactions.

Two fleets side by side against one sandbox for the same minutes and the same load: `count` bots under
`process_manager.py --spawn exec` and `count` under `--spawn fork`. Each bot plays in a guild of its own
(a member in its voice channel) and gets 100 interactions per minute (1,000 in the default 10 minutes), open
loop, evenly spread: /play (links of 1-4 minute songs, and searches), /queue, /nowplaying, /volume, /pause,
/resume, /skip and presses of its now-playing panel's pause button - songs end, panels are replaced, queues
grow and shrink. USS, PSS and RSS of every bot (and of the fork server and the managers) are sampled at READY,
once everyone plays, then every minute. The exec'd fleet is the control: what an exec'd bot grows by is its
own new data; what a forked bot grows by beyond that is pages of the fork server it un-shared (copy on write).
At the end, where one bot of each fleet keeps its private memory, by mapping (/proc/PID/smaps).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import Processes, Workdir, bot_env, bot_pids, memory_of, summarize_ms, wait_ready_times
from sandbox.control import Sandbox
from tests.e2e.fleet import PRODUCTION_PLAYER_UPDATE_INTERVAL
from tests.helpers import register_commands
from utils.replies import GENERIC_FAILURE

INTERACTIONS_PER_MINUTE = 100  # per bot: 1,000 in 10 minutes
#: One bot's cycle of 20 interactions (20% /play, 30% reading, 40% controls, 10% panel button).
MIX = ("play", "queue", "nowplaying", "volume", "pause", "play", "resume", "skip", "queue", "button",
       "play", "nowplaying", "volume", "pause", "search", "resume", "queue", "skip", "nowplaying", "button")
MODES = ("exec", "fork")


def fork_server_pid(manager) -> int | None:
    for child in psutil.Process(manager.pid).children():
        if child.name() == "fork_server.py":
            return child.pid
    return None


def private_by_mapping(pid: int) -> dict[str, float]:
    """Private (USS) MiB of `pid` by mapping: [heap], anonymous, libpython, other files, the rest."""
    sizes: dict[str, int] = defaultdict(int)
    name = ""
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):  # a mapping's header line: range perms offset dev inode [path]
                parts = line.split(maxsplit=5)
                path = parts[5].strip() if len(parts) > 5 else ""
                if path == "[heap]":
                    name = "[heap]"
                elif not path:
                    name = "anonymous (pymalloc arenas, mmap)"
                elif "libpython" in path or path.endswith(("/python3", "/python3.11", "/python")):
                    name = "python binary / libpython"
                elif path.startswith("["):
                    name = "[stack] and other"
                else:
                    name = "other files (.so of extensions, libc)"
            elif head in ("Private_Clean:", "Private_Dirty:"):
                sizes[name] += int(line.split()[1])
    return {k: round(v / 1024, 1) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])}


def queue_length(state_dir: Path, number: int, guild_id: int) -> int | None:
    """Songs queued in the bot's snapshot of `guild_id` (None: no snapshot)."""
    try:
        return len(json.loads((state_dir / f"bot-{number}" / f"guild-{guild_id}.json").read_text())["queue"])
    except (OSError, ValueError, KeyError):
        return None


def panel_of(sandbox: Sandbox, app, channel_id: int) -> int | None:
    """The bot's newest now-playing panel in `channel_id` (newest first: no copy of the whole history)."""
    state = sandbox.discord.state
    for message_id in reversed(state.channel_messages.get(channel_id, [])):
        message = state.messages[message_id]
        if (not message["flags"] & 64 and int(message["author"]["id"]) == app.user_id
                and any(e.get("title") == "Now playing" for e in message.get("embeds") or [])):
            return message_id
    return None


class Soak:
    """Both fleets, their guilds, and the load generator."""

    def __init__(self, sandbox: Sandbox, apps: dict[str, list[Any]]) -> None:
        self.sandbox = sandbox
        self.apps = apps
        self.worlds: dict[int, Any] = {}  # app.user_id -> its world
        self.managers: dict[str, Any] = {}
        self.samples: list[dict[str, Any]] = []
        self.restarts: dict[str, int] = {mode: 0 for mode in MODES}
        self.first_pids: dict[str, dict[int, int]] = {}

    async def create_worlds(self) -> None:
        for app in (a for mode in MODES for a in self.apps[mode]):
            self.worlds[app.user_id] = await self.sandbox.create_world(
                [app], name=f"Soak {app.name}", voice_channels=("Lounge",), members=("alice", "bob"))

    def invoke(self, app, command: str, **options: Any):
        world = self.worlds[app.user_id]
        return self.sandbox.discord.invoke(app, guild_id=world.guild_id, channel_id=world.text_id,
                                           user_id=world.member_ids["alice"], command=command,
                                           options=options or None, timeout=15)

    async def start_playing(self) -> None:
        for app in (a for mode in MODES for a in self.apps[mode]):
            world = self.worlds[app.user_id]
            await self.sandbox.discord.move_member(world.guild_id, world.member_ids["alice"], world.voice_ids["Lounge"])
            result = await self.invoke(app, "play", query="https://music.example/track/soak-first?length=240000")
            assert "Now playing" in (result.content or ""), result.content

    def interaction(self, app, kind: str, i: int):
        if kind == "play":
            length = 60_000 * (1 + i % 4)  # 1 to 4 minutes
            return self.invoke(app, "play", query=f"https://music.example/track/soak-{i}?length={length}")
        if kind == "search":
            return self.invoke(app, "play", query=f"soak song {i % 50}")
        if kind == "volume":
            return self.invoke(app, "volume", level=40 + (i % 7) * 10)
        if kind == "button":
            world = self.worlds[app.user_id]
            panel = panel_of(self.sandbox, app, world.text_id)
            if panel is None:  # between songs: nothing to press, ask what plays instead
                return self.invoke(app, "nowplaying")
            return self.sandbox.discord.press_button(app, guild_id=world.guild_id, channel_id=world.text_id,
                                                     user_id=world.member_ids["alice"], message_id=panel,
                                                     custom_id="panel:pause", timeout=15)
        return self.invoke(app, kind)

    def sample(self, label: str, elapsed: float) -> dict[str, Any]:
        """Memory of every process now (called in a thread: reading smaps takes a while)."""
        row: dict[str, Any] = {"label": label, "t_s": round(elapsed, 1)}
        for mode, manager in self.managers.items():
            pids = bot_pids(manager)
            first = self.first_pids.setdefault(mode, dict(pids))
            self.restarts[mode] = sum(1 for n, pid in pids.items() if first.get(n) != pid)
            mems = []
            for pid in pids.values():
                try:
                    mems.append(memory_of(pid))
                except psutil.Error:
                    pass
            server = fork_server_pid(manager)
            extra = [memory_of(manager.pid)["pss"]] + ([memory_of(server)["pss"]] if server else [])
            row[mode] = {"bots": len(mems), "uss_mean": round(statistics.fmean(m["uss"] for m in mems), 1),
                         "uss_max": max(m["uss"] for m in mems), "pss_sum": round(sum(m["pss"] for m in mems), 1),
                         "total_pss": round(sum(m["pss"] for m in mems) + sum(extra), 1),
                         "rss_mean": round(statistics.fmean(m["rss"] for m in mems), 1)}
        self.samples.append(row)
        return row

    async def load(self, minutes: float, started: float) -> dict[str, Any]:
        """100 interactions per bot-minute, open loop; memory sampled every minute meanwhile."""
        bots = [a for mode in MODES for a in self.apps[mode]]
        mode_of = {a.user_id: mode for mode in MODES for a in self.apps[mode]}
        mode_of_app = {a.application_id: mode for mode in MODES for a in self.apps[mode]}
        per_bot = int(round(INTERACTIONS_PER_MINUTE * minutes))
        total = per_bot * len(bots)
        interval = minutes * 60 / total
        first = len(self.sandbox.discord.interactions)
        plan = ((app, MIX[k % len(MIX)], k) for k in range(per_bot) for app in bots)
        tasks: list[tuple[str, str, asyncio.Task]] = []
        next_sample = 60.0
        t0 = time.monotonic()
        for i, (app, kind, k) in enumerate(plan):
            due = t0 + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - t0 >= next_sample:
                await asyncio.to_thread(self.sample, f"{next_sample / 60:.0f} min", time.monotonic() - started)
                next_sample += 60.0
            tasks.append((mode_of[app.user_id], kind, asyncio.create_task(self.interaction(app, kind, k))))
        sent_in = time.monotonic() - t0
        results = await asyncio.gather(*(t for _, _, t in tasks), return_exceptions=True)
        outcome: dict[str, dict[str, Any]] = {m: {"sent": 0, "errors": 0, "slow_down": 0, "late": 0,
                                                  "samples": []}
                                              for m in MODES}
        latencies: dict[str, list[float]] = {m: [] for m in MODES}
        for (mode, kind, _), result in zip(tasks, results):
            o = outcome[mode]
            o["sent"] += 1
            if isinstance(result, BaseException):
                o["errors"] += 1
                if len(o["samples"]) < 5:
                    o["samples"].append(f"{kind}: {type(result).__name__}: {result}")
                continue
            text = (result.content or "") + " ".join(e.get("description") or "" for e in result.embeds or [])
            if GENERIC_FAILURE in text:
                o["errors"] += 1
                if len(o["samples"]) < 5:
                    o["samples"].append(f"{kind}: generic failure")
            if "Slow down" in text:
                o["slow_down"] += 1
        for record in self.sandbox.discord.interactions[first:]:
            mode = mode_of_app.get(record.application_id)
            if mode and record.callback_at is not None:
                latencies[mode].append(record.callback_at - record.dispatched_at)
            if mode and 10062 in record.callback_attempts:
                outcome[mode]["late"] += 1
        for mode in MODES:
            outcome[mode]["latency"] = summarize_ms(latencies[mode])
        return {"per_bot": per_bot, "total": total, "sent_in_s": round(sent_in, 1), **outcome}


async def run_soak(count: int, minutes: float) -> dict[str, Any]:
    """`count` exec'd and `count` forked bots, `minutes` of play and 100 interactions per bot-minute."""
    with Workdir("soak") as workdir:
        async with Sandbox(player_update_interval=PRODUCTION_PLAYER_UPDATE_INTERVAL) as sandbox, Processes() as procs:
            apps = {mode: sandbox.add_bots(count) for mode in MODES}
            soak = Soak(sandbox, apps)
            await soak.create_worlds()
            await register_commands(sandbox.bot_env(sandbox.apps))
            started = time.monotonic()
            for mode in MODES:
                env = bot_env(sandbox, apps[mode], Path(workdir) / mode)
                soak.managers[mode] = await procs.manager(env, Path(workdir) / mode / "logs", "--spawn", mode,
                                                          "--stagger", "0")
            await wait_ready_times(sandbox, [a for m in MODES for a in apps[m]], started, timeout=180)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(soak.sample, "READY", time.monotonic() - started)
            await soak.start_playing()
            await asyncio.to_thread(soak.sample, "playing", time.monotonic() - started)
            load = await soak.load(minutes, time.monotonic())
            await asyncio.sleep(1.0)
            final = await asyncio.to_thread(soak.sample, "end", time.monotonic() - started)
            mappings = {}
            for mode in MODES:
                pid = bot_pids(soak.managers[mode]).get(min(bot_pids(soak.managers[mode])))
                mappings[mode] = await asyncio.to_thread(private_by_mapping, pid)
            server = fork_server_pid(soak.managers["fork"])
            server_map = await asyncio.to_thread(private_by_mapping, server) if server else {}
            players = {mode: sum(1 for app in apps[mode] if sandbox.lavalink.player(
                app.user_id, soak.worlds[app.user_id].guild_id)) for mode in MODES}
            queued = {mode: [queue_length(Path(workdir) / mode / "state", sandbox.bot_number(app),
                                          soak.worlds[app.user_id].guild_id) for app in apps[mode]] for mode in MODES}
            for mode in MODES:
                await procs.stop_manager(soak.managers[mode])
    return {"bots_per_mode": count, "minutes": minutes, "samples": soak.samples, "load": load, "final": final,
            "restarts": dict(soak.restarts), "mappings": mappings, "fork_server_mapping": server_map,
            "players_at_end": players, "queued_at_end": queued}
