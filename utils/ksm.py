"""Kernel same-page merging (KSM) for forked bots: the kernel's fix for what CPython 3.11 un-shares.

A forked bot un-shares the fork server's pages it writes to, and CPython 3.11 writes to every object it
touches (reference counts, the specialising interpreter's inline caches, dict versions): ~12 MB per bot,
measured page by page in benchmarks/RESULTS.md ("Fork server vs exec"). Most of those pages end up
byte-identical in every bot (the same code ran on the same objects) or identical to the server's again (a
reference count went up and back down). KSM finds such pages and maps one read-only copy in all of them.

The fork server opts itself in with prctl(PR_SET_MEMORY_MERGE) (Linux 6.4+), which every child inherits;
systemd's MemoryKSM=yes does the same for a whole unit. Nothing merges until the host runs ksmd
(`echo 1 > /sys/kernel/mm/ksm/run`, as root): without it the opt-in costs nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

PR_SET_MEMORY_MERGE = 67
KSM_SYSFS = Path("/sys/kernel/mm/ksm")
ENABLE_HINT = "as root: echo 1 > /sys/kernel/mm/ksm/run"


def opt_in() -> str:
    """Opt this process (and every process it forks from now on) in to KSM: 'on', or why not."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) == 0:
            return "on"
        code = ctypes.get_errno()
    except (OSError, AttributeError) as exc:
        return f"unavailable ({exc})"
    if code == errno.EINVAL:
        return "unsupported by this kernel (Linux 6.4+ has PR_SET_MEMORY_MERGE)"
    return f"refused ({os.strerror(code)})"


def ksmd_state(sysfs: Path = KSM_SYSFS) -> str:
    """What the host's ksmd does: 'on', 'off', 'unmerging' or 'absent' (a kernel without KSM)."""
    try:
        run = (sysfs / "run").read_text().strip()
    except OSError:
        return "absent"
    return {"0": "off", "1": "on", "2": "unmerging"}.get(run, f"run={run}")


def _pages_as_bytes(counter: Path) -> int | None:
    """A page count the kernel reports in `counter`, in bytes, or None where it reports none."""
    try:
        return int(counter.read_text()) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def merged_bytes(pid: int) -> int | None:
    """Bytes of `pid`'s memory backed by merged pages (/proc/PID/ksm_merging_pages), or None."""
    return _pages_as_bytes(Path(f"/proc/{pid}/ksm_merging_pages"))


def host_saved_bytes(sysfs: Path = KSM_SYSFS) -> int | None:
    """Memory the host saves by merging, all processes together (pages_sharing: mappings beyond the first)."""
    return _pages_as_bytes(sysfs / "pages_sharing")


def describe(opted: str, sysfs: Path = KSM_SYSFS) -> str:
    """One line for the manager's log: the fork server's opt-in and whether anything will merge."""
    if opted != "on":
        return f"KSM {opted}"
    state = ksmd_state(sysfs)
    if state == "on":
        return "KSM on (ksmd runs: pages the bots write alike are merged again)"
    if state == "absent":
        return "KSM opted in, but this kernel has no KSM"
    return (f"KSM opted in, but ksmd is {state}: each bot keeps ~12 MB of un-shared pages ({ENABLE_HINT}, "
            f"see the README)")
