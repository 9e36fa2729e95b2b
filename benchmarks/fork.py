"""10. Fork server vs exec: fleet memory, cold start, memory after a soak, and how fast a SIGKILLed bot answers.

The same fleet twice, under `process_manager.py --spawn exec` (one interpreter per bot, as supervisord) and
`--spawn fork` (bots forked from fork_server.py, which imported discord.py, wavelink and the cogs once and
froze its heap), with `--stagger 0`, 8 bots and then 16. After every bot is READY (gateway and Lavalink): PSS
of every bot (the fair share of shared pages; the fleet's PSS adds up), USS per bot (what one more bot costs),
the fork server's and the manager's. The fleet PSS compared with the targets is manager + fork server + bots.
Cold start: launch to every bot READY, against the import floor as benchmarks/cold_start.py defines it
(N x `python -c "import discord, wavelink"` over the cores), measured in the same run.
Then (8 bots) bot 1 is SIGKILLed (after a stable start, so the manager restarts it at once) and /ping is sent
to it until it answers: the time from the SIGKILL to that answer.
Last, the soak (benchmarks/soak.py, `--soak-minutes`, default 10): both fleets side by side for the minutes,
100 interactions per bot-minute, memory sampled every minute.
SIGKILL -> audio resumed from the snapshot is benchmark 4 (crash_recovery), which runs under the default
`--spawn fork`; it is not measured twice.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from benchmarks.common import (
    Options, Processes, Result, Workdir, bot_env, bot_pids, import_floor, memory_of, wait_ready_times,
)
from benchmarks.soak import fork_server_pid, run_soak
from sandbox.control import Sandbox
from tests.helpers import register_commands

NAME = "fork"
TITLE = "Fork server vs exec"
TARGET_PSS_MB = 120.0  # 8 bots: manager + fork server + bots
TARGET_PSS_16_MB = 200.0  # 16 bots, alike
TARGET_USS_MB = 8.0  # per bot after READY
TARGET_SOAK_USS_MB = 12.0  # per bot after the soak (10 minutes, 1,000 interactions per bot)
TARGET_COLD_RATIO = 1.0  # 8 bots all READY (--stagger 0) / the import floor
TARGET_ANSWER_S = 0.5
SOAK_MINUTES = 10.0
QUICK_SOAK_MINUTES = 0.5


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


async def fleet_run(mode: str, count: int, crash: bool = True) -> dict:
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
            kill = await answer_after_kill(sandbox, apps[0], world, pids[1]) if crash else {}
            restarted = bot_pids(manager).get(1) if crash else None
            restarted_mem = memory_of(restarted) if restarted else None
            await procs.stop_manager(manager)
    pss = round(sum(m["pss"] for m in mems), 1)
    return {"mode": mode, "bots": len(mems), "ready_s": round(max(max(g, a) for g, a in zip(*ready.values())), 2),
            "pss_sum": pss, "uss_mean": round(sum(m["uss"] for m in mems) / len(mems), 1),
            "uss_max": max(m["uss"] for m in mems), "rss_sum": round(sum(m["rss"] for m in mems), 1),
            "server": server_mem, "manager": manager_mem, "restarted": restarted_mem, **kill,
            "total_pss": round(pss + (server_mem["pss"] if server_mem else 0) + manager_mem["pss"], 1)}



def mark(ok: bool) -> str:
    return "met" if ok else "missed"


async def run(opts: Options) -> Result:
    count = 4 if opts.quick else 8
    big = None if opts.quick else 16
    minutes = opts.soak_minutes
    if minutes is None:
        minutes = QUICK_SOAK_MINUTES if opts.quick else SOAK_MINUTES
    floor = await import_floor(count, repeat=1 if opts.quick else 2)
    runs = {mode: await fleet_run(mode, count) for mode in ("exec", "fork")}
    bigs = {mode: await fleet_run(mode, big, crash=False) for mode in ("exec", "fork")} if big else {}
    soak = await run_soak(count, minutes) if minutes > 0 else None
    ex, fk = runs["exec"], runs["fork"]
    cold = {mode: round(r["ready_s"] / floor["wall_s"], 2) for mode, r in runs.items()}

    table = ["| spawn | bots | bots PSS sum MB | + fork server + manager PSS MB | USS per bot MB (mean / max) | "
             "RSS sum MB | all READY s | READY / import floor | SIGKILL -> READY s | SIGKILL -> /ping answered s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in (ex, fk, *bigs.values()):
        ratio = f"{r['ready_s'] / floor['wall_s']:.2f}x" if r["bots"] == count else "-"
        crash = (f"{r['kill_ready_s']:.2f} | {r['answer_s']:.2f}" if "answer_s" in r else "- | -")
        table.append(f"| {r['mode']} | {r['bots']} | {r['pss_sum']} | {r['total_pss']} | {r['uss_mean']} / "
                     f"{r['uss_max']} | {r['rss_sum']} | {r['ready_s']:.2f} | {ratio} | {crash} |")
    tables = [table]

    parts = {"fleet PSS": fk["total_pss"] <= TARGET_PSS_MB, "USS per bot": fk["uss_max"] <= TARGET_USS_MB,
             "cold start": cold["fork"] <= TARGET_COLD_RATIO, "answers again": fk["answer_s"] <= TARGET_ANSWER_S}
    if bigs:
        parts["16-bot PSS"] = bigs["fork"]["total_pss"] <= TARGET_PSS_16_MB
    headline = (f"{count} bots: fleet PSS {fk['total_pss']:.0f} MB forked vs {ex['total_pss']:.0f} MB exec'd "
                f"(manager + fork server + bots); USS per bot {fk['uss_mean']} vs {ex['uss_mean']} MB; "
                f"cold start {cold['fork']:.2f}x vs {cold['exec']:.2f}x the import floor; "
                f"SIGKILL -> /ping answered {fk['answer_s']:.2f} s vs {ex['answer_s']:.2f} s")
    if bigs:
        headline += (f"; {big} bots: {bigs['fork']['total_pss']:.0f} MB vs {bigs['exec']['total_pss']:.0f} MB")
    notes = [
        f"Fork server: {fk['server']['pss'] if fk['server'] else '-'} MB PSS, "
        f"{fk['server']['uss'] if fk['server'] else '-'} MB USS (the preloaded imports its children share); "
        f"manager {fk['manager']['pss']} MB PSS.",
        f"The restarted bot 1 after /ping: {fk['restarted']['uss'] if fk['restarted'] else '-'} MB USS forked, "
        f"{ex['restarted']['uss'] if ex['restarted'] else '-'} MB exec'd.",
        f"Cold start: import floor = {count} x `python -c \"import discord, wavelink\"` over {floor['parallel']} "
        f"cores = {floor['wall_s']:.2f} s (one import {floor['single_s']:.2f} s); every bot READY (gateway and "
        f"Lavalink) {fk['ready_s']:.2f} s forked ({cold['fork']:.2f}x), {ex['ready_s']:.2f} s exec'd "
        f"({cold['exec']:.2f}x). The forked time includes the fork server's own imports (one interpreter).",
    ]
    targets = [f"{count} bots fleet PSS <= {TARGET_PSS_MB:g} MB: {fk['total_pss']:.1f} MB, {mark(parts['fleet PSS'])}",
               f"USS per bot after READY <= {TARGET_USS_MB:g} MB: {fk['uss_max']} MB, {mark(parts['USS per bot'])}",
               f"cold start <= {TARGET_COLD_RATIO:g}x floor: {cold['fork']:.2f}x, {mark(parts['cold start'])}",
               f"SIGKILL -> answers again <= {TARGET_ANSWER_S:g} s: {fk['answer_s']:.2f} s, "
               f"{mark(parts['answers again'])}"]
    if bigs:
        targets.insert(1, f"{big} bots fleet PSS <= {TARGET_PSS_16_MB:g} MB: {bigs['fork']['total_pss']:.1f} MB "
                          f"(exec'd {bigs['exec']['total_pss']:.1f} MB), {mark(parts['16-bot PSS'])}")
    if soak:
        end = soak["final"]["fork"]
        parts["USS after soak"] = end["uss_max"] <= TARGET_SOAK_USS_MB
        load = soak["load"]
        targets.append(f"USS per bot after {minutes:g} min and {load['per_bot']} interactions per bot <= "
                       f"{TARGET_SOAK_USS_MB:g} MB: {end['uss_mean']} MB mean, {end['uss_max']} MB max, "
                       f"{mark(parts['USS after soak'])}")
        headline += (f"; after {minutes:g} min and {load['per_bot']} interactions per bot USS {end['uss_mean']} MB "
                     f"forked vs {soak['final']['exec']['uss_mean']} MB exec'd")
        soak_table = ["| sample | t s | forked USS per bot MB (mean / max) | forked fleet PSS MB (+ server + "
                      "manager) | exec'd USS per bot MB (mean / max) | exec'd fleet PSS MB (+ manager) |",
                      "|---|---|---|---|---|---|"]
        for row in soak["samples"]:
            f, e = row["fork"], row["exec"]
            soak_table.append(f"| {row['label']} | {row['t_s']:.0f} | {f['uss_mean']} / {f['uss_max']} | "
                              f"{f['total_pss']} | {e['uss_mean']} / {e['uss_max']} | {e['total_pss']} |")
        tables.append(soak_table)
        ready, end_e = soak["samples"][0], soak["final"]["exec"]
        grow_f = end["uss_mean"] - ready["fork"]["uss_mean"]
        grow_e = end_e["uss_mean"] - ready["exec"]["uss_mean"]
        lf, le = load["fork"], load["exec"]
        notes.append(
            f"Soak: {count} forked and {count} exec'd bots side by side against one sandbox, each in a guild of its "
            f"own, {minutes:g} min, {load['per_bot']} interactions per bot ({load['total']} in all, sent over "
            f"{load['sent_in_s']} s, open loop; /play of links and searches, /queue, /nowplaying, /volume, /pause, "
            f"/resume, /skip, the panel's pause button). Errors {lf['errors']} forked / {le['errors']} exec'd, "
            f"answered late {lf['late']} / {le['late']}, 'Slow down' {lf['slow_down']} / {le['slow_down']}; "
            f"latency p99 {lf['latency'].get('p99_ms')} / {le['latency'].get('p99_ms')} ms; bot restarts "
            f"{soak['restarts']['fork']} / {soak['restarts']['exec']}; players at the end "
            f"{soak['players_at_end']['fork']} / {soak['players_at_end']['exec']}.")
        minute = next((row for row in soak["samples"] if row["label"] == "1 min"), None)
        queued = {m: [q for q in soak["queued_at_end"][m] if q is not None] for m in ("fork", "exec")}
        notes.append(
            f"USS per bot from READY to the end: forked {ready['fork']['uss_mean']} -> {end['uss_mean']} MB "
            f"({grow_f:+.1f}), exec'd {ready['exec']['uss_mean']} -> {end_e['uss_mean']} MB ({grow_e:+.1f}). What an "
            f"exec'd bot grows by is new data of its own; the forked bot's growth beyond it "
            f"({grow_f - grow_e:+.1f} MB) is pages of the fork server un-shared by copy on write.")
        if minute:
            span = (soak["final"]["t_s"] - minute["t_s"]) / 60
            rate_f = (end["uss_mean"] - minute["fork"]["uss_mean"]) / span
            rate_e = (end_e["uss_mean"] - minute["exec"]["uss_mean"]) / span
            verdict = ("about the same: the copying happens in the first minute, what grows after it is the bots' "
                       "own data" if abs(rate_f - rate_e) <= 0.05 else
                       f"the forked bots' extra {rate_f - rate_e:+.2f} MB/min is copying still going on")
            notes.append(
                f"From the first minute to the end ({span:.1f} min) forked bots grew {rate_f:+.2f} MB/min and "
                f"exec'd ones {rate_e:+.2f} MB/min, {verdict}; songs queued at the end (per bot, from the "
                f"snapshots): forked {queued['fork']}, exec'd {queued['exec']}.")
        notes.append("Private memory by mapping at the end (MB), forked bot: "
                     + ", ".join(f"{k} {v}" for k, v in soak["mappings"]["fork"].items())
                     + "; exec'd bot: " + ", ".join(f"{k} {v}" for k, v in soak["mappings"]["exec"].items()) + ".")
        for sample in (lf, le):
            if sample["samples"]:
                notes.append(f"error samples: {sample['samples']}")
    notes.append("Targets (forked): " + "; ".join(targets) + ".")
    notes.append("SIGKILL -> audio resumed from the snapshot (target <= 1.0 s) is measured by benchmark 4, Crash "
                 "recovery, under the default --spawn fork.")
    notes.append("Where a forked bot's private memory goes: see benchmarks/RESULTS.md ('Fork server vs exec'); most "
                 "of it is copy-on-write: CPython 3.11 writes to every object it touches (reference counts) and to "
                 "the code it runs (the specialising interpreter), which un-shares those pages; gc.freeze() only "
                 "stops the collector's.")
    met = all(parts.values())
    status = None
    if not met and any(parts.values()):
        status = "partly: " + ", ".join(k for k, ok in parts.items() if ok) + " met"
    target = (f"{count} bots PSS <= {TARGET_PSS_MB:g} MB" + (f", {big} <= {TARGET_PSS_16_MB:g} MB" if big else "")
              + f"; USS <= {TARGET_USS_MB:g} MB/bot"
              + (f", <= {TARGET_SOAK_USS_MB:g} MB after the soak" if soak else "")
              + f"; cold start <= {TARGET_COLD_RATIO:g}x floor; answers again <= {TARGET_ANSWER_S:g} s after SIGKILL")
    return Result(NAME, TITLE, headline, target, met,
                  {"runs": runs, "big": bigs, "floor": floor, "cold_ratio": cold, "soak": soak, "tables": tables},
                  notes, status=status)
