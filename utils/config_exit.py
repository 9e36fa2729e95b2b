"""Make exit 78 (configuration error) final under supervisord too.

supervisord counts any exit within `startsecs` of the spawn as a failed start, whatever its code: BACKOFF,
retried `startretries` times, then FATAL. `exitcodes` (0,78 in supervisord.conf) only applies to a process
that got past startsecs. A rejected token is known within a second or two, so without help every start
would log in 1 + startretries times before giving up. A bot with a configuration error therefore outlasts
startsecs before exiting 78 when supervisord runs it: supervisord then sees an expected exit and leaves it
EXITED, after a single login attempt.

supervisord sets SUPERVISOR_ENABLED in its children's environment; supervisord.conf passes its startsecs
as SUPERVISOR_STARTSECS. process_manager.py sets neither (it knows 78 itself), so nothing waits there.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping

STARTSECS_VAR = "SUPERVISOR_STARTSECS"
DEFAULT_STARTSECS = 3.0  # supervisord.conf's startsecs, should the variable be missing
MARGIN = 0.5  # the uptime is counted from main(), which runs after supervisord took its start time


def config_exit_delay(env: Mapping[str, str], uptime: float) -> float:
    """Seconds to wait before exiting 78 after `uptime` seconds: 0 unless supervisord started us."""
    if not env.get("SUPERVISOR_ENABLED"):
        return 0.0
    try:
        startsecs = float(env.get(STARTSECS_VAR, DEFAULT_STARTSECS))
    except ValueError:
        startsecs = DEFAULT_STARTSECS
    if not startsecs >= 0:  # also NaN
        startsecs = DEFAULT_STARTSECS
    return max(0.0, startsecs + MARGIN - uptime)


class _StopWaiting(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signal = signal.Signals(signum)


def hold_config_exit(started: float, say: Callable[[str], None], env: Mapping[str, str]) -> None:
    """Before exiting 78: under supervisord, wait until the process has outlasted startsecs.

    `started` is a time.monotonic() taken when the process began; `say` writes one log line.
    SIGTERM or SIGINT end the wait at once (supervisorctl stop must not wait for it).
    """
    delay = config_exit_delay(env, time.monotonic() - started)
    if delay <= 0:
        return
    armed = True

    def stop_waiting(signum: int, frame: object) -> None:
        if armed:
            raise _StopWaiting(signum)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, stop_waiting)
        # Announced once the handlers are in place: from this line on, a stop request ends the wait.
        say(f"configuration error under supervisord: exiting 78 in {delay:.1f} s, once past its startsecs, "
            "so that it counts as final and is not retried")
        time.sleep(delay)
    except _StopWaiting as stop:
        armed = False
        say(f"{stop.signal.name} received, exiting now")
    finally:
        armed = False  # a second signal while the handlers are put back is ignored, not raised out of here
        for sig, handler in previous.items():
            signal.signal(sig, handler)
