"""7. Snapshot cost: 100 playing guilds x 500 queued tracks, CPU and event-loop stalls spent on snapshots.

In-process, not a fleet: the Persistence cog (commands/persistence.py: the real sampler, writer thread and
files) runs on this benchmark's event loop over real MusicPlayer objects holding real wavelink.Playable
tracks (the sandbox catalogue's encoded blobs), attached to an offline wavelink node that answers every
player request at once (tests/offline_player.py). Nothing else of a bot runs, so every CPU second and every
stall measured here is the snapshots' own. 100 bots' worth of Discord and Lavalink traffic would drown the
figure in noise on 2 cores, and it does not depend on them.

The simulation is the same in every phase: Lavalink's playerUpdate every 0.5 s for each player (agreeing
with the clock), and songs ending (the next queued one plays, one more is queued: the queue stays full)
at CHANGES_PER_S over the whole fleet, ~4x what 100 guilds of 3.5-minute songs produce. Phases:
- baseline: the simulation alone, no snapshots (the probe's floor; once before, once after the rest);
- steady: the sampler on (after the first 100 snapshots are written);
- burst: every guild changes at once, so one sampler pass captures them all (the worst stall);
- previous design (for comparison): every player fingerprinted by its queue's encoded tracks twice a
  second, and every playing one rewritten every second, on the event loop.
CPU is thread CPU time inside the sampler's passes (event loop) plus inside the writer thread's jobs. The
stall is bounded by the longest sampler pass (it runs on the loop) and by the most CPU one writer job spent
computing (the writer shares the GIL and holds it while it builds the track payloads and encodes the JSON;
it lets go for the disk write and fsync): the worst build plus the worst encode. A 1 ms sleep probe's worst lateness is reported beside it (noisy on a shared machine).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import Options, Result, Workdir

NAME = "snapshots"
TITLE = "Snapshot cost"
CHANGES_PER_S = 2.0
UPDATE_EVERY = 0.5


@dataclass
class Meter:
    """CPU seconds spent inside wrapped calls, the longest single call (wall, ms) and the most CPU one took."""

    cpu_s: float = 0.0
    calls: int = 0
    longest_ms: float = 0.0
    most_cpu_ms: float = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def measured(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                used = time.thread_time() - cpu
                self.cpu_s += used
                self.most_cpu_ms = max(self.most_cpu_ms, used * 1000)
                self.longest_ms = max(self.longest_ms, (time.perf_counter() - wall) * 1000)
                self.calls += 1
        return measured

    def reset(self) -> None:
        self.cpu_s, self.calls, self.longest_ms, self.most_cpu_ms = 0.0, 0, 0.0, 0.0


async def probe_lag(stop: asyncio.Event) -> float:
    """Worst lateness (ms) of a 1 ms sleep until `stop`: how long the loop was kept from running a ready task."""
    worst = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, (time.perf_counter() - started) * 1000 - 1.0)
    return worst


class Fleet:
    """The simulated players: songs end at a steady rate, Lavalink reports positions every 0.5 s."""

    def __init__(self, players: list[Any], pool: list[Any]) -> None:
        self.players = players
        self.pool = pool
        self.turn = 0
        self.changes = 0

    async def change_one(self) -> None:
        player = self.players[self.turn % len(self.players)]
        self.turn += 1
        upcoming = player.queue.get()
        player.queue.put(self.pool[(self.turn * 13) % len(self.pool)])
        await player.play(upcoming)
        self.changes += 1

    async def change_all(self) -> None:
        for _ in self.players:
            await self.change_one()

    def report_positions(self) -> None:
        now = time.monotonic_ns()
        for player in self.players:
            player._last_position, player._last_update = player.position, now

    async def run(self, seconds: float, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_update, next_change = started + UPDATE_EVERY, started + 1 / CHANGES_PER_S
        while loop.time() - started < seconds:
            await asyncio.sleep(max(0.0, min(next_update, next_change) - loop.time()))
            if loop.time() >= next_update:
                self.report_positions()
                next_update += UPDATE_EVERY
            if loop.time() >= next_change:
                await self.change_one()
                next_change += 1 / CHANGES_PER_S
        stop.set()


async def phase(fleet: Fleet, seconds: float, meters: list[Meter]) -> dict[str, Any]:
    for meter in meters:
        meter.reset()
    stop = asyncio.Event()
    cpu, wall = time.process_time(), time.perf_counter()
    lag, _ = await asyncio.gather(probe_lag(stop), fleet.run(seconds, stop))
    return {"wall_s": time.perf_counter() - wall, "process_cpu_s": time.process_time() - cpu, "probe_lag_max_ms": lag}


def legacy_pass(players: list[Any], store: Any, write: bool) -> None:
    """The previous sampler's work: a fingerprint with every queued track's encoding; when playing, a rewrite
    (fresh payload dicts, dataclasses.asdict, one json.dumps) on the event loop."""
    from utils.snapshots import GuildSnapshot

    def payload(track: Any) -> dict[str, Any]:
        return {**track.raw_data, "userData": dict(track.extras)}

    for player in players:
        _ = (player.current.encoded if player.current else None, tuple(t.encoded for t in player.queue))
        if write:
            fields = dict(player.capture().keywords)
            current, queue, history = fields.pop("current"), fields.pop("queue"), fields.pop("history")
            snapshot = GuildSnapshot(current=payload(current), queue=[payload(t) for t in queue],
                                     history=[payload(t) for t in history], **fields)
            store.write(snapshot.guild_id, json.dumps(dataclasses.asdict(snapshot), separators=(",", ":")).encode())


async def run(opts: Options) -> Result:
    import utils.player
    from commands.persistence import Persistence
    from tests.offline_player import offline_bot, offline_node, offline_player, playable

    guilds, queued, seconds, legacy_s = (5, 20, 2.0, 1.0) if opts.quick else (100, 500, 20.0, 5.0)
    with Workdir(NAME) as workdir:
        node = offline_node()
        pool = [playable(f"bench-song-{i}", length=210_000) for i in range(queued * 2)]
        players = []
        for g in range(guilds):
            player = offline_player(node, 10_000 + g)
            player.queue.put([pool[(g + i) % len(pool)] for i in range(queued)])
            player.queue.history.put(pool[:50])
            await player.play(pool[(g * 7) % len(pool)], start=g * 1000)
            players.append(player)
        fleet = Fleet(players, pool)

        baseline = await phase(fleet, seconds, [])

        cog = Persistence(offline_bot(node, workdir / "state"))
        sampler, writer, build, encode = Meter(), Meter(), Meter(), Meter()
        cog.save_all = sampler.wrap(cog.save_all)  # type: ignore[method-assign]
        cog.writer._do = writer.wrap(cog.writer._do)  # type: ignore[method-assign]
        # The writer's compute (GIL held): building the snapshot's track payloads, and encoding it as JSON.
        cog.store.encode = encode.wrap(cog.store.encode)  # type: ignore[method-assign]
        original_build = utils.player._build_snapshot
        utils.player._build_snapshot = build.wrap(original_build)
        started = time.perf_counter()
        await cog.cog_load()
        cog.save_all()  # the first pass, now (the sampler's own first pass may come a moment later)
        await asyncio.get_running_loop().run_in_executor(None, cog.writer.flush, 120.0)
        first = {"seconds": time.perf_counter() - started, "writes": cog.writer.writes,
                 "longest_pass_ms": sampler.longest_ms, "writer_cpu_s": writer.cpu_s}
        size = cog.store.path(players[0].guild.id).stat().st_size

        writes, changes = cog.writer.writes, fleet.changes
        steady = await phase(fleet, seconds, [sampler, writer, build, encode])
        steady.update(writes=cog.writer.writes - writes, changes=fleet.changes - changes, passes=sampler.calls,
                      sampler_cpu_s=sampler.cpu_s, writer_cpu_s=writer.cpu_s, longest_pass_ms=sampler.longest_ms,
                      writer_job_cpu_max_ms=writer.most_cpu_ms,
                      writer_compute_max_ms=build.most_cpu_ms + encode.most_cpu_ms)
        steady["cpu_pct_core"] = (sampler.cpu_s + writer.cpu_s) / steady["wall_s"] * 100

        for meter in (sampler, writer, build, encode):
            meter.reset()
        await asyncio.get_running_loop().run_in_executor(None, cog.writer.flush, 120.0)  # steady's last writes
        writes = cog.writer.writes
        await fleet.change_all()
        burst_started = time.perf_counter()
        cog.save_all()
        burst = {"guilds": guilds, "pass_ms": sampler.longest_ms}
        await asyncio.get_running_loop().run_in_executor(None, cog.writer.flush, 120.0)
        burst.update(on_disk_s=time.perf_counter() - burst_started, writes=cog.writer.writes - writes,
                     writer_job_cpu_max_ms=writer.most_cpu_ms,
                     writer_compute_max_ms=build.most_cpu_ms + encode.most_cpu_ms)
        utils.player._build_snapshot = original_build
        await cog.cog_unload()

        legacy = Meter()
        tick = legacy.wrap(legacy_pass)
        stop = asyncio.Event()

        async def legacy_sampler() -> None:
            n = 0
            while not stop.is_set():
                tick(players, cog.store, write=n % 2 == 1)
                n += 1
                await asyncio.sleep(0.5)

        task = asyncio.create_task(legacy_sampler())
        legacy_phase = await phase(fleet, legacy_s, [])
        stop.set()
        await task
        after = await phase(fleet, seconds, [])
        base_cpu_s = (baseline["process_cpu_s"] + after["process_cpu_s"]) / 2
        steady["process_cpu_pct_over_baseline"] = (steady["process_cpu_s"] - base_cpu_s) / steady["wall_s"] * 100
        baseline["after"] = after
        legacy_result = {"cpu_pct_core": legacy.cpu_s / legacy_phase["wall_s"] * 100,
                         "longest_pass_ms": legacy.longest_ms, "probe_lag_max_ms": legacy_phase["probe_lag_max_ms"]}
        await node._session.close()

    cpu_pct = steady["cpu_pct_core"]
    compute = max(steady["writer_compute_max_ms"], burst["writer_compute_max_ms"])
    stall = max(steady["longest_pass_ms"], burst["pass_ms"], compute)
    met = cpu_pct < 1.0 and stall <= 5.0
    headline = (f"{guilds} guilds x {queued} queued: {cpu_pct:.2f}% of a core in steady play "
                f"({steady['writes']} writes for {steady['changes']} song changes in {steady['wall_s']:.0f} s); "
                f"longest stall <= {stall:.1f} ms (sampler pass {steady['longest_pass_ms']:.2f} ms, "
                f"{burst['pass_ms']:.2f} ms when all {guilds} change at once; writer holds the GIL <= {compute:.1f} ms); "
                f"previous design {legacy_result['cpu_pct_core']:.1f}% of a core, "
                f"{legacy_result['longest_pass_ms']:.0f} ms passes")
    notes = [
        f"In-process: the real Persistence cog over {guilds} real MusicPlayers with {queued} real queued "
        f"wavelink.Playables each, on an offline node (no network: see the module docstring). Songs changed "
        f"{CHANGES_PER_S:.0f}/s over the fleet, playerUpdates every {UPDATE_EVERY} s.",
        f"First snapshots: {first['writes']} files of {size / 1024:.0f} KiB on disk in {first['seconds']:.2f} s "
        f"(writer thread CPU {first['writer_cpu_s']:.2f} s).",
        f"Steady: sampler CPU {steady['sampler_cpu_s'] * 1000:.0f} ms over {steady['passes']} passes on the event "
        f"loop, writer thread {steady['writer_cpu_s'] * 1000:.0f} ms (of which a job's build + encode, the part "
        f"that holds the GIL, took at most {steady['writer_compute_max_ms']:.1f} ms); whole-process CPU vs the same simulation without "
        f"snapshots (before and after) {steady['process_cpu_pct_over_baseline']:+.2f}% of a core (noisy: "
        f"{baseline['process_cpu_s']:.2f} s and {baseline['after']['process_cpu_s']:.2f} s of CPU without, "
        f"{steady['process_cpu_s']:.2f} s with).",
        f"Loop probe (1 ms sleep, worst lateness): {steady['probe_lag_max_ms']:.2f} ms with snapshots vs "
        f"{baseline['probe_lag_max_ms']:.2f} ms without (the machine's own noise is in both). The writer thread "
        f"shares the GIL while it builds and encodes a snapshot; it releases it for the disk write and fsync.",
        f"Burst: all {guilds} guilds changed at once: one pass {burst['pass_ms']:.2f} ms, all {burst['writes']} on "
        f"disk {burst['on_disk_s']:.2f} s later.",
        f"Previous design (fingerprint of every queued track twice a second, every playing guild rewritten every "
        f"second, on the loop), {legacy_s:.0f} s: {legacy_result['cpu_pct_core']:.1f}% of a core, passes up to "
        f"{legacy_result['longest_pass_ms']:.0f} ms, probe lag {legacy_result['probe_lag_max_ms']:.0f} ms.",
    ]
    details = {"guilds": guilds, "queued": queued, "changes_per_s": CHANGES_PER_S, "snapshot_bytes": size,
               "baseline": baseline, "first": first, "steady": steady, "burst": burst, "previous": legacy_result}
    return Result(NAME, TITLE, headline, "< 1% of a core; longest stall <= 5 ms", met,
                  json.loads(json.dumps(details, default=float)), notes)
