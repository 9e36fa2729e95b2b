"""utils/fork_spawn.py without a real fork server: the fallback to exec and what the server is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ksm_merge_any
from utils import fork_spawn

ROOT = Path(__file__).resolve().parents[2]


class FakeExec:
    """Stands in for process_manager.SubprocessSpawner (the exec path)."""

    def __init__(self, python: str) -> None:
        self.python, self.script, self.cwd = python, ROOT / "bot.py", ROOT
        self.started: list[int] = []

    def command(self, index: int) -> list[str]:
        return [self.python, str(self.script), "--bot", str(index)]

    def environment(self, index: int) -> dict[str, str]:
        return {f"BOT_TOKEN_{index}": "secret"}

    def __call__(self, index, on_line):
        self.started.append(index)
        return f"exec'd bot {index}"


def test_a_fork_server_that_cannot_start_falls_back_to_exec(monkeypatch):
    monkeypatch.setattr(fork_spawn, "become_subreaper", lambda: True)
    notices: list[str] = []
    fallback = FakeExec("/nonexistent/python3")
    spawner = fork_spawn.ForkServerSpawner(fallback, notify=notices.append)
    spawner.restart_server()
    assert spawner.server is None and notices[-1].startswith("could not start a fork server (")
    assert spawner(2, lambda line: None) == "exec'd bot 2"
    assert fallback.started == [2]
    assert notices[-2].startswith("fork server: Bot 2 not forked (")
    assert notices[-2].endswith("retrying with a new server")
    assert notices[-1].endswith("exec'ing it instead")


def test_without_a_subreaper_every_bot_is_execd(monkeypatch):
    monkeypatch.setattr(fork_spawn, "become_subreaper", lambda: False)
    notices: list[str] = []
    fallback = FakeExec("/nonexistent/python3")
    spawner = fork_spawn.ForkServerSpawner(fallback, notify=notices.append)
    spawner.restart_server()  # as main() does: no server is started at all
    spawner.maintain(set(), now=100.0)
    assert spawner(1, lambda line: None) == "exec'd bot 1"
    assert notices == ["cannot become a child subreaper (PR_SET_CHILD_SUBREAPER): bots will be exec'd"]


def test_the_fork_server_gets_no_token(monkeypatch):
    monkeypatch.setattr(fork_spawn, "become_subreaper", lambda: True)
    for name in ("BOT_TOKEN_1", "BOT_TOKEN_FILE_2", "BOT_TOKEN_DIR", "BOT_TOKEN"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("LAVALINK_URI", "http://node:2333")
    env = fork_spawn.ForkServerSpawner(FakeExec("python"), notify=print).server_environment()
    assert not [k for k in env if k.startswith("BOT_TOKEN")]
    assert env["LAVALINK_URI"] == "http://node:2333"


@pytest.mark.parametrize("name", ["fork_server", "utils.fork_spawn", "process_manager"])
def test_process_manager_side_imports_no_discord(name):
    """The manager and its fork client stay lean; only the server (another process) imports the bot."""
    import subprocess
    import sys

    code = (f"import sys, {name}; bad = [m for m in ('discord', 'wavelink', 'aiohttp') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


ORPHANS = r'''
import os, sys, time
sys.path.insert(0, os.getcwd())
from utils import fork_spawn

spawner = fork_spawn.ForkServerSpawner(None, notify=print)
assert spawner.subreaper
r, w = os.pipe()
middle = os.fork()
if middle == 0:  # leaves an orphan behind, as a bot's own child or a half-done fork would
    orphan = os.fork()
    if orphan == 0:
        os._exit(0)
    os.write(w, str(orphan).encode())
    os._exit(0)
os.close(w)
orphan = int(os.read(r, 32))
os.waitpid(middle, 0)
known = os.fork()
if known == 0:
    os._exit(3)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:  # both exited: zombies of this process (the subreaper)
    states = [open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] for pid in (orphan, known)]
    if states == ["Z", "Z"]:
        break
    time.sleep(0.01)
spawner.reap_orphans({known})  # the orphan (re-parented first, so first in line) goes; the known child stays
print("orphan left" if os.path.exists(f"/proc/{orphan}") else "orphan reaped")
assert os.waitpid(known, 0)[1] >> 8 == 3  # its owner reaps it, status intact
'''


def test_orphans_of_the_subreaper_are_reaped_and_known_children_are_not():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", ORPHANS], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "orphan reaped"


def test_a_dead_server_is_replaced_on_the_next_tick_and_a_failing_start_is_not_retried_every_tick(monkeypatch):
    monkeypatch.setattr(fork_spawn, "become_subreaper", lambda: True)
    monkeypatch.setattr(fork_spawn.ForkServerSpawner, "reap_orphans", lambda self, known: None)
    notices: list[str] = []
    spawner = fork_spawn.ForkServerSpawner(FakeExec("/nonexistent/python3"), notify=notices.append)
    spawner.maintain(set(), now=0.0)
    assert notices == []  # no server wanted yet: main() asks for the first one
    spawner.restart_server()
    notices.clear()
    spawner.maintain(set(), now=100.0)
    assert len(notices) == 1 and notices[0].endswith(f"retrying in {fork_spawn.SERVER_RETRY:g} s")
    spawner.maintain(set(), now=100.0 + fork_spawn.SERVER_RETRY - 1)
    assert len(notices) == 1  # not once per tick
    spawner.maintain(set(), now=100.0 + fork_spawn.SERVER_RETRY)
    assert len(notices) == 2
    spawner.close()
    spawner.maintain(set(), now=1000.0)
    assert len(notices) == 2  # a closed spawner starts nothing


def test_the_fork_server_holds_nothing_a_bot_must_own_before_it_forks():
    """No thread, no network socket, no open file, no token: only stdio and its request socket (checked
    on the real fork_server.py after it preloaded discord.py, wavelink and every cog)."""
    import os
    import sys

    import psutil

    lines: list[str] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_TOKEN")}
    server = fork_spawn.ForkServer(sys.executable, ROOT / "bot.py", ROOT, env, lines.append)
    try:
        proc = psutil.Process(server.pid)
        assert server.ready["ready"] and proc.num_threads() == 1
        assert proc.open_files() == []
        sockets = proc.net_connections(kind="all")
        assert len(sockets) == 1 and sockets[0].family.name == "AF_UNIX", sockets
        assert len(os.listdir(f"/proc/{server.pid}/fd")) == 4  # stdin, stdout, stderr, the request socket
        assert not any(k.startswith("BOT_TOKEN") for k in proc.environ())
        assert {"discord", "wavelink", "commands.playback"} <= set(server.ready.get("modules", []))
    finally:
        server.close()
    assert lines == []  # it printed nothing


@pytest.mark.skipif(ksm_merge_any() is None, reason="this kernel does not report PR_SET_MEMORY_MERGE (Linux 6.4+)")
@pytest.mark.parametrize("ksm", [True, False])
def test_the_fork_server_opts_in_to_same_page_merging_unless_told_not_to(ksm):
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_TOKEN")}
    server = fork_spawn.ForkServer(sys.executable, ROOT / "bot.py", ROOT, env, print, ksm=ksm)
    try:
        assert server.ready["ksm"] == ("on" if ksm else "off (--no-ksm)")
        assert ksm_merge_any(server.pid) is ksm
    finally:
        server.close()
