"""8. Fork server vs exec: the memory of an 8-bot fleet and how fast a SIGKILLed bot answers again.

The same fleet twice, under `process_manager.py --spawn exec` (one interpreter per bot, as supervisord) and
`--spawn fork` (bots forked from fork_server.py, which imported discord.py, wavelink and the cogs once and
froze its heap). After every bot is READY (gateway and Lavalink): PSS of every bot (the fair share of shared
pages; the fleet's PSS adds up), USS per bot (what one more bot costs), the fork server's and the manager's.
Then bot 1 is SIGKILLed (after a stable start, so the manager restarts it at once) and /ping is sent to it
until it answers: the time from the SIGKILL to that answer.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from benchmarks.common import Options, Processes, Result, Workdir, bot_env, bot_pids, memory_of, wait_ready_times
from sandbox.control import Sandbox
from tests.helpers import register_commands

NAME = "fork"
TITLE = "Fork server vs exec"
TARGET_PSS_MB = 120.0
TARGET_USS_MB = 8.0
TARGET_ANSWER_S = 0.5


def fork_server_pid(manager) -> int | None:
    for child in psutil.Process(manager.pid).children():
        if child.name() == "fork_server.py":
            return child.pid
    return None


async def answer_after_kill(sandbox: Sandbox, app, world, pid: int) -> dict[str, float]:
    """SIGKILL `pid` (bot `app`); seconds until READY at the gateway again and until /ping is answered."""
    d = sandbox.discord
    identifies = d.gateway_stats(app)["identifies"]
    killed = time.monotonic()
    psutil.Process(pid).kill()
    while not (d.gateway_stats(app)["identifies"] > identifies and d.gateway.is_ready(app.user_id)):
        if time.monotonic() - killed > 60:
            raise TimeoutError("the killed bot did not come back within 60 s")
        await asyncio.sleep(0.002)
    ready = time.monotonic() - killed
    while True:
        try:
            result = await d.invoke(app, guild_id=world.guild_id, channel_id=world.text_id,
                                    user_id=world.member_ids["alice"], command="ping", timeout=2)
        except (TimeoutError, asyncio.TimeoutError):
            continue
        if result.content or result.embeds:
            return {"kill_ready_s": round(ready, 3), "answer_s": round(time.monotonic() - killed, 3)}


async def fleet_run(mode: str, count: int) -> dict:
    async with Sandbox() as sandbox, Processes() as procs:
        with Workdir(f"fork-{mode}") as workdir:
            apps = sandbox.add_bots(count)
            world = await sandbox.create_world(apps)
            env = bot_env(sandbox, apps, workdir, LOG_LEVEL="WARNING")
            await register_commands(sandbox.bot_env(apps))
            started = time.monotonic()
            manager = await procs.manager(env, workdir / "logs", "--spawn", mode, "--stagger", "0",
                                          "--startsecs", "1")
            ready = await wait_ready_times(sandbox, apps, started, timeout=180)
            await asyncio.sleep(2.0)  # past startsecs: RUNNING, so a crash is restarted at once
            pids = bot_pids(manager)
            mems = [memory_of(pid) for pid in pids.values()]
            server = fork_server_pid(manager)
            server_mem = memory_of(server) if server else None
            manager_mem = memory_of(manager.pid)
            crash = await answer_after_kill(sandbox, apps[0], world, pids[1])
            restarted = bot_pids(manager).get(1)
            restarted_mem = memory_of(restarted) if restarted else None
            await procs.stop_manager(manager)
    pss = round(sum(m["pss"] for m in mems), 1)
    return {"mode": mode, "bots": len(mems), "ready_s": round(max(max(g, a) for g, a in zip(*ready.values())), 2),
            "pss_sum": pss, "uss_mean": round(sum(m["uss"] for m in mems) / len(mems), 1),
            "uss_max": max(m["uss"] for m in mems), "rss_sum": round(sum(m["rss"] for m in mems), 1),
            "server": server_mem, "manager": manager_mem, "restarted": restarted_mem, **crash,
            "total_pss": round(pss + (server_mem["pss"] if server_mem else 0) + manager_mem["pss"], 1)}


async def run(opts: Options) -> Result:
    count = 4 if opts.quick else 8
    runs = {mode: await fleet_run(mode, count) for mode in ("exec", "fork")}
    ex, fk = runs["exec"], runs["fork"]
    table = ["| spawn | bots PSS sum MB | + fork server + manager PSS MB | USS per bot MB (mean / max) | "
             "RSS sum MB | all READY s | SIGKILL -> READY s | SIGKILL -> /ping answered s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in (ex, fk):
        table.append(f"| {r['mode']} | {r['pss_sum']} | {r['total_pss']} | {r['uss_mean']} / {r['uss_max']} | "
                     f"{r['rss_sum']} | {r['ready_s']:.2f} | {r['kill_ready_s']:.2f} | {r['answer_s']:.2f} |")
    parts = {"fleet PSS": fk["pss_sum"] <= TARGET_PSS_MB, "USS per bot": fk["uss_max"] <= TARGET_USS_MB,
             "answers again": fk["answer_s"] <= TARGET_ANSWER_S}
    met = all(parts.values())
    status = None
    if not met and any(parts.values()):
        status = "partly: " + ", ".join(k for k, ok in parts.items() if ok) + " met"
    headline = (f"{count} bots: fleet PSS {fk['pss_sum']:.0f} MB forked vs {ex['pss_sum']:.0f} MB exec'd "
                f"({fk['total_pss']:.0f} vs {ex['total_pss']:.0f} MB with fork server and manager); USS per bot "
                f"{fk['uss_mean']} MB vs {ex['uss_mean']} MB; SIGKILL -> /ping answered {fk['answer_s']:.2f} s vs "
                f"{ex['answer_s']:.2f} s")
    notes = [
        f"Fork server: {fk['server']['pss'] if fk['server'] else '-'} MB PSS, "
        f"{fk['server']['uss'] if fk['server'] else '-'} MB USS (the preloaded imports its children share); "
        f"manager {fk['manager']['pss']} MB PSS.",
        f"The restarted bot 1 after /ping: {fk['restarted']['uss'] if fk['restarted'] else '-'} MB USS forked, "
        f"{ex['restarted']['uss'] if ex['restarted'] else '-'} MB exec'd.",
        f"Targets (forked): fleet PSS <= {TARGET_PSS_MB:g} MB, per-bot USS after READY <= {TARGET_USS_MB:g} MB, "
        f"SIGKILL -> answers again <= {TARGET_ANSWER_S:g} s.",
        "Where a forked bot's private memory goes: see benchmarks/RESULTS.md ('Fork server vs exec'); most of it "
        "is copy-on-write: CPython 3.11 writes to every object it touches (reference counts) and to the code it "
        "runs (the specialising interpreter), which un-shares those pages; gc.freeze() only stops the collector's.",
    ]
    return Result(NAME, TITLE, headline, f"{count} bots PSS <= {TARGET_PSS_MB:g} MB, USS <= {TARGET_USS_MB:g} MB/bot, "
                  f"answers again <= {TARGET_ANSWER_S:g} s after SIGKILL", met, {"runs": runs, "tables": [table]},
                  notes, status=status)
