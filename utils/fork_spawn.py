"""The manager's side of `--spawn fork`: start the fork server (fork_server.py), ask it for bots, supervise them.

Standard library only: process_manager.py imports this and must stay free of discord/wavelink. The server
imports the bot; this side only sends requests. Each request hands over, with socket.send_fds (SCM_RIGHTS),
the write end of a pipe that becomes the bot's stdout+stderr, and the read end of a pipe on which the bot's
environment (its own token only) follows: the server never holds a token, so no freed buffer of one bot's
token can be forked into the next.

The bots end up as the manager's own children (the server forks twice; the manager is a child subreaper),
so `ForkChild.poll` reaps them with waitpid like subprocess does for exec'd bots, and a dead fork server
costs no bot: the next spawn starts a new server, and if that fails, the bot is exec'd instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from utils.ksm import describe as describe_ksm
from utils.process_group import signal_group

PR_SET_CHILD_SUBREAPER = 36
READY_TIMEOUT = 60.0  # preloading takes ~0.3 s alone, seconds on a busy machine
REPLY_TIMEOUT = 15.0
MAX_MESSAGE = 1 << 16
SERVER_RETRY = 30.0  # after a fork server failed to start, wait this long before the next eager attempt
UNKNOWN_STATUS = 255  # exit status of a bot whose status could not be read: a crash, restarted


class Child(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def signal(self, sig: int) -> None: ...


def become_subreaper() -> bool:
    """Make orphaned descendants (the forked bots) this process's children (Linux); False when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ForkChild:
    """A forked bot: our child (via the subreaper), leader of its own session, output pumped by a thread."""

    def __init__(self, pid: int, out_fd: int, on_line: Callable[[str], None], eof_grace: float) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._eof = threading.Event()
        self._eof_grace = eof_grace
        self._exited_at: float | None = None
        threading.Thread(target=self._pump, args=(out_fd, on_line), name=f"output-{pid}", daemon=True).start()

    def _pump(self, out_fd: int, on_line: Callable[[str], None]) -> None:
        with open(out_fd, "rb", buffering=0) as stream:
            try:
                for raw in iter(lambda: stream.readline(1 << 16), b""):
                    on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            finally:
                self._eof.set()

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:  # peek without reaping: while a zombie, its process group id stays ours
            if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
        except ChildProcessError:  # reaped elsewhere: its status is lost (never expected with the subreaper)
            self.returncode = UNKNOWN_STATUS
            return self.returncode
        signal_group(self.pid, signal.SIGKILL)  # killasgroup: nothing the bot started outlives it
        if not self._eof.is_set():  # print its last lines before its exit is reported
            self._exited_at = self._exited_at or time.monotonic()
            if time.monotonic() - self._exited_at < self._eof_grace:
                return None
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.returncode is None:  # never signal a reaped pid: it may belong to someone else now
            signal_group(self.pid, sig)


def describe_status(code: int | None) -> str:
    if code is None:
        return "socket closed"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class ForkServerError(OSError):
    """The fork server could not be started or did not answer."""


class ForkServer:
    """One running fork_server.py process and our end of its socket."""

    def __init__(self, python: str, script: Path, cwd: Path, env: Mapping[str, str],
                 on_line: Callable[[str], None], ksm: bool = True) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        try:
            self.popen = subprocess.Popen(
                [python, str(cwd / "fork_server.py"), "--fd", str(theirs.fileno()), "--manager-pid", str(os.getpid()),
                 "--script", str(script), *(() if ksm else ("--no-ksm",))],
                cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self.popen.pid
        threading.Thread(target=self._pump, args=(on_line,), name="fork-server-output", daemon=True).start()
        self.ready = self._receive(READY_TIMEOUT)
        if not self.ready.get("ready"):
            self.close()
            raise ForkServerError(f"fork server said {self.ready}")

    def _pump(self, on_line: Callable[[str], None]) -> None:
        stdout = self.popen.stdout
        assert stdout is not None
        with stdout:
            for raw in iter(lambda: stdout.readline(1 << 16), b""):
                on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def _receive(self, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(MAX_MESSAGE)
        except OSError as exc:
            self.close()
            raise ForkServerError(f"fork server did not answer: {exc}") from exc
        if not data:
            code = self.popen.poll()
            self.close()
            raise ForkServerError(f"fork server exited ({'status ' + str(code) if code is not None else 'closed'})")
        try:
            reply = json.loads(data)
        except ValueError as exc:
            self.close()
            raise ForkServerError(f"fork server answered nonsense: {data[:80]!r}") from exc
        if not isinstance(reply, dict):
            self.close()
            raise ForkServerError(f"fork server answered nonsense: {data[:80]!r}")
        return reply

    def alive(self) -> bool:
        return self.popen.poll() is None and self.sock.fileno() != -1

    def fork(self, argv: list[str], cwd: Path, env: Mapping[str, str], on_line: Callable[[str], None],
             eof_grace: float) -> ForkChild:
        out_r, out_w = os.pipe()
        env_r, env_w = os.pipe()
        try:
            try:
                socket.send_fds(self.sock, [json.dumps({"argv": argv, "cwd": str(cwd)}).encode()], [out_w, env_r])
            except OSError as exc:
                self.close()
                raise ForkServerError(f"fork server unreachable: {exc}") from exc
            finally:
                os.close(out_w)
                os.close(env_r)
            payload = memoryview(json.dumps(dict(env)).encode())
            try:
                while payload:  # read by the bot once forked
                    payload = payload[os.write(env_w, payload):]
            except BrokenPipeError:
                pass  # no bot to read it: the reply says why
            os.close(env_w)
            env_w = -1
            reply = self._receive(REPLY_TIMEOUT)
        except BaseException:
            os.close(out_r)
            if env_w != -1:
                os.close(env_w)
            raise
        if "pid" not in reply:
            os.close(out_r)
            raise ForkServerError(f"fork server could not fork: {reply.get('error', reply)}")
        return ForkChild(int(reply["pid"]), out_r, on_line, eof_grace)

    def close(self) -> None:
        """Stop the server (its bots are not its children: they keep running)."""
        try:
            self.sock.close()
        except OSError:
            pass
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class ForkServerSpawner:
    """The `--spawn fork` seam: fork each bot from a preloaded server; exec it (`fallback`) when that fails."""

    def __init__(self, fallback: Any, *, notify: Callable[[str], None], eof_grace: float = 1.0,
                 ksm: bool = True) -> None:
        self.fallback = fallback  # a SubprocessSpawner: command(), environment(), cwd, python, script
        self.notify, self.eof_grace, self.ksm = notify, eof_grace, ksm
        self.server: ForkServer | None = None
        self.wanted = False  # a server should be running: set by restart_server, cleared by close
        self._retry_at = 0.0
        self.subreaper = become_subreaper()
        if not self.subreaper:
            self.notify("cannot become a child subreaper (PR_SET_CHILD_SUBREAPER): bots will be exec'd")

    def server_environment(self) -> dict[str, str]:
        """The manager's environment without any token: the server never holds one."""
        from utils.token_env import is_token_var

        env = {k: v for k, v in os.environ.items() if not is_token_var(k)}
        env.update(PYTHONUNBUFFERED="1")
        return env

    def start_server(self) -> ForkServer:
        started = time.monotonic()
        server = ForkServer(self.fallback.python, self.fallback.script, self.fallback.cwd,
                            self.server_environment(), lambda line: self.notify(f"fork server: {line}"), self.ksm)
        self.notify(f"fork server started (pid {server.pid}, preloaded in {server.ready.get('preload_s', '?')} s, "
                    f"ready after {time.monotonic() - started:.1f} s); {describe_ksm(server.ready.get('ksm', '?'))}")
        return server

    def _ensure_server(self) -> ForkServer:
        if self.server is not None and not self.server.alive():
            code = self.server.popen.poll()
            how = f"exit {code}" if code is not None and code >= 0 else describe_status(code)
            self.notify(f"fork server (pid {self.server.pid}) is gone ({how}); starting a new one")
            self.server.close()
            self.server = None
        if self.server is None:
            self.server = self.start_server()
        return self.server

    def restart_server(self) -> None:
        """A fresh server with the code as it is on disk now (deploys); running bots are not touched."""
        old, self.server, self.wanted = self.server, None, self.subreaper
        if old is not None:
            old.close()
        if not self.subreaper:
            return  # every bot is exec'd (said once, at start)
        try:
            self.server = self.start_server()
        except OSError as exc:
            self.notify(f"could not start a fork server ({exc}); bots will be exec'd until one starts")

    def __call__(self, index: int, on_line: Callable[[str], None]) -> Child:
        if self.subreaper:
            for attempt in (1, 2):
                try:
                    server = self._ensure_server()
                    return server.fork(self.fallback.command(index)[2:], self.fallback.cwd,
                                       self.fallback.environment(index), on_line, self.eof_grace)
                except OSError as exc:
                    if self.server is not None and not self.server.alive():
                        self.server.close()
                        self.server = None
                    self.notify(f"fork server: Bot {index} not forked ({exc})"
                                + ("; retrying with a new server" if attempt == 1 else "; exec'ing it instead"))
        return self.fallback(index, on_line)

    def maintain(self, known: set[int], now: float | None = None) -> None:
        """Called on every tick of the manager: replace a dead fork server at once (so the next restart of a
        bot costs a fork, not a preload), and reap orphans. A server that fails to start is retried after
        SERVER_RETRY seconds; meanwhile each start tries once more and execs the bot if that fails."""
        now = time.monotonic() if now is None else now
        dead = self.server is None or not self.server.alive()
        if self.subreaper and self.wanted and dead and now >= self._retry_at:
            try:
                self._ensure_server()
            except OSError as exc:
                self.server = None
                self._retry_at = now + SERVER_RETRY
                self.notify(f"could not start a fork server ({exc}); retrying in {SERVER_RETRY:g} s")
        self.reap_orphans(known)

    def reap_orphans(self, known: set[int]) -> None:
        """Reap exited processes that became ours only as the subreaper (say, something a bot started, or a
        half-done fork of a dying server), so they do not stay zombies; `known` children are left alone."""
        if not self.subreaper:
            return
        if self.server is not None:
            known = known | {self.server.pid}
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in known:
                return  # the first exited child is one we supervise: its owner reaps it
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                return

    def close(self) -> None:
        self.wanted = False
        if self.server is not None:
            self.server.close()
            self.server = None
