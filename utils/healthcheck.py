"""Container health check: GET /healthz of every bot the container runs (Docker HEALTHCHECK, Kubernetes probes).

    python -m utils.healthcheck [--bot N ...] [--live]

Exit 0 healthy, 1 not: what Docker's HEALTHCHECK and a Kubernetes exec probe read. Bot n serves /healthz on
METRICS_PORT+n, so the port differs per bot and a StatefulSet's single pod template cannot name it in an
httpGet probe; this probe computes it. With METRICS_PORT unset there is no endpoint and nothing to check (exit 0).

Which bots: --bot N (repeatable), else read from the container's main process (PID 1): `bot.py --bot N`;
`bot.py` alone (BOT_ID, BOT_ID_FROM_ORDINAL); `process_manager.py [--bots ...]` (every bot with a token, or its
selection); anything else (register_commands.py): none. Without --live only 200 counts (ready); with --live
any HTTP answer does (the process and its event loop are alive, e.g. while Lavalink is down): a liveness probe
must not restart a bot that is merely waiting for its node.
Standard library only: it runs every few seconds next to the bots.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from utils.config import ConfigError, resolve_bot_index
from utils.selection import SelectionError, parse_bot_selection, select_bots

TIMEOUT = 3.0  # seconds per request; Docker's --timeout and the probes' timeoutSeconds are above it
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class CheckError(Exception):
    """The probe cannot tell which bots to check (a configuration problem of the container)."""


def _option(argv: Sequence[str], name: str) -> str | None:
    """Value of `name` in an argv (`--bot 2` or `--bot=2`), the last one winning like argparse."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def bots_of_command(argv: Sequence[str], env: Mapping[str, str]) -> list[int]:
    """The bots that the command line `argv` (the container's main process) runs."""
    script = next((Path(a).name for a in argv if a.endswith(".py")), "")
    try:
        if script == "bot.py":
            given = _option(argv, "--bot")
            return [resolve_bot_index(int(given) if given and given.isdigit() else None, env)]
        if script == "process_manager.py":
            selection = _option(argv, "--bots")
            return select_bots(parse_bot_selection(selection) if selection else None, env)
    except (ConfigError, SelectionError, ValueError) as exc:
        raise CheckError(str(exc)) from None
    return []


def probe_host(env: Mapping[str, str]) -> str:
    """Where to reach the bots from inside their container: METRICS_HOST, loopback for a wildcard bind."""
    host = env.get("METRICS_HOST", "").strip()
    return _ANY_ADDRESS.get(host, host)


def check_bot(host: str, port: int, *, live: bool) -> tuple[bool, str]:
    """(healthy, one line): GET /healthz on host:port."""
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"no answer on {host}:{port} ({exc.__class__.__name__}: {exc})"
    finally:
        conn.close()
    ok = status == 200 or live
    return ok, f"/healthz answered {status}" + ("" if ok else " (not ready)")


def _pid1_argv() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.healthcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bot", type=int, action="append", metavar="N", help="check bot N (repeatable; default: "
                        "the bots of the container's main process)")
    parser.add_argument("--live", action="store_true", help="any HTTP answer counts (liveness), not only 200")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    raw_port = env.get("METRICS_PORT", "").strip()
    if not raw_port:
        print("metrics off (METRICS_PORT is not set): nothing to check")
        return 0
    if not raw_port.isascii() or not raw_port.isdigit():
        print("METRICS_PORT must be a port number")
        return 1
    try:
        bots = args.bot or bots_of_command(_pid1_argv(), env)
    except CheckError as exc:
        print(f"cannot tell which bots to check: {exc}")
        return 1
    host, healthy = probe_host(env), True
    for n in bots:
        ok, line = check_bot(host, int(raw_port) + n, live=args.live)
        print(f"[Bot {n}] {line}")
        healthy &= ok
    if not bots:
        print("no bot runs in this container: nothing to check")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
