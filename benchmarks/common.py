"""What every benchmark shares: results, percentiles, process memory, the import floor, and fleets.

Every figure a benchmark reports is a ratio or a comparison measured in the same run (the machines are
noisy, other work runs beside us); the absolute numbers are kept beside it. Every process a benchmark
starts is stopped by it, whatever happens (`Processes`).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from sandbox.control import Sandbox
from tests.faults.helpers import manager_children, start_manager, stop_manager
from tests.helpers import ROOT, Proc, clean_env, start_bot
from utils.ksm import KSM_SYSFS

PYTHON = sys.executable
MiB = 2**20
FLOOR_SNIPPET = "import discord, wavelink"


@dataclass
class Result:
    """One benchmark's outcome: a headline for the table, the target, and every number measured."""

    name: str
    title: str
    headline: str  # e.g. "1.32x floor (2.9 s vs 2.2 s)"
    target: str  # e.g. "<= 1.5x floor"
    met: bool | None  # None: no single target (informational)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # how long the benchmark took
    status: str | None = None  # overrides met/MISSED in the table, e.g. "partly: floor met"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "headline": self.headline, "target": self.target,
                "met": self.met, "status": self.status, "details": self.details, "notes": self.notes, "seconds": round(self.seconds, 1)}


@dataclass
class Options:
    quick: bool = False
    soak_minutes: float | None = None  # benchmark 10's soak; None: its default (10, or 0.5 with --quick)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(round(pct / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def summarize_ms(seconds: Iterable[float]) -> dict[str, float]:
    values = [s * 1000 for s in seconds]
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 2), "p90_ms": round(percentile(values, 90), 2),
            "p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values), 2),
            "mean_ms": round(statistics.fmean(values), 2)}


def memory_of(pid: int) -> dict[str, float]:
    """RSS, USS and PSS of one process, in MiB (psutil memory_full_info)."""
    info = psutil.Process(pid).memory_full_info()
    return {"rss": round(info.rss / MiB, 1), "uss": round(info.uss / MiB, 1), "pss": round(getattr(info, "pss", 0) / MiB, 1)}


KSM_RUN = KSM_SYSFS / "run"


@contextmanager
def ksmd(on: bool) -> Iterator[bool]:
    """Run the block with the host's ksmd on (or off), as root can: yields whether it is so; restores it after.

    Only the processes that opted in (the fork server and its bots, utils/ksm.py) are scanned; the scan rate
    stays the kernel's (pages_to_scan, sleep_millisecs)."""
    try:
        before = KSM_RUN.read_text().strip()
    except OSError:
        yield False
        return
    wanted = "1" if on else "0"
    try:
        if before != wanted:
            KSM_RUN.write_text(wanted)
    except OSError:
        yield before == wanted
        return
    try:
        yield True
    finally:
        if before != wanted:
            try:
                KSM_RUN.write_text(before)
            except OSError:
                pass


def ksmd_settings() -> dict[str, int]:
    try:
        return {name: int((KSM_SYSFS / name).read_text()) for name in ("pages_to_scan", "sleep_millisecs")}
    except (OSError, ValueError):
        return {}


def ksmd_cpu_s() -> float | None:
    """CPU seconds the kernel's ksmd thread has used (what merging costs the host), or None."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "ksmd":
            times = proc.cpu_times()
            return times.user + times.system
    return None


def mean_memory(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.fmean(s[k] for s in samples), 1) for k in ("rss", "uss", "pss")} if samples else {}


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


# ---- processes ------------------------------------------------------------------------------------------------

class Processes:
    """Owns every process a benchmark starts; `close()` stops them all (bots, managers and their children)."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self.managers: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    async def bot(self, number: int, env: dict[str, str], log_dir: Path) -> Proc:
        return self.add(await start_bot(number, env, log_dir=log_dir))

    async def script(self, args: Sequence[str], env: dict[str, str], name: str) -> Proc:
        return self.add(await Proc.start([PYTHON, *args], env=clean_env(env), name=name))

    async def manager(self, env: dict[str, str], log_dir: Path, *args: str) -> Proc:
        manager = await start_manager(env, log_dir, *args)
        self.managers.append(manager)
        return manager

    async def stop_manager(self, manager: Proc) -> None:
        await stop_manager(manager)
        if manager in self.managers:
            self.managers.remove(manager)

    async def close(self) -> None:
        for manager in list(self.managers):
            try:
                await stop_manager(manager, timeout=15)
            except Exception:  # noqa: BLE001 - cleanup must go on
                await manager.kill()
        self.managers.clear()
        for proc in self.procs:
            proc.send_signal(15)
        for proc in self.procs:
            try:
                await proc.wait(5)
            except AssertionError:
                pass
            await proc.kill()
        self.procs.clear()

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def bot_pids(manager: Proc) -> dict[int, int]:
    """Bot number -> pid of the manager's live children."""
    found = {}
    for child in manager_children(manager):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--bot" in cmdline:
            found[int(cmdline[cmdline.index("--bot") + 1])] = child.pid
    return found


class Workdir:
    """A temporary directory for logs and state, removed afterwards."""

    def __init__(self, name: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        # Bots still stopping may write a last snapshot here after this point: remove it again at exit.
        atexit.register(shutil.rmtree, self.path, ignore_errors=True)


def bot_env(sandbox: Sandbox, apps: Sequence[Any], workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a fleet against `sandbox`: tokens, endpoints, logs and snapshots in `workdir`."""
    return {**sandbox.bot_env(apps), "LOG_DIR": str(workdir / "logs"), "STATE_DIR": str(workdir / "state"),
            "LOG_LEVEL": "INFO", **extra}


# ---- readiness --------------------------------------------------------------------------------------------------

async def wait_ready_times(sandbox: Sandbox, apps: Sequence[Any], started: float, timeout: float = 120.0,
                           lavalink: bool = True) -> dict[str, list[float]]:
    """Seconds from `started` until each app is READY at the gateway (identified, every GUILD_CREATE written)
    and, with `lavalink`, until its Lavalink session finished wavelink's start-up (it can play)."""
    gateway: dict[int, float] = {}
    audio: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(gateway) < len(apps) or (lavalink and len(audio) < len(apps)):
        now = time.monotonic()
        if now > deadline:
            missing = [a.name for i, a in enumerate(apps) if i not in gateway or (lavalink and i not in audio)]
            raise TimeoutError(f"not ready within {timeout} s: {missing}")
        ready_users = {s["user_id"] for s in sandbox.lavalink.sessions.values() if s["client_ready"]} if lavalink else set()
        for i, app in enumerate(apps):
            if i not in gateway and sandbox.discord.gateway.is_ready(app.user_id):
                gateway[i] = now - started
            if lavalink and i not in audio and app.user_id in ready_users:
                audio[i] = now - started
        await asyncio.sleep(0.01)
    return {"gateway": [gateway[i] for i in range(len(apps))],
            "lavalink": [audio[i] for i in range(len(apps))] if lavalink else []}


# ---- the import floor ---------------------------------------------------------------------------------------------

async def import_floor(count: int, parallel: int | None = None, repeat: int = 1) -> dict[str, float]:
    """Wall time of `count` x `python -c "import discord, wavelink"`, `parallel` at a time (default: the cores).

    The best of `repeat` rounds: the floor is what the machine can do, noise only ever adds to it.
    """
    parallel = parallel or os.cpu_count() or 1
    env = clean_env()
    best = float("inf")
    single = float("inf")
    for _ in range(repeat):
        semaphore = asyncio.Semaphore(parallel)
        durations: list[float] = []

        async def one() -> None:
            async with semaphore:
                t0 = time.monotonic()
                proc = await asyncio.create_subprocess_exec(PYTHON, "-c", FLOOR_SNIPPET, cwd=ROOT, env=env,
                                                            stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.DEVNULL)
                await proc.wait()
                durations.append(time.monotonic() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        best = min(best, time.monotonic() - t0)
        single = min(single, min(durations))
    return {"wall_s": round(best, 3), "single_s": round(single, 3), "count": count, "parallel": parallel}


async def floor_memory(procs: Processes) -> dict[str, float]:
    """RSS/USS/PSS of a process that did nothing but `import discord, wavelink` (the floor of a bot)."""
    code = f"{FLOOR_SNIPPET}; import signal; print('imported', flush=True); signal.pause()"
    proc = await procs.script(["-c", code], {}, name="import floor")
    await proc.wait_for_line("imported", timeout=60)
    await asyncio.sleep(0.3)
    return memory_of(proc.pid)
