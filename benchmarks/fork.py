"""10. Fork server vs exec: fleet memory, cold start, memory after a soak, and how fast a SIGKILLed bot answers.

The same fleet twice, under `process_manager.py --spawn exec` (one interpreter per bot, as supervisord) and
`--spawn fork` (bots forked from fork_server.py, which imported discord.py, wavelink and the cogs once and
froze its heap), with `--stagger 0`, 8 bots and then 16. After every bot is READY (gateway and Lavalink): PSS
of every bot (the fair share of shared pages; the fleet's PSS adds up), USS per bot (what one more bot costs),
the fork server's and the manager's. The fleet PSS compared with the targets is manager + fork server + bots.
Forked fleets are measured twice: with the host's ksmd off (as most hosts run), and with it on (switched on
for the run when we are root, restored after), once it has merged what it will (utils/ksm.py): the lean
production set-up, whose figures are the ones compared with the targets.
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
    Options, Processes, Result, Workdir, bot_env, bot_pids, import_floor, ksmd, ksmd_cpu_s, ksmd_settings,
    memory_of, wait_ready_times,
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
SOAK_KSM = " (the host's ksmd on, as in production)"
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


def fleet_memory(manager) -> dict:
    """Memory of a running fleet now: every bot, the fork server (if any) and the manager."""
    mems = [memory_of(pid) for pid in bot_pids(manager).values()]
    server = fork_server_pid(manager)
    server_mem = memory_of(server) if server else None
    manager_mem = memory_of(manager.pid)
    pss = round(sum(m["pss"] for m in mems), 1)
    return {"bots": len(mems), "pss_sum": pss, "uss_mean": round(sum(m["uss"] for m in mems) / len(mems), 1),
            "uss_max": max(m["uss"] for m in mems), "rss_sum": round(sum(m["rss"] for m in mems), 1),
            "server": server_mem, "manager": manager_mem,
            "total_pss": round(pss + (server_mem["pss"] if server_mem else 0) + manager_mem["pss"], 1)}


async def settle(manager, before: float, step: float = 5.0, timeout: float = 300.0) -> dict:
    """Wait, sampling every `step` s, until ksmd has merged what it will: USS per bot down by a quarter from
    `before` (its value at READY) and steady (two changes in a row under 0.15 MB). Returns how long that
    took and what ksmd's thread spent on it."""
    started, cpu = time.monotonic(), ksmd_cpu_s()
    history = [before]
    while time.monotonic() - started < timeout:
        await asyncio.sleep(step)
        history.append(fleet_memory(manager)["uss_mean"])
        merged = history[-1] <= 0.75 * before
        if merged and len(history) >= 3 and all(abs(a - b) < 0.15 for a, b in zip(history[-3:], history[-2:])):
            break
    elapsed = time.monotonic() - started
    spent = ksmd_cpu_s()
    cpu_s = round(spent - cpu, 2) if spent is not None and cpu is not None else None
    return {"settle_s": round(elapsed, 1), "ksmd_cpu_s": cpu_s, "uss_history": history,
            "ksmd_core_pct": round(100 * cpu_s / elapsed, 1) if cpu_s is not None else None}


async def fleet_run(mode: str, count: int, crash: bool = True, ksm: bool = False) -> dict:
    """One fleet under `--spawn mode`; with `ksm`, the host's ksmd on and memory measured again once it has
    merged (the figures compared with the targets are then those)."""
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
            at_ready = fleet_memory(manager)
            merged = await settle(manager, at_ready["uss_mean"]) if ksm else None
            result = fleet_memory(manager) if ksm else at_ready
            pids = bot_pids(manager)
            kill = await answer_after_kill(sandbox, apps[0], world, pids[1]) if crash else {}
            restarted = bot_pids(manager).get(1) if crash else None
            restarted_mem = memory_of(restarted) if restarted else None
            await procs.stop_manager(manager)
    return {**result, "mode": mode + (" + ksmd" if ksm else ""),
            "ready_s": round(max(max(g, a) for g, a in zip(*ready.values())), 2),
            "at_ready": at_ready, "ksm": merged, "restarted": restarted_mem, **kill}


def mark(ok: bool) -> str:
    return "met" if ok else "missed"


async def run(opts: Options) -> Result:
    count = 4 if opts.quick else 8
    big = None if opts.quick else 16
    minutes = opts.soak_minutes
    if minutes is None:
        minutes = QUICK_SOAK_MINUTES if opts.quick else SOAK_MINUTES
    floor = await import_floor(count, repeat=1 if opts.quick else 2)
    with ksmd(False) as ksmd_off:  # first as most hosts are: ksmd off (the bots' opt-in then does nothing)
        runs = {mode: await fleet_run(mode, count) for mode in ("exec", "fork")}
        bigs = {mode: await fleet_run(mode, big, crash=False) for mode in ("exec", "fork")} if big else {}
    with ksmd(True) as ksmd_on:  # then with the host's ksmd on, at the kernel's scan rate; the soak too
        if ksmd_on:
            runs["fork + ksmd"] = await fleet_run("fork", count, crash=False, ksm=True)
            if big:
                bigs["fork + ksmd"] = await fleet_run("fork", big, crash=False, ksm=True)
        soak = await run_soak(count, minutes) if minutes > 0 else None
    ex, fk = runs["exec"], runs["fork"]
    best = runs.get("fork + ksmd", fk)  # the figures compared with the targets: the lean production set-up
    best_big = bigs.get("fork + ksmd", bigs.get("fork"))
    cold = {mode: round(runs[mode]["ready_s"] / floor["wall_s"], 2) for mode in ("exec", "fork")}

    table = ["| spawn | bots | bots PSS sum MB | + fork server + manager PSS MB | USS per bot MB (mean / max) | "
             "RSS sum MB | all READY s | READY / import floor | SIGKILL -> READY s | SIGKILL -> /ping answered s | "
             "ksmd: merged after s / its CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (*runs.values(), *bigs.values()):
        ratio = f"{r['ready_s'] / floor['wall_s']:.2f}x" if r["bots"] == count and not r["ksm"] else "-"
        crash = (f"{r['kill_ready_s']:.2f} | {r['answer_s']:.2f}" if "answer_s" in r else "- | -")
        merged = (f"{r['ksm']['settle_s']:.0f} s / {r['ksm']['ksmd_core_pct']}% of a core" if r["ksm"] else "-")
        table.append(f"| {r['mode']} | {r['bots']} | {r['pss_sum']} | {r['total_pss']} | {r['uss_mean']} / "
                     f"{r['uss_max']} | {r['rss_sum']} | {r['ready_s']:.2f} | {ratio} | {crash} | {merged} |")
    tables = [table]

    parts = {"fleet PSS": best["total_pss"] <= TARGET_PSS_MB, "USS per bot": best["uss_max"] <= TARGET_USS_MB,
             "cold start": cold["fork"] <= TARGET_COLD_RATIO, "answers again": fk["answer_s"] <= TARGET_ANSWER_S}
    if bigs:
        parts["16-bot PSS"] = best_big["total_pss"] <= TARGET_PSS_16_MB
    ksm_words = " with ksmd on" if best is not fk else ""
    headline = (f"{count} bots: fleet PSS {best['total_pss']:.0f} MB forked{ksm_words} ({fk['total_pss']:.0f} MB "
                f"without ksmd) vs {ex['total_pss']:.0f} MB exec'd (manager + fork server + bots); USS per bot "
                f"{best['uss_mean']} ({fk['uss_mean']}) vs {ex['uss_mean']} MB; "
                f"cold start {cold['fork']:.2f}x vs {cold['exec']:.2f}x the import floor; "
                f"SIGKILL -> /ping answered {fk['answer_s']:.2f} s vs {ex['answer_s']:.2f} s")
    if bigs:
        headline += (f"; {big} bots: {best_big['total_pss']:.0f} MB ({bigs['fork']['total_pss']:.0f}) vs "
                     f"{bigs['exec']['total_pss']:.0f} MB")
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
    if best is not fk:
        k = best["ksm"]
        notes.append(
            f"With the host's ksmd on (kernel defaults: {ksmd_settings()}; only the processes that opted in are "
            f"scanned: the fork server and its bots, utils/ksm.py): USS per bot {best['at_ready']['uss_mean']} MB at "
            f"READY, {best['uss_mean']} MB {k['settle_s']:.0f} s later, once ksmd had merged the pages every bot "
            f"un-shared alike (USS per bot every 5 s: {k['uss_history']}); ksmd's thread used {k['ksmd_cpu_s']} s of "
            f"CPU meanwhile ({k['ksmd_core_pct']}% of a core). Fork server "
            f"{best['server']['uss'] if best['server'] else '-'} MB USS, manager {best['manager']['pss']} MB PSS."
            + (f" {big} bots: merged after {best_big['ksm']['settle_s']:.0f} s, ksmd "
               f"{best_big['ksm']['ksmd_core_pct']}% of a core." if bigs and best_big is not bigs["fork"] else ""))
    elif not ksmd_on:
        notes.append("ksmd could not be switched on (not root, or no KSM in this kernel): forked figures without it.")
    if not ksmd_off:
        notes.append("ksmd could not be switched off: the runs without ksmd ran with the host's ksmd on.")
    targets = [f"{count} bots fleet PSS <= {TARGET_PSS_MB:g} MB: {best['total_pss']:.1f} MB{ksm_words} "
               f"({fk['total_pss']:.1f} MB without), {mark(parts['fleet PSS'])}",
               f"USS per bot after READY <= {TARGET_USS_MB:g} MB: {best['uss_max']} MB{ksm_words} "
               f"({fk['uss_max']} MB without), {mark(parts['USS per bot'])}",
               f"cold start <= {TARGET_COLD_RATIO:g}x floor: {cold['fork']:.2f}x, {mark(parts['cold start'])}",
               f"SIGKILL -> answers again <= {TARGET_ANSWER_S:g} s: {fk['answer_s']:.2f} s, "
               f"{mark(parts['answers again'])}"]
    if bigs:
        targets.insert(1, f"{big} bots fleet PSS <= {TARGET_PSS_16_MB:g} MB: {best_big['total_pss']:.1f} MB"
                          f"{ksm_words} ({bigs['fork']['total_pss']:.1f} MB without; exec'd "
                          f"{bigs['exec']['total_pss']:.1f} MB), {mark(parts['16-bot PSS'])}")
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
            f"Soak{SOAK_KSM if ksmd_on else ''}: {count} forked and {count} exec'd bots side by side against one "
            f"sandbox, each in a guild of its "
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
            f"({grow_f - grow_e:+.1f} MB) is pages of the fork server un-shared by copy on write"
            + (", less what ksmd merged again (the READY sample comes before its first pass)." if ksmd_on else "."))
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
                 "stops the collector's. The bots write those pages alike (the same code on the same objects), or "
                 "back to what they were (a count up, then down): KSM merges them again where ksmd runs.")
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
