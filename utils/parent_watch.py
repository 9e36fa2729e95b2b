"""Stop with the process manager: a bot started by process_manager.py must not outlive it.

If the manager itself is killed (SIGKILL, OOM killer), its children would keep running unsupervised,
and a restarted manager would start a second copy of every bot. On Linux the bot asks the kernel
for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), which takes the normal clean-shutdown
path; it then checks the parent is still the manager, in case it died before the request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
MANAGER_PID_VAR = "FLEET_MANAGER_PID"


def stop_with_manager() -> bool:
    """Arrange SIGTERM on the manager's death. True when armed; False when not under the manager or unsupported."""
    raw = os.environ.get(MANAGER_PID_VAR, "")
    if not (raw.isascii() and raw.isdigit()) or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError) as exc:
        log.warning("cannot arrange to stop with the process manager (%s)", exc)
        return False
    if os.getppid() != int(raw):
        log.error("the process manager (pid %s) is already gone; stopping", raw)
        os.kill(os.getpid(), signal.SIGTERM)
    return True
