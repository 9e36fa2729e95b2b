"""utils/ksm.py: the fork server's opt-in to same-page merging, and what the manager says about it."""

from __future__ import annotations

import errno

import pytest

from utils import ksm


class FakeLibc:
    def __init__(self, result: int, code: int = 0) -> None:
        self.result, self.code, self.calls = result, code, []

    def prctl(self, *args):
        self.calls.append(args)
        return self.result


@pytest.mark.parametrize(("result", "code", "said"), [
    (0, 0, "on"),
    (-1, errno.EINVAL, "unsupported by this kernel (Linux 6.4+ has PR_SET_MEMORY_MERGE)"),
    (-1, errno.EPERM, "refused (Operation not permitted)"),
])
def test_opt_in_says_whether_the_kernel_took_it(monkeypatch, result, code, said):
    libc = FakeLibc(result, code)
    monkeypatch.setattr(ksm.ctypes, "CDLL", lambda *a, **k: libc)
    monkeypatch.setattr(ksm.ctypes, "get_errno", lambda: code)
    assert ksm.opt_in() == said
    assert libc.calls == [(ksm.PR_SET_MEMORY_MERGE, 1, 0, 0, 0)]


@pytest.mark.parametrize(("run", "state"), [("0\n", "off"), ("1\n", "on"), ("2\n", "unmerging"), (None, "absent")])
def test_ksmd_state_reads_the_hosts_switch(tmp_path, run, state):
    if run is not None:
        (tmp_path / "run").write_text(run)
    assert ksm.ksmd_state(tmp_path) == state


def test_the_manager_line_says_what_an_operator_must_do(tmp_path):
    (tmp_path / "run").write_text("0\n")
    off = ksm.describe("on", tmp_path)
    assert off.startswith("KSM opted in, but ksmd is off") and "echo 1 > /sys/kernel/mm/ksm/run" in off
    (tmp_path / "run").write_text("1\n")
    assert ksm.describe("on", tmp_path).startswith("KSM on (ksmd runs")
    assert ksm.describe("off (--no-ksm)", tmp_path) == "KSM off (--no-ksm)"
    assert ksm.describe("on", tmp_path / "missing") == "KSM opted in, but this kernel has no KSM"


def test_merged_and_saved_bytes_are_read_from_the_kernel(tmp_path):
    import os

    (tmp_path / "pages_sharing").write_text("256\n")
    assert ksm.host_saved_bytes(tmp_path) == 256 * os.sysconf("SC_PAGE_SIZE")
    assert ksm.host_saved_bytes(tmp_path / "missing") is None
    assert ksm.merged_bytes(os.getpid()) is None or ksm.merged_bytes(os.getpid()) >= 0
    assert ksm.merged_bytes(2**22 + 12345) is None  # no such process
