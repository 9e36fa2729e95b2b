"""1. Fleet cold start: N bots from process_manager.py to all READY, against the import floor.

The floor is N x `python -c "import discord, wavelink"` run over the machine's cores: no fleet of N Python
bots can start faster on this machine. Measured with the manager's default `--stagger 0.5` (what users get:
it spaces the IDENTIFYs of bots sharing one IP) and with `--stagger 0` (what the machine can do), under
`--spawn exec` (an interpreter per bot, which is what the floor measures; forked bots import nothing:
see benchmarks/fork.py).

READY here = Discord's READY plus every GUILD_CREATE written (the bot can answer commands) AND the bot's
Lavalink session ready (it can play). discord.py's own on_ready comes `guild_ready_timeout` (2 s) later;
it is reported beside.
"""

from __future__ import annotations

import asyncio
import re
import time

from benchmarks.common import Options, Processes, Result, Workdir, bot_env, import_floor, wait_ready_times
from sandbox.control import Sandbox

NAME = "cold_start"
TITLE = "Fleet cold start"
TARGET_RATIO = 1.5
ON_READY = re.compile(r"\[Bot \d+\].*ready as")


async def fleet_start(count: int, stagger: float) -> dict[str, float]:
    async with Sandbox() as sandbox, Processes() as procs:
        with Workdir("cold") as workdir:
            apps = sandbox.add_bots(count)
            await sandbox.create_world(apps)
            env = bot_env(sandbox, apps, workdir)
            started = time.monotonic()
            manager = await procs.manager(env, workdir / "logs", "--spawn", "exec", "--stagger", str(stagger))
            ready = await wait_ready_times(sandbox, apps, started)
            all_ready = max(max(g, a) for g, a in zip(ready["gateway"], ready["lavalink"]))
            while sum(1 for line in manager.lines if ON_READY.search(line)) < count:
                if time.monotonic() - started > 120:
                    raise TimeoutError("on_ready not logged by every bot")
                await asyncio.sleep(0.01)
            on_ready = time.monotonic() - started
            await procs.stop_manager(manager)
    return {"bots": count, "stagger_s": stagger, "all_ready_s": round(all_ready, 3),
            "gateway_ready_s": round(max(ready["gateway"]), 3), "lavalink_ready_s": round(max(ready["lavalink"]), 3),
            "first_ready_s": round(min(max(g, a) for g, a in zip(ready["gateway"], ready["lavalink"])), 3),
            "on_ready_logged_s": round(on_ready, 3)}


async def run(opts: Options) -> Result:
    count = 4 if opts.quick else 8
    floor = await import_floor(count, repeat=1 if opts.quick else 2)
    default = await fleet_start(count, 0.5)
    burst = await fleet_start(count, 0.0)
    ratio_burst = burst["all_ready_s"] / floor["wall_s"]
    ratio_default = default["all_ready_s"] / floor["wall_s"]
    staggered_floor = floor["single_s"] + 0.5 * (count - 1)  # the last bot cannot start before (n-1) x stagger
    met = ratio_burst <= TARGET_RATIO
    headline = (f"{ratio_burst:.2f}x floor with --stagger 0 ({burst['all_ready_s']:.2f} s vs {floor['wall_s']:.2f} s); "
                f"{ratio_default:.2f}x with the default --stagger 0.5 ({default['all_ready_s']:.2f} s)")
    notes = [
        f"{count} bots; floor = {count} x `python -c \"import discord, wavelink\"` over {floor['parallel']} cores "
        f"= {floor['wall_s']:.2f} s (one import alone {floor['single_s']:.2f} s).",
        f"--stagger 0.5 (default) spaces starts by 0.5 s, so the last bot starts {0.5 * (count - 1):.1f} s after the "
        f"first: its own floor is ~{staggered_floor:.2f} s; it measured {default['all_ready_s']:.2f} s "
        f"({default['all_ready_s'] / staggered_floor:.2f}x that). The trade-off: Discord's IDENTIFY limit is per bot "
        f"(max_concurrency 1 per 5 s), but all bots share the host's IP, and Discord bans an IP that sends too many "
        f"failing (401/403/429) requests (10,000 per 10 min); spacing starts turns {count} simultaneous log-ins, "
        f"gateway connects and Lavalink handshakes into a trickle, and a bad token fails alone, not in a burst.",
        f"discord.py's on_ready (logged 'ready as') comes guild_ready_timeout = 2 s after the last GUILD_CREATE: "
        f"{burst['on_ready_logged_s']:.2f} s with --stagger 0; commands are served before it.",
    ]
    if not met:
        notes.append(f"Missed by {(ratio_burst - TARGET_RATIO) / TARGET_RATIO:.0%}: each bot does more than the "
                     f"import (cogs, gateway, Lavalink) and {count} bots share {floor['parallel']} cores with the "
                     f"sandbox itself, which runs in the benchmark process.")
    return Result(NAME, TITLE, headline, f"<= {TARGET_RATIO}x floor (stagger 0)", met,
                  {"floor": floor, "stagger_default": default, "stagger_0": burst,
                   "ratio_stagger_0": round(ratio_burst, 3), "ratio_stagger_default": round(ratio_default, 3)},
                  notes)
