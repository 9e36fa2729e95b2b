"""Reading a bot's /healthz from process_manager.py (its status table, HEALTH_TIMEOUT and `--status`).

Standard library sockets only: urllib.request (and http.client) import ssl, which would add ~6 MB to the
long-running manager for a plain-HTTP GET on the loopback interface. No discord, no prometheus_client.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from utils.config import ConfigError, metrics_port

DEFAULT_HEALTH_TIMEOUT = 60.0
PROBE_TIMEOUT = 2.0  # a bot that takes longer to answer counts as not answering this time


@dataclass(frozen=True)
class Health:
    """One answer of GET /healthz."""

    status: int
    body: Mapping[str, object] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == 200

    def number(self, key: str) -> float | None:
        value = self.body.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def probe_host(env: Mapping[str, str]) -> str:
    """Where to reach the bots: METRICS_HOST, or the loopback address when they listen on every interface."""
    host = env.get("METRICS_HOST", "").strip() or "127.0.0.1"
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def health_timeout(env: Mapping[str, str]) -> float:
    """HEALTH_TIMEOUT in seconds (default 60; 0 = never restart a silent bot)."""
    raw = env.get("HEALTH_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_HEALTH_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError("HEALTH_TIMEOUT must be a number of seconds (0 disables the health restart)")
    return value


def fetch_health(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> Health:
    """GET /healthz; raises OSError (no answer in `timeout`, refused) or ValueError (not an HTTP answer)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode("ascii"))
        data = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete answer in time")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = {}
    return Health(int(parts[1]), payload if isinstance(payload, dict) else {})


class HealthWatcher:
    """Polls each bot's /healthz from a thread of its own (a stuck bot must not delay the others' probes or the
    manager's loop) and keeps the latest answer with its monotonic time."""

    def __init__(self, ports: Mapping[int, int], host: str, interval: float,
                 fetch: Callable[[str, int], Health] = fetch_health,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ports, self.host, self.interval = dict(ports), host, interval
        self._fetch, self._clock = fetch, clock
        self._latest: dict[int, tuple[float, Health]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        for index, port in self.ports.items():
            threading.Thread(target=self._run, args=(index, port), name=f"health-{index}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def latest(self, index: int) -> tuple[float, Health] | None:
        with self._lock:
            return self._latest.get(index)

    def _run(self, index: int, port: int) -> None:
        while not self._stop.is_set():
            try:
                health = self._fetch(self.host, port)
            except (OSError, ValueError):
                pass  # no answer: HEALTH_TIMEOUT counts from the last one
            else:
                with self._lock:
                    self._latest[index] = (self._clock(), health)
            self._stop.wait(self.interval)


def probe_interval(timeout: float) -> float:
    """Seconds between two probes of one bot: several probes fit in HEALTH_TIMEOUT, at most one per second."""
    return min(5.0, max(1.0, timeout / 5)) if timeout > 0 else 5.0


def latency_cell(health: Health) -> str:
    ms = health.number("gateway_latency_ms")
    return f"{ms:.0f} ms" if ms is not None and math.isfinite(ms) else "-"


def status_report(indices: Sequence[int], env: Mapping[str, str], out: IO[str],
                  fetch: Callable[[str, int], Health] = fetch_health) -> int:
    """`process_manager.py --status`: one /healthz probe per bot, a table, exit 0 when every bot is ready
    (1 otherwise; 78 when METRICS_PORT is unset, there is nothing to ask)."""
    host = probe_host(env)
    header = ("BOT", "READY", "PID", "UPTIME", "LATENCY", "PLAYERS", "QUEUED", "LOOP LAG", "NODES / PROBLEMS")
    rows, all_ready = [], True
    for index in indices:
        port = metrics_port(env, index)
        if port is None:
            raise ConfigError("METRICS_PORT is not set: the bots serve no /healthz (set it, e.g. METRICS_PORT=9100, "
                              "and restart them)")
        try:
            health = fetch(host, port)
        except (OSError, ValueError) as exc:
            all_ready = False
            reason = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc))
            rows.append((f"Bot {index}", "no answer", "-", "-", "-", "-", "-", "-", f"{host}:{port}: {reason}"))
            continue
        all_ready &= health.ready
        body = health.body
        nodes = body.get("nodes") if isinstance(body.get("nodes"), dict) else {}
        notes = ", ".join(f"{k} {v}" for k, v in nodes.items())
        if isinstance(body.get("problems"), list):
            notes = "; ".join(map(str, body["problems"]))
        uptime, lag = health.number("uptime_s"), health.number("loop_lag_ms")
        rows.append((f"Bot {index}", "yes" if health.ready else f"no ({health.status})", str(body.get("pid", "-")),
                     format_uptime(uptime) if uptime is not None else "-", latency_cell(health),
                     str(body.get("players", "-")), str(body.get("queued_tracks", "-")),
                     f"{lag:.0f} ms" if lag is not None else "-", notes or "-"))
    for line in format_table(header, rows):
        out.write(line + "\n")
    out.flush()
    return 0 if all_ready else 1


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    table = [tuple(header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]


def format_uptime(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
