"""README: "A bot that crashes while RUNNING is restarted at once,
then after 1 s, 2 s, 4 s … (capped at 60 s)": the cap the manager really runs with.

tests/unit/test_process_manager.py checks the doubling with a small custom cap; this checks the default one,
as process_manager.py's command line builds it.
"""

from __future__ import annotations

import signal

import process_manager as pm
from process_manager import FleetManager, ProcessConfig, ProcessState
from tests.unit.test_process_manager import FakeClock, FakePrinter, FakeSpawn, advance, crash


def cli_config(*argv: str) -> ProcessConfig:
    """The per-bot policy main() derives from these command-line arguments."""
    args = pm.parse_args(list(argv))
    return ProcessConfig(startsecs=args.startsecs, startretries=int(args.startretries),
                         stopwaitsecs=args.stopwaitsecs, backoff_cap=args.backoff_cap)


def restart_delays(config: ProcessConfig, crashes: int) -> list[float]:
    """Crash a RUNNING bot `crashes` times in a row (never stable for long); the wait before each restart."""
    clock, spawn, printer = FakeClock(), FakeSpawn(), FakePrinter()
    manager = FleetManager((1,), spawn=spawn, printer=printer, clock=clock, memory=lambda pid: None,
                           config=config, stagger=0, status_interval=0)
    manager.tick()
    delays = []
    for _ in range(crashes):
        advance(manager, clock, config.startsecs)
        assert manager.processes[1].state is ProcessState.RUNNING
        crash(manager, clock, spawn, status=-signal.SIGSEGV)
        proc = manager.processes[1]
        delays.append(proc.delay - clock.now)
        assert proc.state is (ProcessState.STARTING if delays[-1] == 0 else ProcessState.BACKOFF)  # 0: restarted in that tick
        advance(manager, clock, proc.delay - clock.now)
    return delays


def test_default_backoff_doubles_up_to_60_s_and_stays_there():
    config = cli_config("--startretries", "10")  # enough retries to reach the cap before FATAL
    assert config.backoff_cap == 60
    assert restart_delays(config, 10) == [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_backoff_cap_option_changes_the_cap():
    assert restart_delays(cli_config("--startretries", "6", "--backoff-cap", "5"), 6) == [0, 1, 2, 4, 5, 5]
