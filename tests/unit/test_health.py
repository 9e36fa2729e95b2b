"""/healthz and /metrics without a bot: the readiness verdict, the loop-lag clock, the acknowledgement clock,
the manager's probe and `--status` table, and the health-timeout restart in the manager's state machine."""

from __future__ import annotations

import asyncio
import io
import math
import signal
import socket
import threading
import time

import pytest
from prometheus_client import REGISTRY

import process_manager as pm
from process_manager import BotProcess, FleetManager, ProcessConfig, ProcessState
from tests.unit.test_process_manager import FakeClock, FakePrinter, FakeSpawn
from utils import metrics
from utils.config import ConfigError, Settings
from utils.health import HealthInput, LoopLagMonitor, health_payload
from utils.health_probe import Health, HealthWatcher, fetch_health, health_timeout, probe_host, status_report

S = ProcessState
TOKEN = "MTAwMA.fake.token-secret-value"


def info(**changes) -> HealthInput:
    base = dict(bot=2, pid=4242, uptime=12.34, ready=True, gateway_latency=0.0421, nodes={"node-1": "CONNECTED"},
                players=3, queued=7, loop_lag=0.004)
    return HealthInput(**{**base, **changes})


# ---- the verdict --------------------------------------------------------------------------------------------

def test_ready_bot_answers_200_with_every_field():
    status, body = health_payload(info())
    assert status == 200
    assert body == {"bot": 2, "ready": True, "pid": 4242, "uptime_s": 12.3, "gateway_latency_ms": 42.1,
                    "nodes": {"node-1": "CONNECTED"}, "players": 3, "queued_tracks": 7, "loop_lag_ms": 4.0}


@pytest.mark.parametrize("changes, problem", [
    ({"ready": False}, "not connected to Discord"),
    ({"nodes": {"node-1": "CONNECTING", "node-2": "DISCONNECTED"}}, "no Lavalink node connected"),
    ({"nodes": {}}, "no Lavalink node connected"),
    ({"loop_lag": 0.8}, "event loop lags 800 ms (limit 500 ms)"),
    ({"closing": True}, "shutting down"),
])
def test_not_ready_answers_503_and_says_why(changes, problem):
    status, body = health_payload(info(**changes))
    assert status == 503 and body["ready"] is False
    assert any(problem in p for p in body["problems"]), body["problems"]


def test_one_live_node_of_two_is_enough():
    assert health_payload(info(nodes={"node-1": "DISCONNECTED", "node-2": "CONNECTED"}))[0] == 200


def test_latency_before_the_first_heartbeat_is_null_not_infinity():
    status, body = health_payload(info(gateway_latency=math.inf))
    assert body["gateway_latency_ms"] is None and status == 200


# ---- loop lag -----------------------------------------------------------------------------------------------

async def test_lag_monitor_sees_a_callback_that_blocks_the_loop():
    monitor = LoopLagMonitor(every=0.5)
    monitor.start()
    try:
        await asyncio.sleep(0)  # the monitor now sleeps until 0.5 s from here
        assert monitor.current() < 0.2
        time.sleep(1.0)  # a blocking call on the loop: the monitor's timer fires 0.5 s late
        assert monitor.current() >= 0.5  # overdue already, before it even woke
        await asyncio.sleep(0.01)
        assert monitor.last_lag >= 0.5  # its sample; the next one is 0.5 s away
    finally:
        monitor.stop()


def test_lag_monitor_not_started_reports_no_lag():
    clock = FakeClock(0)
    monitor = LoopLagMonitor(every=0.25, clock=clock)
    clock.now = 100
    assert monitor.current() == 0.0


# ---- acknowledgement latency ----------------------------------------------------------------------------------

def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_ack_clock_observes_the_callback_of_a_received_interaction():
    clock = FakeClock(10.0)
    acks = metrics.AckClock(clock)
    before = sample("musicbot_interaction_ack_seconds_count")
    acks.received(123)
    clock.now = 10.3
    assert acks.request_done("/api/v10/channels/5/messages", 200) is None  # not a callback
    assert acks.request_done("/api/v10/interactions/999/tok/callback", 204) is None  # not ours
    assert acks.request_done("/api/v10/interactions/123/a-token/callback", 204) == pytest.approx(0.3)
    assert acks.request_done("/api/v10/interactions/123/a-token/callback", 204) is None  # once only
    assert sample("musicbot_interaction_ack_seconds_count") == before + 1


def test_ack_clock_forgets_old_interactions():
    acks = metrics.AckClock(FakeClock())
    for i in range(acks.KEEP + 5):
        acks.received(i)
    assert acks.request_done("/interactions/0/t/callback", 204) is None  # dropped: never grows without bound
    assert acks.request_done("/interactions/7/t/callback", 204) == 0.0


def test_ack_clock_counts_a_rate_limited_callback_when_its_retry_passes():
    clock = FakeClock(10.0)
    acks = metrics.AckClock(clock)
    acks.received(5)
    clock.now = 10.4
    assert acks.request_done("/interactions/5/t/callback", 429) is None  # refused: not acknowledged yet
    clock.now = 10.9
    assert acks.request_done("/interactions/5/t/callback", 204) == pytest.approx(0.9)  # from arrival, retry included


# ---- configuration ------------------------------------------------------------------------------------------

def env(**extra: str) -> dict[str, str]:
    return {"BOT_TOKEN_1": TOKEN, "BOT_TOKEN_3": TOKEN, **extra}


def test_metrics_port_is_base_plus_bot_number_and_off_when_unset():
    assert Settings.from_env(3, env(METRICS_PORT="9100")).metrics_port == 9103
    assert Settings.from_env(3, env(METRICS_PORT="9100")).metrics_host == "127.0.0.1"
    assert Settings.from_env(3, env(METRICS_PORT="9100", METRICS_HOST="0.0.0.0")).metrics_host == "0.0.0.0"
    assert Settings.from_env(3, env()).metrics_port is None


@pytest.mark.parametrize("value, message", [("abc", "METRICS_PORT must be a whole number"),
                                            ("65535", "METRICS_PORT + 3 (bot 3's port) is above 65535")])
def test_bad_metrics_port_is_a_configuration_error(value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        Settings.from_env(3, env(METRICS_PORT=value))


def test_health_timeout_and_probe_host():
    assert health_timeout({}) == 60 and health_timeout({"HEALTH_TIMEOUT": "0"}) == 0
    assert health_timeout({"HEALTH_TIMEOUT": "7.5"}) == 7.5
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="HEALTH_TIMEOUT"):
            health_timeout({"HEALTH_TIMEOUT": bad})
    assert probe_host({}) == "127.0.0.1" and probe_host({"METRICS_HOST": "0.0.0.0"}) == "127.0.0.1"
    assert probe_host({"METRICS_HOST": "10.1.2.3"}) == "10.1.2.3"


# ---- the manager's probe -----------------------------------------------------------------------------------

def serve_once(answer: bytes | None) -> tuple[int, threading.Thread, socket.socket]:
    """A one-connection TCP server: sends `answer` (None: reads and never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def run():
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            if answer is not None:
                conn.sendall(answer)
            else:
                threading.Event().wait(1.0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, server


def test_fetch_health_reads_status_and_json():
    port, thread, server = serve_once(b'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n'
                                      b'{"ready": false, "players": 2}')
    with server:
        health = fetch_health("127.0.0.1", port, timeout=5)
    assert health.status == 503 and not health.ready and health.body["players"] == 2


def test_fetch_health_of_a_silent_bot_times_out():
    port, thread, server = serve_once(None)  # accepts (the kernel does, even for a stopped process), never answers
    with server, pytest.raises(OSError):
        fetch_health("127.0.0.1", port, timeout=0.2)


def test_status_report_prints_one_row_per_bot_and_fails_when_one_is_not_ready():
    answers = {9101: Health(200, {"pid": 11, "uptime_s": 75, "gateway_latency_ms": 41.6, "players": 2,
                                  "queued_tracks": 5, "loop_lag_ms": 1.2, "nodes": {"node-1": "CONNECTED"}}),
               9102: Health(503, {"pid": 12, "players": 0, "problems": ["no Lavalink node connected"]})}

    def fetch(host, port):
        if port not in answers:
            raise ConnectionRefusedError(111, "Connection refused")
        return answers[port]

    out = io.StringIO()
    assert status_report([1, 2, 3], {"METRICS_PORT": "9100"}, out, fetch=fetch) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["BOT", "READY", "PID", "UPTIME", "LATENCY", "PLAYERS", "QUEUED", "LOOP", "LAG",
                                "NODES", "/", "PROBLEMS"]
    assert lines[1].split() == ["Bot", "1", "yes", "11", "1m15s", "42", "ms", "2", "5", "1", "ms", "node-1",
                                "CONNECTED"]
    assert "no (503)" in lines[2] and "no Lavalink node connected" in lines[2]
    assert "no answer" in lines[3] and "127.0.0.1:9103: Connection refused" in lines[3]
    answers[9103] = answers[9101]
    assert status_report([1, 3], {"METRICS_PORT": "9100"}, io.StringIO(), fetch=fetch) == 0


def test_status_report_without_metrics_port_is_a_configuration_error():
    with pytest.raises(ConfigError, match="METRICS_PORT is not set"):
        status_report([1], {}, io.StringIO())


# ---- HEALTH_TIMEOUT in the state machine ---------------------------------------------------------------------

class FakeWatcher(HealthWatcher):
    def __init__(self) -> None:
        super().__init__({}, "127.0.0.1", interval=1.0)
        self.answers: dict[int, tuple[float, Health]] = {}

    def start(self) -> None:
        pass

    def latest(self, index):
        return self.answers.get(index)


CONFIG = ProcessConfig(startsecs=3, startretries=3, stopwaitsecs=10, backoff_cap=8, stablesecs=60, health_timeout=20)


def fleet(clock, spawn, watcher=None, config=CONFIG) -> tuple[FleetManager, FakePrinter]:
    printer = FakePrinter()
    manager = FleetManager([1, 2], spawn=spawn, printer=printer, clock=clock, config=config, stagger=0,
                           status_interval=0, memory=lambda pid: (50 * 2**20, 40 * 2**20), health=watcher)
    return manager, printer


def test_a_bot_whose_healthz_goes_silent_is_killed_and_restarted():
    clock, spawn, watcher = FakeClock(100.0), FakeSpawn(), FakeWatcher()
    manager, printer = fleet(clock, spawn, watcher)
    manager.tick()
    for t in range(101, 131):  # both answer every second for 30 s
        clock.now = t
        watcher.answers = {1: (t, Health(200, {"players": 1})), 2: (t, Health(200, {"players": 0}))}
        manager.tick()
    first = spawn.last(1)
    assert manager.processes[1].state is S.RUNNING and first.signals == []
    # Bot 1 stops answering at 130 (SIGSTOP, a stuck loop); bot 2 goes on.
    for t in range(131, 150):
        clock.now = t
        watcher.answers[2] = (t, Health(200, {}))
        manager.tick()
    assert first.signals == []  # 19 s of silence: still within HEALTH_TIMEOUT
    clock.now = 150
    manager.tick()
    assert first.signals == [signal.SIGKILL]  # not SIGTERM: the stuck loop would never handle it
    assert any("Bot 1: /healthz silent for 20 s (HEALTH_TIMEOUT 20 s): SIGKILL to pid" in n for n in printer.notices)
    clock.now = 151
    manager.tick()
    assert first.signals == [signal.SIGKILL]  # once
    first.status = -signal.SIGKILL
    clock.now = 152
    manager.tick()  # killed while RUNNING: restarted at once, like any crash of a running bot
    assert manager.processes[1].state is S.STARTING and spawn.last(1) is not first
    clock.now = 153
    manager.tick()
    assert spawn.last(2).signals == [] and manager.processes[2].state is S.RUNNING
    # The old answer (from before the restart) does not count for the new child, nor does it kill it at once.
    assert manager.processes[1].health is None
    row = manager.status_rows(153)[0]
    assert row[-1] == "signal SIGKILL (/healthz silent), 1s ago"


def test_a_bot_that_never_answers_after_start_is_restarted_after_the_timeout():
    clock, spawn, watcher = FakeClock(100.0), FakeSpawn(), FakeWatcher()
    manager, _ = fleet(clock, spawn, watcher)
    manager.tick()
    clock.now = 119
    watcher.answers = {2: (118.0, Health(503, {}))}  # a 503 is an answer: not ready, but its loop runs
    manager.tick()
    assert spawn.last(1).signals == [] and spawn.last(2).signals == []
    clock.now = 120
    manager.tick()
    assert spawn.last(1).signals == [signal.SIGKILL] and spawn.last(2).signals == []


def test_no_health_timeout_without_metrics():
    clock, spawn = FakeClock(100.0), FakeSpawn()
    manager, _ = fleet(clock, spawn, None, ProcessConfig(startsecs=3, health_timeout=0))
    manager.tick()
    clock.now = 10_000
    manager.tick()
    assert spawn.last(1).signals == [] and manager.processes[1].state is S.RUNNING


def test_status_table_shows_readiness_latency_and_players_from_healthz():
    clock, spawn, watcher = FakeClock(100.0), FakeSpawn(), FakeWatcher()
    manager, printer = fleet(clock, spawn, watcher)
    manager.tick()
    clock.now = 101
    manager.print_status(clock.now)
    assert printer.blocks[-1][1].split()[10:] == ["-", "-", "-", "-"]  # just started: not asked yet, not "silent"
    clock.now = 110
    watcher.answers = {1: (109.5, Health(200, {"gateway_latency_ms": 41.6, "players": 3})),
                       2: (101.0, Health(503, {"players": 0}))}
    manager.tick()
    manager.print_status(clock.now)
    header, bot1, bot2 = printer.blocks[-1]
    assert header.split() == ["BOT", "STATE", "PID", "UPTIME", "RESTARTS", "USS", "PSS", "READY", "LATENCY", "PLAYERS",
                              "LAST", "EXIT"]
    assert bot1.split()[10:] == ["yes", "42", "ms", "3", "-"]
    assert bot2.split()[10:] == ["silent", "9s", "-", "-", "-"]  # its last answer is 9 s old: it went quiet


def test_manager_status_flag_prints_the_table_and_exits(monkeypatch, capsys):
    monkeypatch.setattr(pm, "status_report", lambda indices, env, out: out.write(f"table of {indices}\n") and 0)
    for key in ("METRICS_PORT", "HEALTH_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BOT_TOKEN_1", TOKEN)
    monkeypatch.setenv("BOT_TOKEN_2", TOKEN)
    assert pm.main(["--env-file", "/dev/null", "--status"]) == 0
    assert capsys.readouterr().out == "table of [1, 2]\n"


def test_manager_refuses_a_bad_health_timeout(monkeypatch, capsys):
    monkeypatch.setenv("BOT_TOKEN_1", TOKEN)
    monkeypatch.setenv("METRICS_PORT", "9100")
    monkeypatch.setenv("HEALTH_TIMEOUT", "soon")
    assert pm.main(["--env-file", "/dev/null"]) == 78
    assert "HEALTH_TIMEOUT must be a number of seconds" in capsys.readouterr().err


def test_bot_process_ignores_answers_older_than_its_child():
    proc = BotProcess(1, CONFIG, FakeSpawn(), lambda m: None, lambda line: None)
    proc.spawn(100.0)
    proc.saw_health(99.0, Health(200, {}))
    assert proc.health is None and proc.silent_for(105.0) == 5.0
    proc.saw_health(104.0, Health(200, {}))
    assert proc.silent_for(105.0) == 1.0
