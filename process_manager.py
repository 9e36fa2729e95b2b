"""Run the fleet: one `bot.py --bot n` process per BOT_TOKEN_n, forked from a preloaded fork server or exec'd.

The manager mirrors supervisord's process state machine (STOPPED, STARTING, RUNNING, BACKOFF, STOPPING,
EXITED, FATAL), prefixes every child line with `[Bot n]`, prints a status table, and stops the fleet
gracefully on SIGTERM/SIGINT, redeploys one bot at a time on SIGHUP. It imports no discord/wavelink code:
every megabyte held here is paid once more next to N bots. `supervisord.conf` runs the same contract
with one exec'd interpreter per bot.

Shape (honcho style): `BotProcess` (one child's life and state), `FleetManager` (owns the processes,
the signals and `tick(now)`), `Printer` (prefixes and colours). How a child is started sits behind one
seam, the `spawn` callable: `SubprocessSpawner` (--spawn exec) or utils/fork_spawn.py's
`ForkServerSpawner` (--spawn fork: bots forked from fork_server.py, reaped here as their subreaper).
Shared with register_commands.py: the `--bots` selection (utils/selection.py). `--check` lives in
utils/fleet_check.py and is imported only when asked for (urllib + ssl would add ~7 MB to every run).
"""

from __future__ import annotations

import argparse
import enum
import logging
import logging.handlers
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from utils.config import EX_CONFIG, ConfigError, discover_bot_indices, fleet_user_ids, metrics_port, read_token
from utils.health_probe import (Health, HealthWatcher, format_table, format_uptime, health_timeout, latency_cell,
                                probe_host, probe_interval, status_report)
from utils.process_group import signal_group
from utils.selection import SelectionError, bot_selection_arg, select_bots
from utils.token_env import bot_environment

log = logging.getLogger("process_manager")  # feeds logs/manager.log once main() adds a handler

HERE = Path(__file__).resolve().parent
DEFAULT_SPAWN = "fork"
POLL_INTERVAL = 0.1  # seconds between ticks of the run loop
EOF_GRACE = 1.0  # after a child exits, wait this long at most for the rest of its output
# The line a bot logs once it holds its gateway session (bot.py's on_ready, at any LOG_LEVEL; Lavalink is
# ready before it): from then on it answers slash commands. A redeploy (SIGHUP) restarts the next bot after it.
READY_LINE = re.compile(r" bot\.ready: ready as ")
REDEPLOY_TIMEOUT = 120.0  # a restarted bot not answering within this halts a redeploy


class ProcessState(enum.IntEnum):
    """supervisord's states and numbers (supervisor/states.py)."""

    STOPPED = 0
    STARTING = 10
    RUNNING = 20
    BACKOFF = 30
    STOPPING = 40
    EXITED = 100
    FATAL = 200


RUNNING_STATES = (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.BACKOFF)
STOPPED_STATES = (ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL)
_LIVE_STATES = (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING)  # a child exists


@dataclass(frozen=True)
class ProcessConfig:
    """Per-bot policy, named like supervisord's program options."""

    startsecs: float = 3.0  # uptime after which STARTING becomes RUNNING
    startretries: int = 5  # consecutive failures allowed before FATAL
    stopwaitsecs: float = 10.0  # SIGTERM -> SIGKILL grace
    backoff_cap: float = 60.0  # exponential backoff 1, 2, 4 ... s, capped here
    stablesecs: float = 60.0  # RUNNING this long resets the failure count and the backoff
    exitcodes: tuple[int, ...] = (0,)  # expected exits from RUNNING: not restarted (autorestart=unexpected)
    health_timeout: float = 0.0  # STARTING/RUNNING with no /healthz answer this long: SIGKILL, restart (0 = off)


class Child(Protocol):
    """A started child as the manager sees it; `poll()` reaps it and returns its status once it has exited."""

    pid: int

    def poll(self) -> int | None: ...

    def signal(self, sig: int) -> None: ...


Spawn = Callable[[int, Callable[[str], None]], Child]  # (bot index, one-line output callback) -> Child


def describe_exit(status: int | None) -> str:
    if status is None:
        return "spawn error"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit {status}"


format_duration = format_uptime


class BotProcess:
    """One bot's child and its supervisord-style state. Every state change goes through `_change_state`."""

    def __init__(self, index: int, config: ProcessConfig, spawn: Spawn,
                 notify: Callable[[str], None], output: Callable[[str], None]) -> None:
        self.index = index
        self.name = f"Bot {index}"
        self.config = config
        self.state = ProcessState.STOPPED
        self.child: Child | None = None
        self.pid: int | None = None
        self.laststart = 0.0
        self.backoff = 0  # consecutive failures since the last stable run
        self.immediate_first = False  # the streak began with a crash while RUNNING (restarted at once)
        self.delay = 0.0  # BACKOFF: earliest restart time
        self.exitstatus: int | None = None
        self.last_exit_at: float | None = None
        self.starts = 0
        self.restarts = 0
        self.autostart = True  # cleared by stop(): a stopped bot is never started again
        self.stop_deadline = 0.0
        self.killed = False
        self.health: Health | None = None  # the last /healthz answer of the current child, and when it came
        self.health_at: float | None = None
        self.silenced = False  # the current child is being killed for a silent /healthz
        self.exit_note = ""  # why the last child was killed, for LAST EXIT
        self.answering = False  # this start of the bot printed READY_LINE
        self._spawn, self._notify, self._output = spawn, notify, output

    def _change_state(self, new: ProcessState, detail: str = "") -> None:
        old, self.state = self.state, new
        self._notify(f"{self.name}: {old.name} -> {new.name}" + (f" ({detail})" if detail else ""))

    def _assert_in_state(self, *states: ProcessState) -> None:
        if self.state not in states:
            allowed = ", ".join(s.name for s in states)
            raise AssertionError(f"{self.name}: in state {self.state.name}, expected one of {allowed}")

    def wants_spawn(self, now: float) -> bool:
        """STOPPED (first start) or BACKOFF with the delay elapsed and retries left."""
        if self.state is ProcessState.STOPPED:
            return self.autostart
        return (self.state is ProcessState.BACKOFF and now >= self.delay
                and self.backoff <= self.config.startretries)

    def spawn(self, now: float) -> None:
        self._assert_in_state(ProcessState.STOPPED, ProcessState.BACKOFF, ProcessState.EXITED, ProcessState.FATAL)
        self.restarts += 1 if self.starts else 0
        self.starts += 1
        self.laststart, self.killed, self.answering = now, False, False
        self.health, self.health_at, self.silenced = None, None, False
        try:
            self.child = self._spawn(self.index, self._output)
        except OSError as exc:
            self._change_state(ProcessState.STARTING)
            self._notify(f"{self.name}: could not start: {exc}")
            self.exitstatus, self.last_exit_at, self.exit_note = None, now, ""
            self._enter_backoff(now, "spawn error")
            return
        self.pid = self.child.pid
        self._change_state(ProcessState.STARTING, f"pid {self.pid}")

    def stop(self, now: float) -> None:
        """SIGTERM the child (STARTING/RUNNING -> STOPPING); BACKOFF -> STOPPED at once."""
        self.autostart = False
        if self.state in (ProcessState.STARTING, ProcessState.RUNNING):
            assert self.child is not None
            self.child.signal(signal.SIGTERM)
            self.stop_deadline = now + self.config.stopwaitsecs
            self._change_state(ProcessState.STOPPING, f"SIGTERM sent to pid {self.pid}")
        elif self.state is ProcessState.BACKOFF:
            self._change_state(ProcessState.STOPPED, "stop requested during backoff")

    def restart(self, now: float) -> None:
        """Stop the child (SIGTERM, as stop()) and start it again once it has exited (a deploy)."""
        self.stop(now)
        self.autostart = True

    def kill(self, reason: str) -> None:
        """SIGKILL the child's process group (only while STOPPING)."""
        self._assert_in_state(ProcessState.STOPPING)
        if self.child is not None and not self.killed:
            self.killed = True
            self._notify(f"{self.name}: {reason}: SIGKILL to pid {self.pid}")
            self.child.signal(signal.SIGKILL)

    def saw_health(self, at: float, health: Health) -> None:
        """A /healthz answer received at `at`; answers from before the current child started are ignored."""
        if at >= self.laststart and (self.health_at is None or at >= self.health_at):
            self.health, self.health_at = health, at

    def silent_for(self, now: float) -> float:
        """Seconds since the current child last answered /healthz (since its start if it never did)."""
        return now - (self.health_at if self.health_at is not None else self.laststart)

    def _check_health(self, now: float) -> None:
        """A bot whose /healthz stays silent has a stuck event loop (or is stopped): from the outside that is a
        crash nobody else notices. SIGTERM would wait for that very loop, so SIGKILL; its exit restarts it."""
        timeout = self.config.health_timeout
        if timeout <= 0 or self.killed or self.child is None or self.state not in (ProcessState.STARTING,
                                                                                     ProcessState.RUNNING):
            return
        silent = self.silent_for(now)
        if silent >= timeout:
            self.killed, self.silenced = True, True
            self._notify(f"{self.name}: /healthz silent for {silent:.0f} s (HEALTH_TIMEOUT {timeout:g} s): "
                         f"SIGKILL to pid {self.pid}, restarting it")
            self.child.signal(signal.SIGKILL)

    def transition(self, now: float) -> None:
        """Take the transitions that are due at `now` (supervisord's `transition()`)."""
        if self.state in _LIVE_STATES and self.child is not None:
            status = self.child.poll()
            if status is not None:
                self._finish(status, now)
        self._check_health(now)
        cfg = self.config
        if self.state is ProcessState.STARTING and now - self.laststart >= cfg.startsecs:
            self._change_state(ProcessState.RUNNING, f"up for {cfg.startsecs:g} s")
        elif self.state is ProcessState.RUNNING and self.backoff and now - self.laststart >= cfg.stablesecs:
            self.backoff = 0
            self._notify(f"{self.name}: stable for {cfg.stablesecs:g} s, backoff reset")
        elif self.state is ProcessState.STOPPING and not self.killed and now >= self.stop_deadline:
            self.kill(f"still running {cfg.stopwaitsecs:g} s after SIGTERM")
        elif self.state is ProcessState.BACKOFF and self.backoff > cfg.startretries:
            self._change_state(ProcessState.FATAL, f"gave up after {self.backoff} consecutive failures")

    def _finish(self, status: int, now: float) -> None:
        """The child exited with `status` (negative: killed by that signal)."""
        uptime = now - self.laststart
        self.child, self.pid = None, None
        self.exitstatus, self.last_exit_at = status, now
        self.exit_note = " (/healthz silent)" if self.silenced else ""
        what = f"{describe_exit(status)} after {uptime:.1f} s"
        if self.state is ProcessState.STOPPING:
            self._change_state(ProcessState.STOPPED, what)
            return
        if self.state is ProcessState.STARTING and uptime >= self.config.startsecs:
            self._change_state(ProcessState.RUNNING, f"up for {self.config.startsecs:g} s")  # not too quickly
        if status == EX_CONFIG:
            self._notify(f"{self.name} exited {EX_CONFIG} (configuration error): not restarting")
            if self.state is ProcessState.RUNNING:
                self._change_state(ProcessState.EXITED, what)
            else:
                self._change_state(ProcessState.FATAL, what)
        elif self.state is ProcessState.RUNNING and status in self.config.exitcodes:
            self._change_state(ProcessState.EXITED, f"{what}, expected: not restarting")
        else:
            self._enter_backoff(now, what)

    def _enter_backoff(self, now: float, what: str) -> None:
        self._assert_in_state(ProcessState.STARTING, ProcessState.RUNNING)
        if self.state is ProcessState.RUNNING and now - self.laststart >= self.config.stablesecs:
            self.backoff = 0  # crashed after a stable run: a fresh failure, not part of a loop
        self.backoff += 1
        if self.backoff == 1:  # the first failure of a streak: was it a crash of a RUNNING bot?
            self.immediate_first = self.state is ProcessState.RUNNING
        if self.backoff > self.config.startretries:
            self._change_state(ProcessState.BACKOFF, f"{what}, too many failures")
            return
        if self.immediate_first and self.backoff == 1:  # as supervisord: RUNNING -> EXITED -> STARTING at once
            self.delay = now
            self._change_state(ProcessState.BACKOFF, f"{what}, restarting now")
            return
        steps = self.backoff - (2 if self.immediate_first else 1)  # repeated failures wait 1, 2, 4 ... s
        wait = min(self.config.backoff_cap, 2.0 ** steps)
        self.delay = now + wait
        self._change_state(ProcessState.BACKOFF, f"{what}, restart in {wait:g} s")


class FleetManager:
    """Owns the bots, drives them with `tick(now)`, handles signals and prints the status table."""

    def __init__(self, indices: Iterable[int], *, spawn: Spawn, printer: Printer,
                 clock: Callable[[], float] = time.monotonic, config: ProcessConfig | None = None,
                 stagger: float = 0.5, status_interval: float = 30.0,
                 memory: Callable[[int], tuple[int, int] | None] | None = None,
                 health: HealthWatcher | None = None) -> None:
        self.printer, self.clock = printer, clock
        self.health = health  # /healthz of every bot (METRICS_PORT set): status columns and HEALTH_TIMEOUT
        self.config = config or ProcessConfig()
        self.stagger, self.status_interval = stagger, status_interval
        self.memory = memory or process_memory
        self._spawner = spawn
        self.processes: dict[int, BotProcess] = {
            n: BotProcess(n, self.config, spawn, printer.notice, self._output_for(n)) for n in sorted(indices)
        }
        self.stopping = False
        self.redeploy_queue: deque[int] = deque()  # bots still to restart in this redeploy, in order
        self.redeploying: int | None = None  # the bot being restarted now
        self._redeploy_deadline = 0.0
        self._last_spawn = float("-inf")
        self._next_status: float | None = None

    def _output_for(self, index: int) -> Callable[[str], None]:
        def output(line: str) -> None:
            if READY_LINE.search(line):
                self.processes[index].answering = True
            self.printer.child_line(index, line)
        return output

    def tick(self, now: float | None = None) -> None:
        """One step: reap, take due transitions, start what is due (spaced by `stagger`), print status."""
        now = self.clock() if now is None else now
        for proc in self.processes.values():
            latest = self.health.latest(proc.index) if self.health is not None else None
            if latest is not None:
                proc.saw_health(*latest)
            proc.transition(now)
        maintain = getattr(self._spawner, "maintain", None)  # the fork server's upkeep (utils/fork_spawn.py)
        if maintain is not None and not self.stopping:
            maintain({p.pid for p in self.processes.values() if p.pid is not None})
        if not self.stopping:
            self._redeploy_step(now)
            for proc in self.processes.values():
                if proc.wants_spawn(now) and now - self._last_spawn >= self.stagger:
                    proc.spawn(now)
                    self._last_spawn = now
        if self.status_interval > 0 and not self.stopping:
            if self._next_status is None:
                self._next_status = now + self.status_interval
            elif now >= self._next_status:
                self._next_status = now + self.status_interval
                self.print_status(now)

    def redeploy(self, now: float | None = None) -> None:
        """Restart every live bot with the code on disk, one at a time, each after the previous one answers.

        Under --spawn fork a fresh fork server is started first (it imports the new code). A bot that does
        not answer again within REDEPLOY_TIMEOUT halts the redeploy: the bots not yet restarted keep running.
        """
        now = self.clock() if now is None else now
        if self.redeploying is not None or self.redeploy_queue:
            self.printer.notice("redeploy already in progress")
            return
        reload = getattr(self._spawner, "restart_server", None)
        if reload is not None:
            reload()
        self.redeploy_queue.extend(n for n, p in self.processes.items()
                                   if p.state in (ProcessState.STARTING, ProcessState.RUNNING))
        self.printer.notice("redeploy: restarting " + (", ".join(f"Bot {n}" for n in self.redeploy_queue) or "no bot")
                            + " one at a time")

    def _redeploy_step(self, now: float) -> None:
        """Advance a redeploy: wait for the bot being restarted to answer, then restart the next one."""
        if self.redeploying is not None:
            proc = self.processes[self.redeploying]
            if proc.answering and proc.state in (ProcessState.STARTING, ProcessState.RUNNING):
                self.printer.notice(f"redeploy: {proc.name} answers again")
                self.redeploying = None
            elif proc.state in (ProcessState.FATAL, ProcessState.EXITED) or now >= self._redeploy_deadline:
                left = ", ".join(f"Bot {n}" for n in self.redeploy_queue)
                self.printer.notice(f"redeploy halted: {proc.name} did not answer again ({proc.state.name}); "
                                    + (f"{left} keep running the old code" if left else "no bot left to restart"))
                self.redeploying = None
                self.redeploy_queue.clear()
                return
            else:
                return
            if not self.redeploy_queue:
                self.printer.notice("redeploy done")
        while self.redeploy_queue:
            proc = self.processes[self.redeploy_queue.popleft()]
            if proc.state in (ProcessState.STARTING, ProcessState.RUNNING):
                proc.restart(now)
                self.redeploying, self._redeploy_deadline = proc.index, now + REDEPLOY_TIMEOUT
                return

    def stop_all(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.stopping = True
        self.redeploy_queue.clear()
        self.redeploying = None
        for proc in self.processes.values():
            proc.stop(now)

    def kill_all(self, reason: str) -> None:
        for proc in self.processes.values():
            if proc.state is ProcessState.STOPPING:
                proc.kill(reason)

    def handle_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGUSR1:
            self.print_status(self.clock())
        elif signum == signal.SIGHUP and not self.stopping:
            self.printer.notice("SIGHUP received: redeploying")
            self.redeploy()
        elif not self.stopping:
            self.printer.notice(f"{name} received: stopping all bots (SIGKILL after {self.config.stopwaitsecs:g} s)")
            self.stop_all()
        elif signum == signal.SIGINT:
            self.kill_all("second SIGINT")
        else:
            self.printer.notice(f"{name} received: already stopping")

    @property
    def finished(self) -> bool:
        """Every bot is done: stopped on request, or ended EXITED/FATAL on its own."""
        ended = STOPPED_STATES if self.stopping else (ProcessState.EXITED, ProcessState.FATAL)
        return all(p.state in ended and p.child is None for p in self.processes.values())

    @property
    def exit_code(self) -> int:
        """0 after a requested stop or if every bot exited 0; 78 if they ended on 78 (configuration); else 1."""
        if self.stopping:
            return 0
        procs = self.processes.values()
        if any(p.state is ProcessState.FATAL and p.exitstatus != EX_CONFIG for p in procs):
            return 1
        if all(p.exitstatus == 0 for p in procs):
            return 0
        return EX_CONFIG if all(p.exitstatus in (0, EX_CONFIG) for p in procs) else 1

    def status_rows(self, now: float) -> list[tuple[str, ...]]:
        rows = []
        for proc in self.processes.values():
            alive = proc.pid is not None and proc.state in _LIVE_STATES
            mem = self.memory(proc.pid) if alive and proc.pid is not None else None
            last = "-"
            if proc.last_exit_at is not None:
                last = (f"{describe_exit(proc.exitstatus)}{proc.exit_note}, "
                        f"{format_duration(now - proc.last_exit_at)} ago")
            row = (proc.name, proc.state.name, str(proc.pid) if alive else "-",
                   format_duration(now - proc.laststart) if alive else "-", str(proc.restarts),
                   f"{mem[0] / 2**20:.1f} MB" if mem is not None else "-",
                   f"{mem[1] / 2**20:.1f} MB" if mem is not None else "-")
            if self.health is not None:
                row += self._health_cells(proc, now) if alive else ("-", "-", "-")
            rows.append((*row, last))
        return rows

    def _health_cells(self, proc: BotProcess, now: float) -> tuple[str, str, str]:
        """READY, LATENCY, PLAYERS from the bot's last /healthz answer (if it is recent)."""
        assert self.health is not None
        health = proc.health
        silent = proc.silent_for(now)
        if silent > 2 * self.health.interval + 3:  # missed two probes or more
            return (f"silent {format_duration(silent)}", "-", "-")
        if health is None:
            return ("-", "-", "-")  # just started, not asked yet
        ready = "yes" if health.ready else f"no ({health.status})"
        return ready, latency_cell(health), str(health.body.get("players", "-"))

    def print_status(self, now: float) -> None:
        header = STATUS_HEADER if self.health is None else (*STATUS_HEADER[:-1], *HEALTH_COLUMNS, STATUS_HEADER[-1])
        rows = self.status_rows(now)
        server = getattr(getattr(self._spawner, "server", None), "pid", None)  # --spawn fork
        if server is not None:
            mem = self.memory(server)  # what the bots share: counted once, here
            uss, pss = (f"{m / 2**20:.1f} MB" for m in mem) if mem is not None else ("-", "-")
            rows.append(("fork server", "-", str(server), "-", "-", uss, pss,
                         *(("-",) * (len(header) - len(STATUS_HEADER))), "-"))
        self.printer.block(format_status_table(rows, header))
        if server is not None:
            self.printer.notice(self.ksm_line(server))

    def ksm_line(self, server: int) -> str:
        """How much of the forked fleet KSM holds merged (utils/ksm.py), under the status table."""
        from utils.ksm import host_saved_bytes, ksmd_state, merged_bytes

        pids = [server, *(p.pid for p in self.processes.values() if p.pid is not None and p.state in _LIVE_STATES)]
        merged = [m for m in map(merged_bytes, pids) if m is not None]
        saved = host_saved_bytes()
        if not merged:
            return f"KSM: ksmd {ksmd_state()}; merged pages not reported by this kernel"
        return (f"KSM: ksmd {ksmd_state()}; {sum(merged) / 2**20:.1f} MB of the bots' and the fork server's pages "
                f"are merged ones" + (f"; the host saves {saved / 2**20:.1f} MB by merging" if saved else ""))

    def run(self) -> int:
        """The real loop: install signal handlers, tick until finished, never leave a child behind."""
        pending: deque[int] = deque()  # handlers only append; the loop does the work (no locks in handlers)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        previous = {sig: signal.signal(sig, lambda signum, _frame: pending.append(signum)) for sig in handled}
        if self.health is not None:
            self.health.start()
        try:
            while True:
                while pending:
                    self.handle_signal(pending.popleft())
                self.tick()
                if self.finished:
                    break
                time.sleep(POLL_INTERVAL)
        finally:
            if self.health is not None:
                self.health.stop()
            self._kill_leftovers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        code = self.exit_code
        self.printer.notice(f"all bots stopped, manager exiting with status {code}")
        return code

    def _kill_leftovers(self) -> None:
        """Only reached with live children if the loop failed: SIGKILL and reap them."""
        live = [p.child for p in self.processes.values() if p.child is not None]
        for child in live:
            child.signal(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while live and time.monotonic() < deadline:
            live = [c for c in live if c.poll() is None]
            time.sleep(0.05)


STATUS_HEADER = ("BOT", "STATE", "PID", "UPTIME", "RESTARTS", "USS", "PSS", "LAST EXIT")
HEALTH_COLUMNS = ("READY", "LATENCY", "PLAYERS")  # from /healthz, when METRICS_PORT is set


def format_status_table(rows: Sequence[Sequence[str]], header: Sequence[str] = STATUS_HEADER) -> list[str]:
    return format_table(header, rows)


def process_memory(pid: int) -> tuple[int, int] | None:
    """(USS, PSS) of `pid` in bytes, or None (psutil missing, process gone, /proc/PID/smaps unreadable).

    Not RSS: forked bots share the fork server's pages, which RSS counts once per bot. USS is what this
    bot alone costs (freed if it stops), PSS its fair share of the shared pages (the fleet's PSS adds up).
    """
    try:
        import psutil  # lazy: only the status table needs it
    except ImportError:
        return None
    try:
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return None
    return info.uss, getattr(info, "pss", info.uss)


_COLOURS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")
_RESET = "\x1b[0m"


class Printer:
    """Writes `[Bot n]`-prefixed child lines and `[manager]` notices; colour only on a TTY; thread-safe."""

    def __init__(self, stream: IO[str] | None = None, *, indices: Iterable[int] = (), colour: bool | None = None,
                 timestamps: bool = True, secrets: Iterable[str] = ()) -> None:
        self.stream = stream if stream is not None else sys.stdout
        if colour is None:
            isatty = getattr(self.stream, "isatty", None)
            colour = bool(isatty and isatty())
        self.colour, self.timestamps = colour, timestamps
        self.width = max((len(f"[Bot {n}]") for n in indices), default=len("[Bot 1]"))
        self._secrets = tuple(s for s in secrets if s and len(s) >= 6)
        self._lock = threading.Lock()

    def _paint(self, tag: str, code: str) -> str:
        return f"\x1b[{code}m{tag}{_RESET}" if self.colour else tag

    def child_line(self, index: int, line: str) -> None:
        """A line of bot n's output; lines the bot already prefixed with `[Bot n]` keep their own prefix."""
        own, code = f"[Bot {index}]", _COLOURS[(index - 1) % len(_COLOURS)]
        line = line.rstrip("\r\n")
        if line.startswith(own):
            self._write(self._paint(own, code) + line[len(own):])
        else:
            self._write(self._paint(own, code) + (" " * (self.width - len(own) + 1) + line if line else ""))

    def notice(self, message: str) -> None:
        """One manager notice (also written to logs/manager.log via the logger)."""
        log.info("%s", message)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S ") if self.timestamps else ""
        self._write(f"{self._paint('[manager]', '1')} {stamp}{message}")

    def block(self, lines: Iterable[str]) -> None:
        """Several notice lines printed together (the status table), without timestamps."""
        lines = list(lines)
        for line in lines:
            log.info("%s", line)
        with self._lock:
            for line in lines:
                self._write_unlocked(f"{self._paint('[manager]', '1')} {line}")

    def _write(self, text: str) -> None:
        with self._lock:
            self._write_unlocked(text)

    def _write_unlocked(self, text: str) -> None:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # closed or broken stdout: keep supervising, the bots still log to files
            log.debug("could not write to the console", exc_info=True)


class PopenChild:
    """A `subprocess.Popen` child in its own session, its merged output pumped by a thread."""

    def __init__(self, popen: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> None:
        self._popen, self.pid = popen, popen.pid
        self._eof = threading.Event()
        self._exited_at: float | None = None
        threading.Thread(target=self._pump, args=(on_line,), name=f"output-{self.pid}", daemon=True).start()

    def _pump(self, on_line: Callable[[str], None]) -> None:
        stdout = self._popen.stdout
        assert stdout is not None
        try:
            for raw in iter(lambda: stdout.readline(1 << 16), b""):
                on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        finally:
            stdout.close()
            self._eof.set()

    def poll(self) -> int | None:
        if self._popen.returncode is not None:
            return self._popen.returncode
        if hasattr(os, "waitid"):  # peek without reaping: while a zombie, its process group id stays ours
            try:
                if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    return None
            except ChildProcessError:
                return self._popen.poll()
            signal_group(self.pid, signal.SIGKILL)  # killasgroup: nothing the bot started outlives it
        elif self._popen.poll() is None:
            return None
        if not self._eof.is_set():  # print its last lines before its exit is reported
            self._exited_at = self._exited_at or time.monotonic()
            if time.monotonic() - self._exited_at < EOF_GRACE:
                return None
        return self._popen.wait()

    def signal(self, sig: int) -> None:
        if self._popen.returncode is None:  # never signal a reaped pid: it may belong to someone else now
            signal_group(self.pid, sig)


class SubprocessSpawner:
    """The default spawn seam: `python bot.py --bot n`, with bot n's token (and no other) in its environment.

    The siblings' user ids go with it in FLEET_BOT_IDS (decoded here from the tokens once, at start).
    """

    def __init__(self, script: Path = HERE / "bot.py", python: str = sys.executable, cwd: Path = HERE,
                 fleet_ids: Mapping[int, int] | None = None) -> None:
        self.script, self.python, self.cwd = script, python, cwd
        self.fleet_ids = dict(fleet_ids or {})

    def command(self, index: int) -> list[str]:
        return [self.python, str(self.script), "--bot", str(index)]

    def environment(self, index: int) -> dict[str, str]:
        env = bot_environment(os.environ, index, self.fleet_ids)
        env.update(PYTHONUNBUFFERED="1", FLEET_MANAGER_PID=str(os.getpid()))  # see utils/parent_watch.py
        env.pop("SUPERVISOR_ENABLED", None)  # the manager restarts its bots, not supervisord (see utils/config_exit.py)
        return env

    def __call__(self, index: int, on_line: Callable[[str], None]) -> PopenChild:
        env = self.environment(index)
        popen = subprocess.Popen(self.command(index), cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        return PopenChild(popen, on_line)


# --- command line --------------------------------------------------------------------------------------

EPILOG = """\
exit codes:
  0   stopped by SIGTERM/SIGINT, or every bot exited 0; --check: everything OK
  1   every bot ended (FATAL or crashed) and not all on 0/78; --check: a check failed
  2   usage error (for example a bad --bots value)
  78  configuration error: no BOT_TOKEN_n set, a selected bot has no token, or the bots exited 78

tokens: each bot's child gets its own token only (BOT_TOKEN_n, or BOT_TOKEN_FILE_n for a file, also for a
token found in BOT_TOKEN_DIR) and FLEET_BOT_IDS="1:<user id>,2:<user id>,..." (the fleet's user ids, decoded
here from the tokens or taken from BOT_CLIENT_ID_n), so it can point users to a free sibling.

signals: SIGTERM or SIGINT stop every bot (SIGTERM to its process group, SIGKILL after
--stopwaitsecs); a second SIGINT kills them at once. SIGUSR1 prints the status table (USS: what a bot
alone costs; PSS: its share of pages shared with its siblings). SIGHUP redeploys: a fresh fork server
(with --spawn fork), then every bot restarted in turn, the next one once the previous one logs
"ready as" again (logged at any LOG_LEVEL); a bot that does not come back halts the redeploy.
A bot exiting 78 (configuration error) is never restarted, nor one exiting 0 once RUNNING; a bot
that crashes while RUNNING is restarted at once, repeated failures after 1, 2, 4 ... s (capped by
--backoff-cap). The failure count resets after 60 s of RUNNING; --startretries+1 consecutive
failures before that -> FATAL for that bot only.

--spawn fork (default) forks each bot from fork_server.py, which has imported discord.py, wavelink
and the cogs once; if it dies, the manager starts a new one at once (its bots are not its children
and run on), and a bot is exec'd when no fork server will start. The fork server opts itself and its
bots in to kernel same-page merging (KSM, Linux 6.4+; --no-ksm does not): where the host runs ksmd
(as root: echo 1 > /sys/kernel/mm/ksm/run), the pages every bot un-shares alike are merged again.
--spawn exec starts `python bot.py --bot n` per bot, as supervisord does.

health: with METRICS_PORT set, bot n serves /healthz on METRICS_PORT+n (METRICS_HOST, default 127.0.0.1);
the status table shows its readiness, gateway latency and players, and a bot whose /healthz stays silent
for HEALTH_TIMEOUT seconds (a stuck event loop) is killed and restarted. --status prints the table once
from the endpoints and exits: 0 every bot ready, 1 some bot not ready or not answering, 78 no METRICS_PORT.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _non_negative(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = ProcessConfig()
    parser = _Parser(prog="process_manager.py", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Run one `bot.py --bot n` child per BOT_TOKEN_n, restart crashed bots with\n"
                                 "backoff, prefix their output with [Bot n] and stop them gracefully.")
    add = parser.add_argument
    add("--bots", type=bot_selection_arg, metavar="LIST",
        help="bots to run, e.g. 1,3-5 (default: every BOT_TOKEN_n, BOT_TOKEN_FILE_n or BOT_TOKEN_DIR/BOT_TOKEN_n)")
    add("--env-file", default=".env", metavar="PATH", help="dotenv file to load first (default: .env; "
        "variables already in the environment win)")
    add("--check", action="store_true", help="check tokens (Discord /users/@me) and Lavalink nodes, then exit")
    add("--status-interval", type=_non_negative(float), default=30.0, metavar="S",
        help="print the status table every S seconds; 0 disables (default: 30)")
    add("--status", action="store_true", help="print the bots' readiness, latency and players from their /healthz "
        "(METRICS_PORT) once and exit: 0 when every bot is ready")
    add("--health-timeout", type=_non_negative(float), default=None, metavar="S",
        help="restart a bot whose /healthz (METRICS_PORT) has not answered for S seconds, e.g. a stuck event loop; "
             "0 disables (default: HEALTH_TIMEOUT, else 60)")
    add("--stopwaitsecs", type=_non_negative(float), default=defaults.stopwaitsecs, metavar="S",
        help="grace between SIGTERM and SIGKILL when stopping (default: %(default)g)")
    add("--startsecs", type=_non_negative(float), default=defaults.startsecs, metavar="S",
        help="uptime after which a bot counts as RUNNING (default: %(default)g)")
    add("--startretries", type=_non_negative(int), default=defaults.startretries, metavar="N",
        help="consecutive failures allowed before a bot goes FATAL (default: %(default)d)")
    add("--backoff-cap", type=_non_negative(float), default=defaults.backoff_cap, metavar="S",
        help="longest wait between restarts (default: %(default)g)")
    add("--stagger", type=_non_negative(float), default=0.5, metavar="S",
        help="minimum gap between two bot starts, against identify bursts (default: %(default)g)")
    add("--spawn", choices=("fork", "exec"), default=DEFAULT_SPAWN,
        help="fork: fork each bot from a fork server that has imported discord.py, wavelink and the cogs once "
             "(less memory per bot, faster restarts); exec: start a fresh interpreter per bot "
             "(default: %(default)s)")
    add("--no-ksm", dest="ksm", action="store_false",
        help="with --spawn fork: do not opt the bots in to kernel same-page merging (merges only where the host "
             "runs ksmd; see the README)")
    add("--python", default=sys.executable, metavar="PATH", help="interpreter for the bots (default: this one)")
    add("--bot-script", type=Path, default=HERE / "bot.py", metavar="PATH",
        help="script run as `PATH --bot n` instead of bot.py (for tests; forked bots run it with runpy)")
    return parser.parse_args(argv)


def _setup_manager_log(env: Mapping[str, str]) -> None:
    log_dir = Path(env.get("LOG_DIR", "").strip() or "logs")
    log_dir = log_dir if log_dir.is_absolute() else HERE / log_dir  # the bots' cwd: both logs side by side
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_dir / "manager.log", maxBytes=1 << 20, backupCount=3,
                                                       encoding="utf-8")
    except OSError as exc:
        print(f"[manager] cannot write {log_dir / 'manager.log'} ({exc}); console only", file=sys.stderr)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv(args.env_file, override=False)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    try:
        indices = select_bots(args.bots, os.environ)
        fleet_ids = fleet_user_ids(os.environ)
    except (SelectionError, ConfigError) as exc:
        print(f"process_manager.py: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.check:
        from utils.fleet_check import run_check  # lazy: urllib + ssl only for --check

        return run_check(indices, os.environ, sys.stdout)
    try:
        if args.status:
            return status_report(indices, os.environ, sys.stdout)
        ports = {n: port for n in indices if (port := metrics_port(os.environ, n)) is not None}
        timeout = args.health_timeout if args.health_timeout is not None else health_timeout(os.environ)
    except ConfigError as exc:
        print(f"process_manager.py: {exc}", file=sys.stderr)
        return EX_CONFIG

    _setup_manager_log(os.environ)
    secrets = []
    for n in discover_bot_indices(os.environ):
        try:
            secrets.append(read_token(os.environ, n)[1])
        except ConfigError:
            pass  # that bot reports its configuration error itself (exit 78)
    secrets.append(os.environ.get("LAVALINK_PASSWORD", ""))  # a bot's traceback must not leak these either
    printer = Printer(sys.stdout, indices=indices, secrets=secrets)
    config = ProcessConfig(startsecs=args.startsecs, startretries=int(args.startretries),
                           stopwaitsecs=args.stopwaitsecs, backoff_cap=args.backoff_cap,
                           health_timeout=timeout if ports else 0.0)
    health = HealthWatcher(ports, probe_host(os.environ), probe_interval(timeout)) if ports else None
    spawner: Spawn = SubprocessSpawner(script=args.bot_script.resolve(), python=args.python,
                                       fleet_ids=fleet_ids)
    if args.spawn == "fork":
        from utils.fork_spawn import ForkServerSpawner

        spawner = ForkServerSpawner(spawner, notify=printer.notice, eof_grace=EOF_GRACE, ksm=args.ksm)
        spawner.restart_server()  # preload before the first bot; a failure falls back to exec per bot
    manager = FleetManager(indices, spawn=spawner, printer=printer, config=config, stagger=args.stagger,
                           status_interval=args.status_interval, health=health)
    printer.notice(f"starting {len(indices)} bot(s) ({args.spawn}): {', '.join(map(str, indices))}")
    try:
        return manager.run()
    finally:
        close = getattr(spawner, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    sys.exit(main())
