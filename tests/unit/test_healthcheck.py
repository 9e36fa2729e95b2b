"""utils/healthcheck.py: the container probe (Docker HEALTHCHECK, Kubernetes exec probes) against real HTTP servers."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import pytest

from tests.helpers import ROOT, clean_env
from tests.unit.test_config import TOKEN_1, TOKEN_3
from utils.healthcheck import bots_of_command, main, probe_host


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ready": %s}' % (b"true" if code == 200 else b"false"))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    """serve(status) -> port of a /healthz answering `status` on 127.0.0.1."""
    servers = []

    def start(status: int) -> int:
        handler = type("Handler", (_Healthz,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Healthz)
    port = server.server_address[1]
    server.server_close()
    return port


def test_metrics_off_means_nothing_to_check(capsys):
    assert main(["--bot", "1"], {}) == 0
    assert capsys.readouterr().out == "metrics off (METRICS_PORT is not set): nothing to check\n"


def test_ready_bots_are_healthy(serve, capsys):
    two, three = serve(200), serve(200)
    # bot n listens on METRICS_PORT + n: two ports that fit one base are rare, so check each with its own base
    assert main(["--bot", "2"], {"METRICS_PORT": str(two - 2)}) == 0
    assert main(["--bot", "3"], {"METRICS_PORT": str(three - 3), "METRICS_HOST": "0.0.0.0"}) == 0
    assert capsys.readouterr().out == "[Bot 2] /healthz answered 200\n[Bot 3] /healthz answered 200\n"


def test_a_bot_that_is_not_ready_fails_readiness_but_not_liveness(serve, capsys):
    port = serve(503)
    env = {"METRICS_PORT": str(port - 1)}
    assert main(["--bot", "1"], env) == 1
    assert capsys.readouterr().out == "[Bot 1] /healthz answered 503 (not ready)\n"
    assert main(["--bot", "1", "--live"], env) == 0


def test_a_bot_that_does_not_answer_fails_even_liveness(capsys):
    port = _free_port()
    assert main(["--bot", "1", "--live"], {"METRICS_PORT": str(port - 1)}) == 1
    assert capsys.readouterr().out.startswith(f"[Bot 1] no answer on 127.0.0.1:{port} (ConnectionRefusedError")


def test_one_unready_bot_of_a_fleet_makes_the_container_unhealthy(serve, capsys, monkeypatch):
    ready, unready = serve(200), serve(503)
    ports = {1: ready, 2: unready}  # bot n's port is METRICS_PORT + n: route each bot to its test server
    real = __import__("utils.healthcheck", fromlist=["check_bot"]).check_bot
    monkeypatch.setattr("utils.healthcheck.check_bot",
                        lambda host, port, live: real(host, ports[port - 9000], live=live))
    monkeypatch.setattr("utils.healthcheck._pid1_argv", lambda: ["python", "process_manager.py"])
    assert main([], {"METRICS_PORT": "9000", "BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_2": TOKEN_3}) == 1
    assert capsys.readouterr().out == "[Bot 1] /healthz answered 200\n[Bot 2] /healthz answered 503 (not ready)\n"


@pytest.mark.parametrize("argv, env, bots", [
    (["python", "bot.py", "--bot", "3"], {}, [3]),
    (["/usr/local/bin/python", "/app/bot.py", "--bot=4"], {}, [4]),
    (["python", "bot.py"], {"BOT_ID_FROM_ORDINAL": "music-bot-4"}, [5]),
    (["python", "bot.py"], {"BOT_ID": "2"}, [2]),
    (["python", "process_manager.py"], {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_3": TOKEN_3}, [1, 3]),
    (["python", "process_manager.py", "--bots", "3"], {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_3": TOKEN_3}, [3]),
    (["python", "register_commands.py"], {"BOT_TOKEN_1": TOKEN_1}, []),
])
def test_the_bots_of_the_main_process(argv, env, bots):
    assert bots_of_command(argv, env) == bots


def test_a_pod_without_ordinal_is_reported_not_crashed(capsys, monkeypatch):
    monkeypatch.setattr("utils.healthcheck._pid1_argv", lambda: ["python", "bot.py"])
    assert main([], {"METRICS_PORT": "9100", "BOT_ID_FROM_ORDINAL": "music-bot"}) == 1
    assert capsys.readouterr().out.startswith("cannot tell which bots to check: BOT_ID_FROM_ORDINAL (music-bot)")


@pytest.mark.parametrize("bind, host", [("", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "::1"),
                                        ("10.1.2.3", "10.1.2.3")])
def test_probe_host(bind, host):
    assert probe_host({"METRICS_HOST": bind}) == host


def test_command_line(serve):
    port = serve(503)
    result = subprocess.run([sys.executable, "-m", "utils.healthcheck", "--bot", "2"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=clean_env({"METRICS_PORT": str(port - 2)}))
    assert (result.returncode, result.stdout) == (1, "[Bot 2] /healthz answered 503 (not ready)\n")
