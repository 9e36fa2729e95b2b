"""6. Scale: cold start and memory of 1 to 16 bots, process per token vs one process hosting every client.

For each N: process_manager.py with N bots (--stagger 0) from launch to every bot READY (gateway; and with
its Lavalink session), then the memory of every bot process: summed RSS (overcounts the shared pages),
summed PSS (the fair total) and mean USS (what one more bot costs). Then the same N clients in one process
(benchmarks/one_process.py: same client settings, no cogs, no Lavalink - a lower bound), measured alike.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import (
    Options, Processes, Result, Workdir, bot_env, bot_pids, memory_of, wait_ready_times,
)
from sandbox.control import Sandbox

NAME = "scale"
TITLE = "Scale, 1 to 16 bots"


async def fleet_point(n: int) -> dict:
    async with Sandbox() as sandbox, Processes() as procs:
        with Workdir("scale") as workdir:
            apps = sandbox.add_bots(n)
            await sandbox.create_world(apps)
            env = bot_env(sandbox, apps, workdir, LOG_LEVEL="WARNING")
            started = time.monotonic()
            manager = await procs.manager(env, workdir / "logs", "--spawn", "exec", "--stagger", "0")
            ready = await wait_ready_times(sandbox, apps, started, timeout=180)
            await asyncio.sleep(1.0)
            mems = [memory_of(pid) for pid in bot_pids(manager).values()]
            manager_mem = memory_of(manager.pid)
            await procs.stop_manager(manager)
    return {"n": n, "gateway_ready_s": round(max(ready["gateway"]), 3),
            "all_ready_s": round(max(max(g, a) for g, a in zip(ready["gateway"], ready["lavalink"])), 3),
            "rss_sum": round(sum(m["rss"] for m in mems), 1), "pss_sum": round(sum(m["pss"] for m in mems), 1),
            "uss_mean": round(sum(m["uss"] for m in mems) / len(mems), 1), "manager": manager_mem,
            "processes": len(mems)}


async def one_process_point(n: int) -> dict:
    async with Sandbox() as sandbox, Processes() as procs:
        with Workdir("scale1") as workdir:
            apps = sandbox.add_bots(n)
            await sandbox.create_world(apps)
            env = bot_env(sandbox, apps, workdir, LOG_LEVEL="WARNING")
            started = time.monotonic()
            proc = await procs.script(["-m", "benchmarks.one_process", *map(str, range(1, n + 1))], env,
                                      name="one process")
            ready = await wait_ready_times(sandbox, apps, started, timeout=180, lavalink=False)
            await asyncio.sleep(1.0)
            mem = memory_of(proc.pid)
    return {"n": n, "gateway_ready_s": round(max(ready["gateway"]), 3), "rss": mem["rss"], "pss": mem["pss"],
            "uss": mem["uss"]}


async def run(opts: Options) -> Result:
    sizes = (1, 2, 4) if opts.quick else (1, 2, 4, 8, 16)
    fleet = [await fleet_point(n) for n in sizes]
    single = [await one_process_point(n) for n in sizes]
    table = ["| bots | fleet READY s (gateway / +Lavalink) | fleet RSS sum MB | fleet PSS sum MB | USS per bot MB "
             "| one process READY s | one process RSS MB | PSS ratio fleet / one process |",
             "|---|---|---|---|---|---|---|---|"]
    for f, s in zip(fleet, single):
        table.append(f"| {f['n']} | {f['gateway_ready_s']:.2f} / {f['all_ready_s']:.2f} | {f['rss_sum']} | "
                     f"{f['pss_sum']} | {f['uss_mean']} | {s['gateway_ready_s']:.2f} | {s['rss']} | "
                     f"{f['pss_sum'] / s['pss']:.1f}x |")
    big_f, big_s = fleet[-1], single[-1]
    per_bot_fleet = (big_f["pss_sum"] - fleet[0]["pss_sum"]) / (big_f["n"] - 1)
    per_bot_single = (big_s["pss"] - single[0]["pss"]) / (big_s["n"] - 1)
    headline = (f"{big_f['n']} bots: fleet PSS {big_f['pss_sum']:.0f} MB vs one process {big_s['pss']:.0f} MB "
                f"({big_f['pss_sum'] / big_s['pss']:.1f}x); each extra bot {per_bot_fleet:+.0f} MB as a process vs "
                f"{per_bot_single:+.1f} MB as a client; READY {big_f['gateway_ready_s']:.1f} s vs "
                f"{big_s['gateway_ready_s']:.1f} s")
    notes = [
        "The price of isolation: every process carries its own interpreter and imports (see USS per bot); in "
        "exchange a crash, a leak or a stuck event loop stays in one bot (crash_recovery), and each bot has its "
        "own core-time instead of sharing one GIL.",
        "The one-process variant has no cogs and no Lavalink (wavelink's Pool is process-wide): a lower bound. "
        f"Manager process itself: {big_f['manager']['rss']} MB RSS, {big_f['manager']['uss']} MB USS.",
        "Measured with --spawn exec (one interpreter per bot, as supervisord runs them); --spawn fork, the "
        "manager's default, is compared with it in 'Fork server vs exec'.",
    ]
    return Result(NAME, TITLE, headline, "informational (table)", None,
                  {"fleet": fleet, "one_process": single, "tables": [table]}, notes)
