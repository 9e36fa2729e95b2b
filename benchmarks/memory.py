"""2. Memory per bot after READY in G guilds x M members (4 voice channels each), players active in P guilds.

Four processes in one sandbox, all members of every guild: two bot.py (our settings), the same bot with
discord.py's default client settings, and the same with the members intent (member cache + chunking).
Compared with a process that only imported discord and wavelink (the floor). RSS, USS and PSS from
psutil's memory_full_info, each after on_ready (after chunking, where there is chunking) and after every
player started.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import (
    Options, Processes, Result, Workdir, bot_env, floor_memory, mean_memory, memory_of, wait_ready_times,
)
from sandbox.control import Sandbox
from tests.helpers import register_commands

NAME = "memory"
TITLE = "Memory per bot"
TARGET_FLOOR_RATIO = 1.25
GUILD_MEMBERS_INTENT = 1 << 1


def build_world(sandbox: Sandbox, apps, guilds: int, members: int) -> dict:
    """G guilds, each with #general, 4 voice channels and M human members; every app is in every guild."""
    d = sandbox.discord
    world = []
    started = time.monotonic()
    for g in range(guilds):
        guild = d.create_guild(f"Bench Guild {g + 1}")
        text = d.create_text_channel(guild.id, "general")
        voices = [d.create_voice_channel(guild.id, f"Voice {v + 1}").id for v in range(4)]
        people = [d.add_member(guild.id, f"user{g}-{m}").id for m in range(members)]
        world.append({"guild_id": guild.id, "text_id": text.id, "voice_ids": voices, "member_ids": people})
    built = time.monotonic() - started
    return {"guilds": world, "create_s": built}


async def add_apps(sandbox: Sandbox, apps, world) -> float:
    started = time.monotonic()
    for guild in world["guilds"]:
        for app in apps:
            await sandbox.discord.add_bot_to_guild(app, guild["guild_id"])
    return time.monotonic() - started


async def start_players(sandbox: Sandbox, apps, world, players: int) -> list[str]:
    """Bot k plays in voice channel k of the first `players` guilds, for member k of that guild."""
    d = sandbox.discord
    failures: list[str] = []
    semaphore = asyncio.Semaphore(6)

    async def one(k: int, app, guild) -> None:
        async with semaphore:
            member = guild["member_ids"][k]
            await d.move_member(guild["guild_id"], member, guild["voice_ids"][k])
            try:
                result = await d.invoke(app, guild_id=guild["guild_id"], channel_id=guild["text_id"],
                                        user_id=member, command="play", timeout=15,
                                        options={"query": f"https://music.example/track/mem-{k}?length=900000"})
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures.append(f"{app.name}: {type(exc).__name__}: {exc}")
                return
            if "Now playing" not in (result.content or ""):
                failures.append(f"{app.name}: {result.content}")

    await asyncio.gather(*(one(k, app, guild) for k, app in enumerate(apps) for guild in world["guilds"][:players]))
    return failures


async def chatter(sandbox: Sandbox, world, per_guild: int) -> int:
    """Members talk in #general (a live server): bots with the message intents receive and cache it."""
    state, gateway = sandbox.discord.state, sandbox.discord.gateway
    sent = 0
    for i in range(per_guild):
        for guild in world["guilds"]:
            author = state.users[guild["member_ids"][(i * 7) % len(guild["member_ids"])]]
            message = state.build_message(guild["text_id"], author, {"content": f"chat line {i} " + "words " * 12})
            state.store_message(message)
            gateway.dispatch_message_create(message)
            sent += 1
        await asyncio.sleep(0.05)
    return sent


async def run(opts: Options) -> Result:
    guilds, members, players = (30, 50, 5) if opts.quick else (100, 100, 10)
    async with Sandbox(player_update_interval=5.0) as sandbox, Processes() as procs:
        with Workdir("memory") as workdir:
            apps = sandbox.add_bots(3)  # 1, 2: ours; 3: discord.py defaults
            members_app = sandbox.discord.add_bot("Music 4", privileged_intents=GUILD_MEMBERS_INTENT)
            sandbox.apps.append(members_app)
            apps.append(members_app)
            world = build_world(sandbox, apps, guilds, members)
            world["join_s"] = await add_apps(sandbox, apps, world)
            env = bot_env(sandbox, apps, workdir)
            floor = await floor_memory(procs)

            started = time.monotonic()
            bots = [await procs.bot(1, env, workdir / "logs"), await procs.bot(2, env, workdir / "logs")]
            for variant, number in (("defaults", 3), ("members", 4)):
                bots.append(await procs.script(["-m", "benchmarks.defaults_bot", "--variant", variant, "--bot",
                                                str(number), "--env-file", "/dev/null"],
                                               {**env}, name=f"bot {number} ({variant})"))
            ready = await wait_ready_times(sandbox, apps, started, timeout=180)
            await register_commands(sandbox.bot_env(apps))  # the sandbox invokes only registered commands
            failures = await start_players(sandbox, apps, world, players)
            chat = await chatter(sandbox, world, per_guild=10)
            # on_ready of every bot (after chunking for the members variant): the caches are full.
            for bot in bots:
                await bot.wait_for_line(r"ready as", timeout=120)
            gateway_waits = [line for bot in bots for line in bot.lines if "is ratelimited, waiting" in line]
            await asyncio.sleep(2.0)
            samples = [memory_of(bot.pid) for bot in bots]
            await asyncio.sleep(1.0)
            samples2 = [memory_of(bot.pid) for bot in bots]
            mem = [mean_memory([a, b]) for a, b in zip(samples, samples2)]

    ours = mean_memory(mem[:2])
    defaults, members_variant = mem[2], mem[3]
    ratio_floor = ours["rss"] / floor["rss"]
    vs_defaults = 1 - ours["rss"] / defaults["rss"]
    vs_members = 1 - ours["rss"] / members_variant["rss"]
    # "Well below the defaults": at least 10% less RSS than each of them.
    floor_met, below_met = ratio_floor <= TARGET_FLOOR_RATIO, min(vs_defaults, vs_members) >= 0.10
    ours_failed = [f for f in failures if f.startswith(("Music 1:", "Music 2:"))]
    met = floor_met and below_met and not ours_failed
    headline = (f"ours {ours['rss']:.1f} MB RSS = {ratio_floor:.2f}x floor ({floor['rss']:.1f} MB); "
                f"{vs_defaults:.0%} below discord.py defaults ({defaults['rss']:.1f} MB), {vs_members:.0%} below "
                f"defaults + members intent ({members_variant['rss']:.1f} MB)")
    table = [
        "| process | RSS MB | USS MB | PSS MB | RSS vs floor |",
        "|---|---|---|---|---|",
        f"| import floor (`import discord, wavelink`) | {floor['rss']} | {floor['uss']} | {floor['pss']} | 1.00x |",
    ]
    for label, m in (("bot.py, our settings (mean of 2)", ours), ("discord.py defaults", defaults),
                     ("defaults + members intent, chunking", members_variant)):
        table.append(f"| {label} | {m['rss']} | {m['uss']} | {m['pss']} | {m['rss'] / floor['rss']:.2f}x |")
    notes = [
        f"{guilds} guilds x {members} members, 4 voice channels each, a player in {players} guilds per bot; "
        f"world built in {world['create_s']:.2f} s ({guilds * members / max(world['create_s'], 1e-9):,.0f} "
        f"members/s), bots added to every guild in {world['join_s']:.2f} s; all 4 bots READY after "
        f"{max(ready['gateway']):.1f} s; then {chat} chat messages (10 per guild) were posted.",
        f"USS (memory only this process holds) ours {ours['uss']} MB vs defaults {defaults['uss']} MB vs members "
        f"{members_variant['uss']} MB: the figure that grows with every bot added.",
    ]
    if not below_met:
        notes.append(f"'Well below the defaults' (>= 10% less) is {'met' if vs_members >= 0.10 else 'missed'} against "
                     f"the members-intent template ({vs_members:.0%}) and missed against plain defaults "
                     f"({vs_defaults:.0%}): without privileged intents discord.py caches little (no member list, "
                     f"a 1000-message cache that chat fills slowly); the difference is in the members intent.")
    if gateway_waits:
        notes.append(f"The members-intent bot chunks every guild at start-up: {guilds} REQUEST_GUILD_MEMBERS plus "
                     f"its voice joins exceed discord.py's gateway send budget (110 commands per 60 s, under "
                     f"Discord's 120), so its voice joins waited behind them "
                     f"('{gateway_waits[0].split(': ', 1)[-1][:70]}'): {len(failures)} of its /play timed out. "
                     f"Another reason not to chunk.")
    if ours_failed:
        notes.append(f"our bots failed {len(ours_failed)} /play: {ours_failed[:3]}")
    elif failures and not gateway_waits:
        notes.append(f"{len(failures)} /play failed while starting players: {failures[:3]}")
    if ratio_floor > TARGET_FLOOR_RATIO:
        notes.append(f"RSS target missed by {(ratio_floor / TARGET_FLOOR_RATIO - 1):.0%}: beyond the imports a bot "
                     f"holds its cogs, aiohttp sessions (gateway, REST, Lavalink), the guild/channel cache of "
                     f"{guilds} guilds and its players.")
    partly = "partly: floor met" if floor_met and not below_met and not ours_failed else None
    return Result(NAME, TITLE, headline, f"<= {TARGET_FLOOR_RATIO}x floor RSS, well below defaults", met,
                  {"floor": floor, "ours": ours, "ours_each": mem[:2], "defaults": defaults,
                   "members_intent": members_variant, "ratio_floor_rss": round(ratio_floor, 3),
                   "world": {k: v for k, v in world.items() if k != "guilds"}, "guilds": guilds, "members": members,
                   "players_per_bot": players, "chat_messages": chat, "gateway_rate_limited": gateway_waits[:4],
                   "below_defaults": round(vs_defaults, 3), "below_members_intent": round(vs_members, 3), "ready_s": ready, "play_failures": failures, "tables": [table]},
                  notes, status=partly)
