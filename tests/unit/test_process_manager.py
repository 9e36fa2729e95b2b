"""process_manager: the state machine (one test per arrow, fake clock and fake spawn), CLI helpers, Printer;
the shared `--bots` selection (utils/selection.py) and the --check lines (utils/fleet_check.py)."""

from __future__ import annotations

import io
import signal

import pytest

import process_manager as pm
from process_manager import BotProcess, FleetManager, Printer, ProcessConfig, ProcessState
from utils import fleet_check
from utils.selection import SelectionError, parse_bot_selection, select_bots

S = ProcessState
TOKEN = "MTAwMA.fake.token-secret-value"


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeChild:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None  # set by the test: the child "exits"
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.status

    def signal(self, sig: int) -> None:
        self.signals.append(sig)


class FakeSpawn:
    """Records every start; `fail` makes the next spawns raise like a missing interpreter would."""

    def __init__(self) -> None:
        self.children: dict[int, list[FakeChild]] = {}
        self.outputs: dict[int, object] = {}  # index -> the output callback of its latest start
        self.server_restarts = 0
        self.fail = False
        self._pid = 1000

    def __call__(self, index, on_line):
        if self.fail:
            raise FileNotFoundError("no such interpreter")
        self._pid += 1
        child = FakeChild(self._pid)
        self.children.setdefault(index, []).append(child)
        self.outputs[index] = on_line
        on_line(f"bot {index} says hi")
        return child

    def restart_server(self) -> None:  # as utils/fork_spawn.ForkServerSpawner on a redeploy
        self.server_restarts += 1

    def answer(self, index: int) -> None:
        """The latest start of bot `index` logs that it is ready (bot.py's on_ready line)."""
        line = f"[Bot {index}] 2026-01-01 00:00:00 INFO    bot.ready: ready as Music {index} (id 1) in 1 guild(s)"
        self.outputs[index](line)

    def last(self, index: int) -> FakeChild:
        return self.children[index][-1]


class FakePrinter:
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.lines: list[tuple[int, str]] = []
        self.blocks: list[list[str]] = []

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def child_line(self, index: int, line: str) -> None:
        self.lines.append((index, line))

    def block(self, lines) -> None:
        self.blocks.append(list(lines))


CONFIG = ProcessConfig(startsecs=3, startretries=3, stopwaitsecs=10, backoff_cap=8, stablesecs=60)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def spawn():
    return FakeSpawn()


@pytest.fixture
def printer():
    return FakePrinter()


@pytest.fixture
def fleet(clock, spawn, printer):
    def make(indices=(1,), **kwargs):
        kwargs.setdefault("config", CONFIG)
        kwargs.setdefault("stagger", 0)
        kwargs.setdefault("status_interval", 0)
        return FleetManager(indices, spawn=spawn, printer=printer, clock=clock, memory=lambda pid: None, **kwargs)
    return make


def advance(manager: FleetManager, clock: FakeClock, seconds: float) -> None:
    clock.now += seconds
    manager.tick()


def running(manager, clock, spawn, index=1) -> BotProcess:
    """Start the fleet and bring bot `index` to RUNNING."""
    manager.tick()
    advance(manager, clock, CONFIG.startsecs)
    proc = manager.processes[index]
    assert proc.state is S.RUNNING
    return proc


def crash(manager, clock, spawn, index=1, status=1) -> None:
    spawn.last(index).status = status
    manager.tick()


# --- one test per arrow --------------------------------------------------------------------------------


def test_stopped_to_starting_on_first_tick(fleet, clock, spawn, printer):
    manager = fleet()
    assert manager.processes[1].state is S.STOPPED
    manager.tick()
    proc = manager.processes[1]
    assert proc.state is S.STARTING and proc.pid == spawn.last(1).pid and proc.laststart == clock.now
    assert "Bot 1: STOPPED -> STARTING (pid 1001)" in printer.notices
    assert printer.lines == [(1, "bot 1 says hi")]


def test_stopped_to_starting_staggered_by_gap(fleet, clock, spawn):
    manager = fleet((1, 2, 3), stagger=0.5)
    manager.tick()
    assert [p.state for p in manager.processes.values()] == [S.STARTING, S.STOPPED, S.STOPPED]
    advance(manager, clock, 0.4)
    assert manager.processes[2].state is S.STOPPED
    advance(manager, clock, 0.1)
    assert manager.processes[2].state is S.STARTING and manager.processes[3].state is S.STOPPED
    advance(manager, clock, 0.5)
    assert manager.processes[3].state is S.STARTING


def test_starting_to_running_after_startsecs(fleet, clock, spawn, printer):
    manager = fleet()
    manager.tick()
    advance(manager, clock, CONFIG.startsecs - 0.1)
    assert manager.processes[1].state is S.STARTING
    advance(manager, clock, 0.1)
    assert manager.processes[1].state is S.RUNNING
    assert printer.notices[-1] == "Bot 1: STARTING -> RUNNING (up for 3 s)"


def test_starting_to_backoff_on_early_exit(fleet, clock, spawn, printer):
    manager = fleet()
    manager.tick()
    clock.now += 0.5
    crash(manager, clock, spawn, status=1)
    proc = manager.processes[1]
    assert proc.state is S.BACKOFF and proc.backoff == 1 and proc.delay == clock.now + 1
    assert proc.exitstatus == 1 and proc.pid is None
    assert printer.notices[-1] == "Bot 1: STARTING -> BACKOFF (exit 1 after 0.5 s, restart in 1 s)"


def test_starting_to_backoff_on_spawn_error(fleet, clock, spawn, printer):
    spawn.fail = True
    manager = fleet()
    manager.tick()
    proc = manager.processes[1]
    assert proc.state is S.BACKOFF and proc.exitstatus is None
    assert any("could not start: no such interpreter" in n for n in printer.notices)


def test_backoff_to_starting_after_delay(fleet, clock, spawn):
    manager = fleet()
    manager.tick()
    crash(manager, clock, spawn)
    advance(manager, clock, 0.9)
    assert manager.processes[1].state is S.BACKOFF and len(spawn.children[1]) == 1
    advance(manager, clock, 0.1)
    proc = manager.processes[1]
    assert proc.state is S.STARTING and len(spawn.children[1]) == 2 and proc.restarts == 1


def test_backoff_to_fatal_after_startretries(fleet, clock, spawn, printer):
    manager = fleet()
    manager.tick()
    delays = []
    for _ in range(CONFIG.startretries):
        crash(manager, clock, spawn)
        proc = manager.processes[1]
        delays.append(proc.delay - clock.now)
        advance(manager, clock, proc.delay - clock.now)
        assert proc.state is S.STARTING
    crash(manager, clock, spawn)  # the (startretries + 1)th consecutive failure
    assert manager.processes[1].state is S.FATAL
    assert delays == [1, 2, 4]
    assert printer.notices[-1] == "Bot 1: BACKOFF -> FATAL (gave up after 4 consecutive failures)"
    advance(manager, clock, 100)
    assert len(spawn.children[1]) == CONFIG.startretries + 1  # never started again


def test_running_to_backoff_on_crash_with_doubling_delays_capped(fleet, clock, spawn, printer):
    config = ProcessConfig(startsecs=1, startretries=10, backoff_cap=8, stablesecs=60)
    manager = fleet(config=config)
    manager.tick()
    delays = []
    for _ in range(6):
        advance(manager, clock, config.startsecs)
        assert manager.processes[1].state is S.RUNNING
        crash(manager, clock, spawn, status=-signal.SIGSEGV)
        proc = manager.processes[1]
        delays.append(proc.delay - clock.now)
        assert proc.state is (S.STARTING if delays[-1] == 0 else S.BACKOFF)  # 0: restarted in that tick
        advance(manager, clock, proc.delay - clock.now)
    assert delays == [0, 1, 2, 4, 8, 8]  # the first crash of a RUNNING bot restarts at once, as under supervisord
    assert "Bot 1: RUNNING -> BACKOFF (signal SIGSEGV after 1.0 s, restarting now)" in printer.notices
    assert "Bot 1: RUNNING -> BACKOFF (signal SIGSEGV after 1.0 s, restart in 1 s)" in printer.notices


def test_running_to_backoff_to_fatal_on_crash_loop_before_stable(fleet, clock, spawn):
    """Crashes after reaching RUNNING still count: a bot that dies every 10 s ends FATAL."""
    manager = fleet()
    manager.tick()
    for _ in range(CONFIG.startretries + 1):
        advance(manager, clock, 10)
        assert manager.processes[1].state is S.RUNNING
        crash(manager, clock, spawn)
        advance(manager, clock, manager.processes[1].delay - clock.now)
    assert manager.processes[1].state is S.FATAL


def test_running_to_backoff_reset_after_stable_uptime(fleet, clock, spawn, printer):
    manager = fleet()
    manager.tick()
    for _ in range(2):
        crash(manager, clock, spawn)
        advance(manager, clock, manager.processes[1].delay - clock.now)
    proc = manager.processes[1]
    assert proc.backoff == 2
    advance(manager, clock, CONFIG.startsecs)
    assert proc.state is S.RUNNING and proc.backoff == 2  # RUNNING alone does not reset
    advance(manager, clock, CONFIG.stablesecs)
    assert proc.backoff == 0
    assert "Bot 1: stable for 60 s, backoff reset" in printer.notices
    crash(manager, clock, spawn)  # a crash after a stable run: a fresh streak, restarted at once (same tick)
    assert proc.state is S.STARTING and proc.restarts == 3 and proc.backoff == 1


def test_running_to_exited_on_0_no_restart(fleet, clock, spawn, printer):
    manager = fleet()
    running(manager, clock, spawn)
    crash(manager, clock, spawn, status=0)
    assert manager.processes[1].state is S.EXITED
    advance(manager, clock, 100)
    assert len(spawn.children[1]) == 1
    assert manager.finished and manager.exit_code == 0


def test_running_to_exited_on_78_no_restart(fleet, clock, spawn, printer):
    manager = fleet()
    running(manager, clock, spawn)
    crash(manager, clock, spawn, status=78)
    assert manager.processes[1].state is S.EXITED
    assert "Bot 1 exited 78 (configuration error): not restarting" in printer.notices
    advance(manager, clock, 100)
    assert len(spawn.children[1]) == 1
    assert manager.finished and manager.exit_code == 78


def test_starting_to_fatal_on_78_no_retry(fleet, clock, spawn, printer):
    manager = fleet()
    manager.tick()
    crash(manager, clock, spawn, status=78)
    assert manager.processes[1].state is S.FATAL
    assert "Bot 1 exited 78 (configuration error): not restarting" in printer.notices
    advance(manager, clock, 100)
    assert len(spawn.children[1]) == 1
    assert manager.finished and manager.exit_code == 78


def test_starting_to_running_to_backoff_on_exit_after_startsecs_unnoticed(fleet, clock, spawn, printer):
    """An exit first seen after startsecs is not 'too quick' (supervisord's finish())."""
    manager = fleet()
    manager.tick()
    clock.now += 5
    crash(manager, clock, spawn, status=2)
    assert printer.notices[-3:] == ["Bot 1: STARTING -> RUNNING (up for 3 s)",
                                    "Bot 1: RUNNING -> BACKOFF (exit 2 after 5.0 s, restarting now)",
                                    f"Bot 1: BACKOFF -> STARTING (pid {spawn.last(1).pid})"]


def test_running_to_stopping_to_stopped_on_stop(fleet, clock, spawn, printer):
    manager = fleet()
    running(manager, clock, spawn)
    manager.stop_all()
    proc, child = manager.processes[1], spawn.last(1)
    assert proc.state is S.STOPPING and child.signals == [signal.SIGTERM]
    advance(manager, clock, 1)
    assert proc.state is S.STOPPING and not manager.finished
    child.status = 0
    manager.tick()
    assert proc.state is S.STOPPED and manager.finished and manager.exit_code == 0
    assert printer.notices[-1] == "Bot 1: STOPPING -> STOPPED (exit 0 after 4.0 s)"


def test_starting_to_stopping_on_stop(fleet, clock, spawn):
    manager = fleet()
    manager.tick()
    manager.stop_all()
    assert manager.processes[1].state is S.STOPPING and spawn.last(1).signals == [signal.SIGTERM]


def test_stopping_to_kill_after_stopwaitsecs(fleet, clock, spawn, printer):
    manager = fleet()
    running(manager, clock, spawn)
    manager.stop_all()
    child = spawn.last(1)
    advance(manager, clock, CONFIG.stopwaitsecs - 0.1)
    assert child.signals == [signal.SIGTERM]
    advance(manager, clock, 0.1)
    assert child.signals == [signal.SIGTERM, signal.SIGKILL]
    assert any("SIGKILL" in n for n in printer.notices)
    advance(manager, clock, 5)
    assert child.signals == [signal.SIGTERM, signal.SIGKILL]  # once only
    child.status = -signal.SIGKILL
    manager.tick()
    assert manager.processes[1].state is S.STOPPED and manager.finished


def test_stopping_to_kill_at_once_on_second_sigint(fleet, clock, spawn):
    manager = fleet()
    running(manager, clock, spawn)
    manager.handle_signal(signal.SIGINT)
    manager.handle_signal(signal.SIGINT)
    assert spawn.last(1).signals == [signal.SIGTERM, signal.SIGKILL]


def test_backoff_to_stopped_on_stop(fleet, clock, spawn):
    manager = fleet()
    manager.tick()
    crash(manager, clock, spawn)
    manager.stop_all()
    assert manager.processes[1].state is S.STOPPED and manager.finished
    advance(manager, clock, 100)
    assert len(spawn.children[1]) == 1


def test_stopped_stays_stopped_on_stop_before_start(fleet, clock, spawn):
    manager = fleet((1, 2), stagger=5)
    manager.tick()
    manager.stop_all()
    advance(manager, clock, 10)
    assert manager.processes[2].state is S.STOPPED and 2 not in spawn.children


def test_running_to_fatal_of_one_bot_leaves_others_running(fleet, clock, spawn):
    manager = fleet((1, 2))
    manager.tick()
    for _ in range(CONFIG.startretries + 1):
        crash(manager, clock, spawn, index=2)
        advance(manager, clock, max(0, manager.processes[2].delay - clock.now))
    advance(manager, clock, CONFIG.startsecs)
    assert manager.processes[2].state is S.FATAL
    assert manager.processes[1].state is S.RUNNING and len(spawn.children[1]) == 1
    assert spawn.last(1).signals == [] and not manager.finished


def test_change_state_is_guarded():
    proc = BotProcess(1, CONFIG, FakeSpawn(), lambda m: None, lambda line: None)
    with pytest.raises(AssertionError, match="Bot 1: in state STOPPED"):
        proc.kill("test")


def test_exit_code_all_fatal_is_1(fleet, clock, spawn):
    manager = fleet((1, 2))
    manager.tick()
    for _ in range(CONFIG.startretries + 1):
        for n in (1, 2):
            crash(manager, clock, spawn, index=n)
        advance(manager, clock, 10)
    assert manager.finished and manager.exit_code == 1


# --- status table --------------------------------------------------------------------------------------


def test_status_table_columns_and_values(fleet, clock, spawn, printer):
    manager = fleet((1, 2), status_interval=30)
    manager.memory = lambda pid: (7 * 2**20, 31 * 2**20)
    manager.tick()
    advance(manager, clock, 3)
    crash(manager, clock, spawn, index=2, status=1)
    advance(manager, clock, 27)  # 30 s after the first tick: periodic table
    assert len(printer.blocks) == 1
    header, row1, row2 = printer.blocks[0]
    assert header.split() == ["BOT", "STATE", "PID", "UPTIME", "RESTARTS", "USS", "PSS", "LAST", "EXIT"]
    assert row1.split() == ["Bot", "1", "RUNNING", "1001", "30s", "0", "7.0", "MB", "31.0", "MB", "-"]
    assert row2.split()[:6] == ["Bot", "2", "RUNNING", "1003", "27s", "1"]  # crashed while RUNNING: restarted at once
    assert row2.endswith("exit 1, 27s ago")
    assert header.index("STATE") == row1.index("RUNNING")  # aligned columns


def test_status_table_on_sigusr1_and_memory_unavailable(fleet, clock, spawn, printer):
    manager = fleet()
    manager.tick()
    manager.handle_signal(signal.SIGUSR1)
    assert printer.blocks[0][1].split()[6] == "-"  # memory unavailable ("Bot 1" is two words)


def test_format_status_table_pads_columns():
    lines = pm.format_status_table([("Bot 10", "FATAL", "-", "-", "5", "-", "-", "exit 3, 2m01s ago")])
    assert lines[0].startswith("BOT     STATE")
    assert lines[1].startswith("Bot 10  FATAL")


def test_format_duration():
    assert [pm.format_duration(s) for s in (0, 59, 61, 3725)] == ["0s", "59s", "1m01s", "1h02m"]


def test_describe_exit():
    assert pm.describe_exit(1) == "exit 1"
    assert pm.describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert pm.describe_exit(None) == "spawn error"


# --- Printer -------------------------------------------------------------------------------------------


def test_printer_prefixes_child_lines_padded_without_colour():
    out = io.StringIO()
    printer = Printer(out, indices=(1, 10), timestamps=False)
    printer.child_line(1, "hello\r\n")
    printer.child_line(10, "world")
    printer.notice("Bot 1: STOPPED -> STARTING")
    assert out.getvalue().splitlines() == ["[Bot 1]  hello", "[Bot 10] world", "[manager] Bot 1: STOPPED -> STARTING"]
    assert "\x1b[" not in out.getvalue()


def test_printer_keeps_existing_bot_prefix():
    out = io.StringIO()
    Printer(out, indices=(1, 2)).child_line(2, "[Bot 2] 2025-01-01 INFO bot: ready")
    assert out.getvalue() == "[Bot 2] 2025-01-01 INFO bot: ready\n"


def test_printer_prefixes_other_bots_prefix():
    out = io.StringIO()
    Printer(out, indices=(1, 2)).child_line(1, "[Bot 2] not mine")
    assert out.getvalue() == "[Bot 1] [Bot 2] not mine\n"


def test_printer_colour_only_on_tty():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    Printer(tty, indices=(1,)).child_line(1, "x")
    assert tty.getvalue().startswith("\x1b[")
    plain = io.StringIO()
    Printer(plain, indices=(1,)).child_line(1, "x")
    assert plain.getvalue() == "[Bot 1] x\n"


def test_printer_redacts_secrets():
    out = io.StringIO()
    Printer(out, secrets=[TOKEN]).child_line(1, f"oops {TOKEN}")
    assert TOKEN not in out.getvalue() and "<redacted>" in out.getvalue()


def test_printer_survives_closed_stream():
    out = io.StringIO()
    printer = Printer(out)
    out.close()
    printer.child_line(1, "nobody listens")  # no exception


# --- selection, token discovery and the CLI ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1", [1]), ("1,3", [1, 3]), ("3-5", [3, 4, 5]), ("1, 3-4,2", [1, 2, 3, 4]), ("2,2,1-2", [1, 2]),
])
def test_parse_bot_selection(text, expected):
    assert parse_bot_selection(text) == expected


@pytest.mark.parametrize("text", ["", "a", "1,,2", "0", "3-1", "1-", "-2", "1-2-3", "1.5"])
def test_parse_bot_selection_rejects(text):
    with pytest.raises(ValueError):
        parse_bot_selection(text)


def test_bad_bots_syntax_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        pm.parse_args(["--bots", "1,x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--bots" in err


def test_select_bots_discovers_gaps():
    env = {"BOT_TOKEN_3": TOKEN, "BOT_TOKEN_1": TOKEN, "BOT_TOKEN_2": " ", "BOT_TOKEN": TOKEN}
    assert select_bots(None, env) == [1, 3]
    assert select_bots([3], env) == [3]


def test_select_bots_missing_token_names_variable():
    with pytest.raises(SelectionError, match=r"^BOT_TOKEN_2, BOT_TOKEN_4 are not set") as exc:
        select_bots([1, 2, 4], {"BOT_TOKEN_1": TOKEN})
    assert TOKEN not in str(exc.value)


def test_no_token_message_points_single_bot_form_at_bot_py():
    with pytest.raises(SelectionError) as exc:
        select_bots(None, {})
    assert "BOT_TOKEN_1" in str(exc.value) and "bot.py alone" in str(exc.value)
    with pytest.raises(SelectionError) as exc:
        select_bots(None, {"BOT_TOKEN": TOKEN, "BOT_ID": "2"})
    message = str(exc.value)
    assert "BOT_TOKEN is set, but only bot.py reads it" in message and TOKEN not in message
    assert "\n" not in message


def test_both_scripts_share_one_selection():
    import register_commands as rc

    assert pm.select_bots is select_bots and rc.select_bots is select_bots
    assert pm.SelectionError is SelectionError and rc.SelectionError is SelectionError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    import os
    for key in list(os.environ):
        if key.startswith("BOT_TOKEN"):
            monkeypatch.delenv(key)
    env_file = tmp_path / ".env"
    env_file.write_text("")
    return str(env_file)


def test_main_without_token_exits_78_naming_variables(clean_env, capsys):
    assert pm.main(["--env-file", clean_env]) == 78
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "BOT_TOKEN_1" in err and "BOT_TOKEN_2" in err


def test_main_selected_bot_without_token_exits_78(clean_env, monkeypatch, capsys):
    monkeypatch.setenv("BOT_TOKEN_1", TOKEN)
    assert pm.main(["--env-file", clean_env, "--bots", "1,4"]) == 78
    out, err = capsys.readouterr()
    assert "BOT_TOKEN_4" in err and TOKEN not in out + err


def test_help_lists_exit_codes(capsys):
    with pytest.raises(SystemExit):
        pm.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "exit codes" in out and "78" in out and "--bots" in out


def test_spawner_command_never_carries_the_token(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN_2", TOKEN)
    command = pm.SubprocessSpawner(python="/usr/bin/python3").command(2)
    assert command[-2:] == ["--bot", "2"] and command[1].endswith("bot.py")
    assert TOKEN not in " ".join(command)


def test_import_is_lean():
    import subprocess
    import sys
    code = ("import sys, process_manager; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('discord', 'wavelink', 'sandbox', 'psutil')]; "
            "print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=pm.HERE, check=True)
    assert result.stdout.strip() == "[]"


def test_check_is_imported_only_for_check():
    import subprocess
    import sys
    code = "import sys, process_manager; print('utils.fleet_check' in sys.modules, 'urllib.request' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=pm.HERE, check=True)
    assert result.stdout.split() == ["False", "False"]


# --- --check lines (utils/fleet_check.py); the real HTTP exchange is covered end to end -----------------


def test_check_bot_rejects_malformed_token_without_asking_discord(monkeypatch):
    monkeypatch.setattr(fleet_check, "_http_get_json", lambda *a, **k: pytest.fail("no request expected"))
    ok, line = fleet_check.check_bot(2, {"BOT_TOKEN_2": "Bot " + TOKEN})
    assert not ok and line.startswith("Bot 2: ERROR — BOT_TOKEN_2 must be the bare token") and TOKEN not in line


def test_run_check_reports_bad_lavalink_uri_once(monkeypatch):
    monkeypatch.setattr(fleet_check, "_http_get_json", lambda *a, **k: {"id": "1000", "username": "Music 1"})
    out = io.StringIO()
    assert fleet_check.run_check([1], {"BOT_TOKEN_1": TOKEN, "LAVALINK_URI": "ftp://x"}, out) == 1
    assert out.getvalue().splitlines() == ["Bot 1: OK — Music 1 (id 1000)",
                                           "Lavalink: ERROR — LAVALINK_URI entry 1 must look like http://host:2333"]


def test_first_crash_while_running_restarts_in_the_same_tick_then_backoff(fleet, clock, spawn, printer):
    """supervisord restarts a bot that exits unexpectedly from RUNNING at once; only repeated failures back off."""
    manager = fleet()
    proc = running(manager, clock, spawn)
    first = spawn.last(1)
    first.status = -signal.SIGKILL
    manager.tick()  # one tick: reaped, and started again
    assert proc.state is S.STARTING and spawn.last(1) is not first
    assert printer.notices[-2:] == ["Bot 1: RUNNING -> BACKOFF (signal SIGKILL after 3.0 s, restarting now)",
                                    f"Bot 1: BACKOFF -> STARTING (pid {spawn.last(1).pid})"]
    crash(manager, clock, spawn)  # failing again while STARTING: now the backoff applies
    assert proc.state is S.BACKOFF and proc.delay - clock.now == 1


def test_first_crash_while_starting_still_backs_off(fleet, clock, spawn):
    manager = fleet()
    manager.tick()
    crash(manager, clock, spawn)
    assert manager.processes[1].state is S.BACKOFF and manager.processes[1].delay - clock.now == 1


# --- redeploy (SIGHUP) -----------------------------------------------------------------------------------


def redeploying_fleet(fleet, clock, spawn, count=3):
    manager = fleet(tuple(range(1, count + 1)))
    manager.tick()
    advance(manager, clock, CONFIG.startsecs)
    for n in manager.processes:
        spawn.answer(n)
    old = {n: spawn.last(n) for n in manager.processes}
    manager.handle_signal(signal.SIGHUP)
    manager.tick()
    return manager, old


def test_sighup_restarts_bots_one_at_a_time_each_after_the_previous_answers(fleet, clock, spawn, printer):
    manager, old = redeploying_fleet(fleet, clock, spawn)
    assert spawn.server_restarts == 1  # a fresh fork server first: the new code
    assert "redeploy: restarting Bot 1, Bot 2, Bot 3 one at a time" in printer.notices
    assert old[1].signals == [signal.SIGTERM] and old[2].signals == old[3].signals == []
    old[1].status = 0
    manager.tick()
    assert manager.processes[1].state is S.STARTING and spawn.last(1) is not old[1]
    advance(manager, clock, 30)  # up, but not answering yet: the next bot waits
    assert old[2].signals == [] and manager.processes[2].state is S.RUNNING
    spawn.answer(1)
    manager.tick()
    assert "redeploy: Bot 1 answers again" in printer.notices and old[2].signals == [signal.SIGTERM]
    assert old[3].signals == []
    for n in (2, 3):
        old[n].status = 0
        manager.tick()
        spawn.answer(n)
        manager.tick()
    assert printer.notices[-1] == "redeploy done"
    assert all(p.state is S.STARTING or p.state is S.RUNNING for p in manager.processes.values())
    assert [len(spawn.children[n]) for n in (1, 2, 3)] == [2, 2, 2] and not manager.stopping


def test_redeploy_halts_when_a_restarted_bot_does_not_come_back(fleet, clock, spawn, printer):
    manager, old = redeploying_fleet(fleet, clock, spawn)
    old[1].status = 0
    manager.tick()
    spawn.last(1).status = 78  # the new code cannot read its configuration
    manager.tick()
    assert manager.processes[1].state is S.FATAL
    assert printer.notices[-1] == ("redeploy halted: Bot 1 did not answer again (FATAL); "
                                   "Bot 2, Bot 3 keep running the old code")
    advance(manager, clock, 200)
    assert old[2].signals == old[3].signals == [] and manager.processes[2].state is S.RUNNING


def test_sigterm_during_redeploy_stops_everything(fleet, clock, spawn, printer):
    manager, old = redeploying_fleet(fleet, clock, spawn)
    manager.handle_signal(signal.SIGTERM)
    for n in (1, 2, 3):
        old[n].status = 0
    manager.tick()
    assert manager.finished and manager.exit_code == 0


def test_the_ready_line_the_redeploy_waits_for_is_logged_even_under_log_level_warning(capsys):
    import logging

    import bot
    from utils.log import setup_logging

    try:
        setup_logging(4, "WARNING")
        logging.getLogger("bot").info("an ordinary info line")  # LOG_LEVEL=WARNING hides these ...
        bot.ready_log.info("ready as %s (id %s) in %d guild(s)", "Music 4", 44, 1)  # ... but not this one
        lines = capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger().handlers.clear()
    assert len(lines) == 1 and pm.READY_LINE.search(lines[0]) and lines[0].startswith("[Bot 4] "), lines


def test_status_table_shows_the_fork_server_beside_the_bots(fleet, clock, spawn, printer):
    spawn.server = type("Server", (), {"pid": 4242})()  # as utils/fork_spawn.ForkServerSpawner holds it
    manager = fleet((1,))
    manager.memory = lambda pid: (3 * 2**20, 9 * 2**20) if pid == 4242 else (12 * 2**20, 15 * 2**20)
    manager.tick()
    manager.handle_signal(signal.SIGUSR1)
    header, bot, server = printer.blocks[0]
    assert bot.split()[:2] == ["Bot", "1"] and bot.split()[6:10] == ["12.0", "MB", "15.0", "MB"]
    assert server.split() == ["fork", "server", "-", "4242", "-", "-", "3.0", "MB", "9.0", "MB", "-"]
