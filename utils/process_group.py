"""Signalling a bot's process group, for both ways process_manager.py starts bots (exec and fork)."""

from __future__ import annotations

import os


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group led by `pid` (a bot in its own session), so nothing it started outlives
    it; only to `pid` itself where the group cannot be signalled, and nothing when it is gone already."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
