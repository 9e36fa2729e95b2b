"""8. Cost of /healthz and /metrics: scrape time at P players, and the memory the endpoints add to a bot.

Three bot.py processes in one sandbox, each playing in the same P guilds (a voice channel each, a queue of
Q tracks behind every song): bot 1 with METRICS_PORT set (prometheus_client, aiohttp's low-level server,
counting, serving); bot 2 without METRICS_PORT (it still imports prometheus_client and counts); bot 3 a
bot without metrics at all (benchmarks/no_prometheus stands in for prometheus_client: nothing imported,
nothing recorded), the baseline. Bot 1 is scraped N times in a row, as Prometheus would (a process of its
own, one keep-alive connection): the round trip seen by the scraper, and the bot's CPU time per scrape
(psutil, over the N scrapes); /healthz, whose handler does almost nothing, gives the machine's noise floor
for the same round trip. Memory: RSS/USS of each after the scrapes (mean of 3 samples); bot 1 minus bot 3 is what
metrics cost a bot.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import psutil
from prometheus_client.parser import text_string_to_metric_families

from pathlib import Path

from benchmarks.common import (
    PYTHON, Options, Processes, Result, Workdir, bot_env, mean_memory, memory_of, summarize_ms,
)
from sandbox.control import Sandbox
from tests.helpers import register_commands, start_bot

NAME = "metrics"
TITLE = "Metrics cost"
TARGET_SCRAPE_MS = 5.0
TARGET_RSS_MB = 2.0
NO_PROMETHEUS = Path(__file__).resolve().parent / "no_prometheus"


WARM_UP = 10
# The scraper is a process of its own, as Prometheus is: in the benchmark's process it would share the GIL
# and the event loop with the sandbox (300 players' updates) and measure their pauses, not the bot's.
SCRAPER = """
import http.client, json, sys, time
port, path, count, warm = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one keep-alive connection
timings = []
for i in range(warm + count):
    started = time.perf_counter()
    conn.request("GET", path)
    body = conn.getresponse().read()
    if i >= warm:
        timings.append(time.perf_counter() - started)
print(json.dumps({"timings": timings, "body": body.decode()}))
"""


async def scrape_from_another_process(port: int, path: str, count: int) -> dict:
    proc = await asyncio.create_subprocess_exec(PYTHON, "-c", SCRAPER, str(port), path, str(count), str(WARM_UP),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return json.loads(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_players(sandbox: Sandbox, apps, guilds: list[dict], queued: int) -> list[str]:
    """Bot k plays in voice channel k of every guild for member k, with `queued` tracks behind the song."""
    d = sandbox.discord
    failures: list[str] = []
    semaphore = asyncio.Semaphore(6)

    async def one(k: int, app, guild: dict) -> None:
        async with semaphore:
            member = guild["members"][k]
            await d.move_member(guild["id"], member, guild["voices"][k])
            for t in range(1 + queued):
                try:
                    result = await d.invoke(app, guild_id=guild["id"], channel_id=guild["text"], user_id=member,
                                            command="play", timeout=20,
                                            options={"query": f"https://music.example/track/m{k}-{t}?length=900000"})
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    failures.append(f"{app.name}: {type(exc).__name__}: {exc}")
                    return
                if not any(w in (result.content or "") for w in ("Now playing", "Queued")):
                    failures.append(f"{app.name}: {result.content}")

    await asyncio.gather(*(one(k, app, g) for k, app in enumerate(apps) for g in guilds))
    return failures


async def run(opts: Options) -> Result:
    players, queued, scrapes = (20, 1, 100) if opts.quick else (100, 2, 500)
    port = free_port()
    async with Sandbox(player_update_interval=5.0) as sandbox, Processes() as procs:
        with Workdir("metrics") as workdir:
            apps = sandbox.add_bots(3)
            d = sandbox.discord
            guilds = []
            for g in range(players):
                guild = d.create_guild(f"Metrics Guild {g + 1}")
                guilds.append({"id": guild.id, "text": d.create_text_channel(guild.id, "general").id,
                               "voices": [d.create_voice_channel(guild.id, f"Voice {v + 1}").id for v in range(3)],
                               "members": [d.add_member(guild.id, f"user{g}-{m}").id for m in range(3)]})
                for app in apps:
                    await d.add_bot_to_guild(app, guild.id)
            env = bot_env(sandbox, apps, workdir)
            with_metrics = await procs.bot(1, {**env, "METRICS_PORT": str(port - 1)}, workdir / "logs")
            without = await procs.bot(2, env, workdir / "logs")
            baseline = procs.add(await start_bot(3, env, log_dir=workdir / "logs", python_path=[NO_PROMETHEUS]))
            registration = asyncio.create_task(register_commands(sandbox.bot_env(apps)))
            for bot in (with_metrics, without, baseline):
                await bot.wait_for_line(r"ready as", timeout=120)
            await registration
            started = time.monotonic()
            failures = await start_players(sandbox, apps, guilds, queued)
            play_s = time.monotonic() - started
            await asyncio.sleep(2.0)

            bot_cpu = psutil.Process(with_metrics.pid)
            cpu0 = sum(bot_cpu.cpu_times()[:2])
            scraped = await scrape_from_another_process(port, "/metrics", scrapes)
            cpu = (sum(bot_cpu.cpu_times()[:2]) - cpu0) / (scrapes + WARM_UP)
            timings, text = scraped["timings"], scraped["body"]
            health_timings = (await scrape_from_another_process(port, "/healthz", 50))["timings"]
            samples = {f.name: f for f in text_string_to_metric_families(text)}
            seen_players = samples["musicbot_players"].samples[0].value
            seen_queued = samples["musicbot_queued_tracks"].samples[0].value
            series = sum(len(f.samples) for f in samples.values())

            rounds = []
            for _ in range(3):
                rounds.append([memory_of(bot.pid) for bot in (with_metrics, without, baseline)])
                await asyncio.sleep(0.5)
            mem_on, mem_off, mem_base = (mean_memory([r[i] for r in rounds]) for i in range(3))

    scrape = summarize_ms(timings)
    health = summarize_ms(health_timings)
    added_rss, added_uss = mem_on["rss"] - mem_base["rss"], mem_on["uss"] - mem_base["uss"]
    idle_rss = mem_off["rss"] - mem_base["rss"]
    memory_met = added_rss <= TARGET_RSS_MB and not failures
    met = scrape["p99_ms"] <= TARGET_SCRAPE_MS and memory_met
    typical_met = max(scrape["p50_ms"], cpu * 1000) <= TARGET_SCRAPE_MS and memory_met
    partly = "partly: p50, CPU and memory met; p99 is the machine's" if typical_met and not met else None
    headline = (f"scrape p50 {scrape['p50_ms']} ms, p99 {scrape['p99_ms']} ms (/healthz p99 {health['p99_ms']} ms), "
                f"bot CPU {cpu * 1000:.2f} ms per scrape at {seen_players:.0f} players ({len(text) / 1024:.1f} KB, "
                f"{series} samples); metrics add {added_rss:+.1f} MB RSS ({added_uss:+.1f} MB USS) per bot")
    notes = [
        f"{players} guilds; the 3 bots play in each ({players} players per bot, {queued} queued behind each song: "
        f"musicbot_queued_tracks {seen_queued:.0f}); {(1 + queued) * players * 3} /play in {play_s:.1f} s.",
        f"{scrapes} scrapes of /metrics in a row over one keep-alive connection, from a process of its own (as "
        f"Prometheus): round trip p50 {scrape['p50_ms']} ms, p99 {scrape['p99_ms']} ms, max "
        f"{scrape['max_ms']} ms; the bot's own CPU per scrape {cpu * 1000:.2f} ms. /healthz: p50 {health['p50_ms']} ms,"
        f" p99 {health['p99_ms']} ms.",
        f"Memory after the scrapes (RSS / USS MB): with METRICS_PORT {mem_on['rss']} / {mem_on['uss']}; without "
        f"METRICS_PORT {mem_off['rss']} / {mem_off['uss']} ({idle_rss:+.1f} MB RSS: prometheus_client is imported "
        f"and counts even when nobody scrapes); no metrics at all {mem_base['rss']} / {mem_base['uss']}.",
    ]
    if failures:
        notes.append(f"{len(failures)} /play failed: {failures[:3]}")
    return Result(NAME, TITLE, headline, f"scrape <= {TARGET_SCRAPE_MS:g} ms at {players} players; "
                  f"<= {TARGET_RSS_MB:g} MB RSS per bot", met,
                  {"players": players, "queued_per_player": queued, "scrapes": scrapes, "scrape": scrape,
                   "healthz": health, "bot_cpu_ms_per_scrape": round(cpu * 1000, 3), "bytes": len(text),
                   "samples": series, "seen_players": seen_players, "seen_queued": seen_queued,
                   "memory_with": mem_on, "memory_without": mem_off, "memory_baseline": mem_base,
                   "idle_rss_mb": round(idle_rss, 1), "added_rss_mb": round(added_rss, 1),
                   "added_uss_mb": round(added_uss, 1), "play_failures": failures}, notes, status=partly)
