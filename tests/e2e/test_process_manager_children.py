"""The real process_manager.py as a process, supervising a fake bot script (no discord.py, no sandbox)."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
MANAGER = ROOT / "process_manager.py"
TOKENS = {1: "MTAwMA.fake.token-secret-value", 2: "MTAwMQ.fake.token-secret-value2"}
LAVALINK_PASSWORD = "lava-secret-password"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

FAKE_BOT = r'''
import os, signal, sys, time
n = sys.argv[sys.argv.index("--bot") + 1]
mode = os.environ.get(f"FAKE_MODE_{n}", "run")
with open(os.path.join(os.environ["FAKE_PID_DIR"], f"bot-{n}.pids"), "a") as f:
    f.write(f"{os.getpid()}\n")
print(f"fake bot {n} mode {mode} argv {sys.argv[1:]}")
print(f"[Bot {n}] already prefixed", file=sys.stderr)
sys.stdout.buffer.write(b"bad bytes \xff\xfe end\n")
print("careless line: " + os.environ.get(f"BOT_TOKEN_{n}", ""), flush=True)
if mode == "config":
    sys.exit(78)
if mode == "config-late":
    time.sleep(0.8)
    sys.exit(78)
if mode == "crash":
    time.sleep(0.2)
    print("crashing now", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
else:
    def stop(*a):
        print("got SIGTERM, bye", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.05)
'''


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ManagerRun:
    """process_manager.py in its own session, its output collected line by line."""

    def __init__(self, tmp_path: Path, modes: dict[int, str], *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp_path = tmp_path
        script = tmp_path / "fake_bot.py"
        script.write_text(FAKE_BOT)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_TOKEN", "FAKE_", "DISCORD_", "LAVALINK"))}
        base.update(FAKE_PID_DIR=str(tmp_path), LOG_DIR=str(tmp_path / "logs"), PYTHONUNBUFFERED="1")
        for n, mode in modes.items():
            base[f"BOT_TOKEN_{n}"], base[f"FAKE_MODE_{n}"] = TOKENS[n], mode
        base.update(env or {})
        command = [sys.executable, str(MANAGER), "--env-file", str(tmp_path / "absent.env"),
                   "--bot-script", str(script), *args]
        self.proc = subprocess.Popen(command, cwd=tmp_path, env=base, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{text!r} not printed within {timeout} s; output:\n" + "\n".join(self.lines))
                self._cond.wait(remaining)

    def pids(self, n: int) -> list[int]:
        path = self.tmp_path / f"bot-{n}.pids"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def all_pids(self) -> list[int]:
        return [int(p) for f in self.tmp_path.glob("bot-*.pids") for p in f.read_text().split()]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)  # every line read
        return code

    def cleanup(self) -> None:
        for pid in [self.proc.pid, *self.all_pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(5)


@pytest.fixture(params=["fork", "exec"])
def manager(tmp_path, request):
    """Every test runs under both spawn modes: forked bots are supervised exactly as exec'd ones."""
    runs: list[ManagerRun] = []

    def start(modes: dict[int, str], *args: str, env: dict[str, str] | None = None) -> ManagerRun:
        run = ManagerRun(tmp_path, modes, "--spawn", request.param, *args, env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cleanup()


FAST = ("--startsecs", "0.1", "--stagger", "0.05", "--status-interval", "0")


def assert_clean_output(run: ManagerRun) -> None:
    out = run.output
    for token in TOKENS.values():
        assert token not in out
    assert all(line.startswith(("[Bot ", "[manager] ")) for line in run.lines), out


def test_crashing_bot_backs_off_then_fatal_while_sibling_runs(manager, tmp_path):
    run = manager({1: "run", 2: "crash"}, *FAST, "--startretries", "2", "--backoff-cap", "0.3")
    run.wait_for("Bot 2: BACKOFF -> FATAL")
    assert "Bot 2: RUNNING -> BACKOFF (exit 3 after" in run.output and "restart in 0.3 s" in run.output
    crashed = run.pids(2)
    assert len(crashed) == 3 and not any(alive(pid) for pid in crashed)  # reaped: no zombies left behind
    (bot1,) = run.pids(1)
    assert alive(bot1) and "Bot 1: RUNNING ->" not in run.output

    run.signal(signal.SIGUSR1)
    run.wait_for("LAST EXIT")
    row1 = run.wait_for(f"RUNNING  {bot1}")  # columns padded to the widest cell (the fork server's row, if any)
    row2 = run.wait_for("exit 3, ")  # its LAST EXIT cell ("exit 3, 0s ago"; log lines say "exit 3 after")
    assert re.match(r"\[manager\] Bot 2 +FATAL ", row2), row2
    assert str(bot1) in row1 and "MB" in row1 and row2.endswith("ago") and "exit 3" in row2
    assert "LAST EXIT" in run.output
    if "--spawn fork" in " ".join(run.proc.args):  # under the table: how much KSM merged (utils/ksm.py)
        ksm = run.wait_for("KSM: ksmd ")
        assert re.search(r"KSM: ksmd \w+; (\d+\.\d MB of the bots' and the fork server's pages are merged|merged "
                         r"pages not reported)", ksm), ksm

    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert "[Bot 1] got SIGTERM, bye" in run.output and "manager exiting with status 0" in run.output
    assert not alive(bot1)

    assert "[Bot 1]  fake bot 1" not in run.output and "[Bot 1] fake bot 1 mode run argv ['--bot', '1']" in run.output
    assert "[Bot 2] already prefixed" in run.lines  # the bot's own prefix is not doubled
    assert "[Bot 1] bad bytes \ufffd\ufffd end" in run.lines
    assert "[Bot 1] careless line: <redacted>" in run.lines
    assert_clean_output(run)
    manager_log = (tmp_path / "logs" / "manager.log").read_text()
    assert "Bot 2: BACKOFF -> FATAL" in manager_log and "STATE" in manager_log


def test_exit_78_is_not_restarted(manager):
    run = manager({1: "config", 2: "config-late"}, *FAST, "--startsecs", "0.5")
    assert run.wait() == 78
    out = run.output
    assert "Bot 1 exited 78 (configuration error): not restarting" in out
    assert "Bot 1: STARTING -> FATAL (exit 78" in out
    assert "Bot 2: RUNNING -> EXITED (exit 78" in out
    assert len(run.pids(1)) == 1 and len(run.pids(2)) == 1
    assert "BACKOFF" not in out
    assert_clean_output(run)


def test_sigterm_stops_all_children_killing_one_that_ignores_sigterm(manager):
    run = manager({1: "run", 2: "stubborn"}, *FAST, "--stopwaitsecs", "1")
    run.wait_for("Bot 2: STARTING -> RUNNING")
    pids = run.all_pids()
    assert len(pids) == 2 and all(alive(p) for p in pids)
    started = time.monotonic()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert 1.0 <= time.monotonic() - started < 5
    out = run.output
    assert "[Bot 2] ignoring SIGTERM" in out and "Bot 2: still running 1 s after SIGTERM: SIGKILL" in out
    assert "Bot 2: STOPPING -> STOPPED (signal SIGKILL" in out and "Bot 1: STOPPING -> STOPPED (exit 0" in out
    assert not any(alive(p) for p in pids)
    assert_clean_output(run)


def test_second_sigint_kills_at_once(manager):
    run = manager({1: "stubborn"}, *FAST, "--stopwaitsecs", "30")
    run.wait_for("Bot 1: STARTING -> RUNNING")
    (pid,) = run.pids(1)
    run.signal(signal.SIGINT)
    run.wait_for("[Bot 1] ignoring SIGTERM")
    started = time.monotonic()
    run.signal(signal.SIGINT)
    assert run.wait() == 0
    assert time.monotonic() - started < 3 and not alive(pid)
    assert "second SIGINT: SIGKILL" in run.output


def test_no_token_exits_78_naming_variables(manager):
    run = manager({})
    assert run.wait() == 78
    assert "BOT_TOKEN_1" in run.output and "BOT_TOKEN_2" in run.output
    assert "BOT_TOKEN (with BOT_ID) is for bot.py alone" in run.output  # the single-bot form is not the fleet's


# --- --check against a stub Discord REST + Lavalink -------------------------------------------------------


class _Stub(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization", "")
        if self.path == "/api/v10/users/@me":
            ok, body = auth == f"Bot {TOKENS[1]}", {"id": "1000", "username": "Music 1"}
        elif self.path == "/v4/info":
            ok, body = auth == LAVALINK_PASSWORD, {"version": {"semver": "4.0.8"}}
        else:
            ok, body = False, {}
        data = json.dumps(body if ok else {"message": "401: Unauthorized"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_check_reports_each_token_and_node(manager, stub_url):
    env = {"DISCORD_API_BASE": f"{stub_url}/api/v10", "LAVALINK_URI": f"{stub_url},http://127.0.0.1:1",
           "LAVALINK_PASSWORD": LAVALINK_PASSWORD}
    run = manager({1: "run", 2: "run"}, "--check", env=env)
    assert run.wait() == 1
    assert run.lines == [
        "Bot 1: OK — Music 1 (id 1000)",
        "Bot 2: REJECTED (401) — check BOT_TOKEN_2",
        f"Lavalink node-1 {stub_url}: OK — version 4.0.8",
        run.lines[3],
    ]
    assert run.lines[3].startswith("Lavalink node-2 http://127.0.0.1:1: UNREACHABLE — ")
    assert LAVALINK_PASSWORD not in run.output and not any(t in run.output for t in TOKENS.values())
    assert run.all_pids() == []  # no bot was started


def test_check_passes_and_flags_wrong_lavalink_password(manager, stub_url):
    env = {"DISCORD_API_BASE": f"{stub_url}/api/v10", "LAVALINK_URI": stub_url, "LAVALINK_PASSWORD": LAVALINK_PASSWORD}
    assert manager({1: "run"}, "--check", env=env).wait() == 0
    run = manager({1: "run"}, "--check", env={**env, "LAVALINK_PASSWORD": "wrong-password"})
    assert run.wait() == 1
    assert run.lines[-1] == f"Lavalink node-1 {stub_url}: UNAUTHORIZED — check LAVALINK_PASSWORD"
