"""5. 429 storm: interaction callbacks, answer edits, follow-ups and panel messages rate-limited for 10 s.

N playing bots get /play, /queue and panel presses at a steady rate, first in calm weather (the baseline),
then during a storm in which every request to those routes is refused with a 429 twice in a row before one
attempt goes through (tests/faults/helpers.RateLimitStorm). Counted: interactions sent / answered / answered
late (after Discord's 3 s deadline) / failed, songs asked for vs songs in the queues afterwards, 429s served,
processes alive, and the latency of the first answer in calm weather vs in the storm.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import time

from benchmarks.common import Options, Result, Workdir, summarize_ms
from benchmarks.latency import prepare
from sandbox.control import Sandbox
from tests.e2e.fleet import start_fleet
from tests.faults.helpers import RateLimitStorm
from utils.replies import GENERIC_FAILURE

NAME = "storm_429"
TITLE = "429 storm"


async def traffic(scene, panels, count: int, rate: float, seconds: float, tag: str) -> dict:
    discord = scene.fleet.discord
    first = len(discord.interactions)
    plan = itertools.cycle([(k, kind) for kind in ("play", "queue", "button") for k in range(1, count + 1)])
    tasks, kinds, bots = [], [], []
    started = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        k, kind = next(plan)
        if kind == "play":
            coro = scene.cmd(k, f"m{k}", "play", query=f"https://music.example/track/{tag}-{i}?length=600000",
                             timeout=30)
        elif kind == "queue":
            coro = scene.cmd(k, f"m{k}", "queue", timeout=30)
        else:
            coro = scene.press(k, f"m{k}", panels[k], "panel:pause", timeout=30)
        tasks.append(asyncio.create_task(coro))
        kinds.append(kind)
        bots.append(k)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    records = discord.interactions[first:first + len(tasks)]
    unanswered = [kind for kind, r in zip(kinds, results) if isinstance(r, BaseException)]
    generic = [kind for kind, r in zip(kinds, results) if not isinstance(r, BaseException)
               and GENERIC_FAILURE in (r.content or "")]
    late = [kind for kind, rec in zip(kinds, records) if 10062 in rec.callback_attempts]
    queued = collections.Counter(k for k, kind, r in zip(bots, kinds, results) if kind == "play"
                                 and not isinstance(r, BaseException) and (r.content or "").startswith("Queued"))
    latencies = [rec.callback_at - rec.dispatched_at for rec in records if rec.callback_at is not None]
    return {"sent": len(tasks), "answered": len(tasks) - len(unanswered), "unanswered": len(unanswered),
            "late": len(late), "generic_failures": len(generic), "queued_per_bot": dict(queued),
            "first_answer": summarize_ms(latencies)}


async def queue_sizes(scene, count: int) -> dict[int, int]:
    sizes = {}
    for k in range(1, count + 1):
        result = await scene.cmd(k, f"m{k}", "queue")
        footer = (result.embeds[0].get("footer") or {}).get("text", "") if result.embeds else ""
        match = re.search(r"(\d+) tracks?", footer)
        sizes[k] = int(match.group(1)) if match else 0
    return sizes


async def run(opts: Options) -> Result:
    count = 2 if opts.quick else 4
    storm_s = 3.0 if opts.quick else 10.0
    rate = 8.0
    async with Sandbox(player_update_interval=1.0) as sandbox:
        with Workdir("storm") as workdir:
            fleet = await start_fleet(sandbox, count, workdir / "logs", STATE_DIR=str(workdir / "state"))
            try:
                scene, panels = await prepare(fleet, count)
                calm = await traffic(scene, panels, count, rate, 3.0, "calm")
                before = await queue_sizes(scene, count)
                async with RateLimitStorm(sandbox.discord, seconds=storm_s, streak=2, retry_after=0.3) as storm:
                    stormy = await traffic(scene, panels, count, rate, storm_s, "storm")
                    await storm.wait()
                    served = storm.served()
                await asyncio.sleep(1.0)
                after = await queue_sizes(scene, count)
                alive = all(bot.process.returncode is None for bot in fleet.bots)
                by_route = collections.Counter(
                    re.sub(r"\d+|/[A-Za-z0-9_-]{20,}", "", r.path) for r in sandbox.discord.requests
                    if r.status == 429 and storm.started_at <= r.at <= (storm.ended_at or time.monotonic()))
            finally:
                await fleet.stop()

    asked = sum(stormy["queued_per_bot"].values())
    grown = sum(after[k] - before[k] for k in after)
    lost = asked - grown
    met = (stormy["unanswered"] == 0 and stormy["late"] == 0 and stormy["generic_failures"] == 0 and lost == 0
           and alive)
    headline = (f"{stormy['answered']}/{stormy['sent']} answered during a {storm_s:.0f} s storm ({served} 429s), "
                f"{stormy['late']} late, {lost} songs lost, {'no crash' if alive else 'A BOT DIED'}; "
                f"first answer p99 {stormy['first_answer'].get('p99_ms', 0):.0f} ms vs "
                f"{calm['first_answer'].get('p99_ms', 0):.0f} ms calm")
    notes = [
        f"{count} bots, {rate:.0f} interactions/s (/play, /queue, panel button). Storm: each request to the "
        f"interaction callback, original-answer edit/delete, follow-up and channel message (panel) routes is "
        f"refused twice with retry_after 0.3 s, then one attempt passes. 429s by route: {dict(by_route)}.",
        f"Songs: {asked} /play answered 'Queued' during the storm, queues grew by {grown}.",
        "A harsher storm that refuses the same request 5 times in a row makes discord.py give up (5 attempts), "
        "and the interaction stays unanswered: the bot cannot answer once the callback itself failed.",
    ]
    return Result(NAME, TITLE, headline, "every interaction answered, nothing lost, no crash", met,
                  {"bots": count, "storm_s": storm_s, "rate_per_s": rate, "calm": calm, "storm": stormy,
                   "served_429": served, "429_by_route": dict(by_route), "queue_before": before,
                   "queue_after": after, "songs_asked": asked, "songs_lost": lost, "alive": alive}, notes)
