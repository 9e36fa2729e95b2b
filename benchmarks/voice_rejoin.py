"""8. Voice rejoin: a playing bot's voice connection drops; how soon does its song play again, in the same channel?

Issue 11's target: a drop -> playing again in the same channel within 2 s on the first try. One real bot with the
production settings (rejoin delays 1, 5, 15 s; Lavalink's playerUpdate every 5 s), a fresh guild and /play for
every drop, three kinds of drop in turn: the node reports 4006 (Discord invalidated the voice session), 1006 (the
connection died), or Discord clears the bot's voice state with no moderator (and the node reports 1006).
"Playing again" is measured at the emulated Lavalink: from the fault until the node's player is connected with
voice credentials Discord issued after the fault, in the same channel, and its position moves. Beside it: when
the bot sent its op 4 (the rejoin delay) and how long the rejoin itself took from there; and what the text channel
heard (a first-try rejoin must be silent).
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import Options, Processes, Result, Workdir, bot_env, percentile, wait_ready_times
from sandbox.control import Sandbox
from tests.e2e.fleet import PRODUCTION_PLAYER_UPDATE_INTERVAL, Fleet

NAME = "voice_rejoin"
TITLE = "Voice rejoin"
TARGET_S = 2.0  # a drop -> playing again in the same channel, first try (issue 11)
FIRST_DELAY_S = 1.0  # the production first rejoin delay (for a vanished voice state: the wait for a 4014)
KINDS = ("4006", "1006", "vanished")


def track_url(slug: str) -> str:
    return f"https://music.example/track/{slug}?length=3600000"


async def one_drop(fleet: Fleet, kind: str, n: int) -> dict[str, float | int | str]:
    sandbox = fleet.sandbox
    app = fleet.apps[0]
    scene = await fleet.scene()
    await scene.join("alice", "Lounge")
    answer = await scene.cmd(1, "alice", "play", query=track_url(f"rejoin-{kind}-{n}"))
    assert "Now playing" in (answer.content or ""), answer.content
    await scene.wait_player(1, lambda p: p["connected"] and p["position"] > 0, timeout=15)
    seen = max((int(m["id"]) for m in scene.messages()), default=0)
    ops = len(sandbox.discord.gateway.voice_ops.get(app.user_id, []))
    lounge = scene.voice("Lounge")
    old_token = (sandbox.discord.voice_server(app, scene.guild_id) or {}).get("token")

    t0 = time.monotonic()
    if kind == "vanished":
        sandbox.vanish_voice(app, scene.guild_id, close_code=1006)
    else:
        sandbox.drop_voice(app, scene.guild_id, code=int(kind))
    op_at: float | None = None
    while True:  # a 1 ms poll (the sandbox shares this loop): it adds at most ~1 ms to a figure of ~1 s
        now = time.monotonic()
        if now - t0 > 30:
            raise TimeoutError(f"{kind}: not playing again within 30 s")
        if op_at is None and len(sandbox.discord.gateway.voice_ops.get(app.user_id, [])) > ops:
            op_at = now
        player = scene.player(1)
        issued = sandbox.discord.voice_server(app, scene.guild_id)
        if (player is not None and player["connected"] and issued is not None and issued["token"] != old_token
                and player["voice"].get("token") == issued["token"] and scene.bot_voice_channel(1) == lounge):
            back_at, position = now, player["position"]
            break
        await asyncio.sleep(0.001)
    await scene.wait_player(1, lambda p: p["position"] > position, timeout=10)  # and the song moves on
    said = [m["content"] for m in scene.messages() if int(m["id"]) > seen and m.get("content")]
    new_ops = sandbox.discord.gateway.voice_ops.get(app.user_id, [])[ops:]
    await scene.cmd(1, "alice", "disconnect")  # one player at a time
    return {"kind": kind, "back_s": back_at - t0, "op_s": (op_at or back_at) - t0,
            "beyond_delay_s": back_at - t0 - FIRST_DELAY_S, "tries": len([o for o in new_ops if o.get("channel_id")]),
            "messages": len(said)}


async def run(opts: Options) -> Result:
    rounds = 1 if opts.quick else 4
    with Workdir("voice") as workdir:
        async with Sandbox(player_update_interval=PRODUCTION_PLAYER_UPDATE_INTERVAL) as sandbox, \
                Processes() as procs:
            apps = sandbox.add_bots(1)
            env = bot_env(sandbox, apps, workdir)  # production rejoin delays: no VOICE_REJOIN_DELAYS
            fleet = Fleet(sandbox, apps, [], workdir / "logs")
            registration = asyncio.create_task(fleet.register())
            fleet.bots.append(await procs.bot(1, env, workdir / "logs"))
            await registration
            await wait_ready_times(sandbox, apps, time.monotonic(), timeout=60)
            drops = [await one_drop(fleet, kind, n) for n in range(rounds) for kind in KINDS]

    backs = [float(d["back_s"]) for d in drops]
    worst = max(backs)
    by_kind = {k: [d for d in drops if d["kind"] == k] for k in KINDS}
    first_try = all(d["tries"] == 1 for d in drops)
    silent = all(d["messages"] == 0 for d in drops)
    met = worst <= TARGET_S and first_try and silent
    p50 = percentile(backs, 50)
    beyond_ms = [float(d["beyond_delay_s"]) * 1000 for d in drops]
    headline = (f"drop to playing again p50 {p50:.2f} s, worst {worst:.2f} s over {len(drops)} drops "
                f"(4006, 1006, voice state vanished): first try after 1 s, the rejoin itself "
                f"p50 {percentile(beyond_ms, 50):.0f} ms, max {max(beyond_ms):.0f} ms; "
                f"{'silent' if silent else 'NOT silent'}")
    table = ["| drop | n | back p50 s | back max s | op 4 sent p50 s | beyond the 1 s delay p50 / max ms | tries "
             "| messages |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, rows in by_kind.items():
        table.append(
            f"| {kind} | {len(rows)} | {percentile([float(r['back_s']) for r in rows], 50):.2f} | "
            f"{max(float(r['back_s']) for r in rows):.2f} | {percentile([float(r['op_s']) for r in rows], 50):.2f} | "
            f"{percentile([float(r['beyond_delay_s']) * 1000 for r in rows], 50):.0f} / "
            f"{max(float(r['beyond_delay_s']) * 1000 for r in rows):.0f} | "
            f"{sorted({int(r['tries']) for r in rows})} | {sum(int(r['messages']) for r in rows)} |")
    notes = [
        "1 bot with production settings (rejoin delays 1, 5, 15 s; playerUpdate every 5 s), a fresh guild and /play "
        "per drop. Back = the node's player connected with the voice credentials Discord issued after the fault, "
        "the bot in the same channel, and the position moving on.",
        "The first try waits 1 s on purpose: a node that gets its connection back by itself (or a 4014 that turns a "
        "vanished voice state into a kick) is seen first; for a vanished state that second is the wait for a 4014. "
        "The rejoin after it (op 4, VOICE_STATE_UPDATE + VOICE_SERVER_UPDATE, the voice PATCH) is the rest.",
        "Against real Discord the rejoin adds the gateway and voice-server round trips (tens to a few hundred ms); "
        "1 s + that stays under 2 s, so the first delay stays 1 s.",
    ]
    details = {"drops": drops, "target_s": TARGET_S, "tables": [table]}
    return Result(NAME, TITLE, headline, f"playing again in the same channel <= {TARGET_S:.0f} s on the first try, "
                  "no message", met, details, notes)
