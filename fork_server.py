"""The fork server behind `process_manager.py --spawn fork`: import the bot once, fork one child per bot.

A small single-threaded process (in the manner of multiprocessing's forkserver) that process_manager.py
starts with one end of a unix socket pair. It imports discord.py, wavelink, aiohttp, bot.py's module and
every cog module, calls gc.freeze() (so the collector never writes to, and un-shares, the pages of the
preloaded objects), opts in to kernel same-page merging (utils/ksm.py: the pages the bots still un-share
are merged again where ksmd runs), says it is ready, and then forks a bot per request. What it holds
before a fork is code and classes only: no socket but its request socket, no thread, no event loop, no
session, no open log file, no token (its environment has none; the child reads its own from a pipe the
manager fills).

Request (one SOCK_SEQPACKET message, socket.send_fds): JSON {"argv": [...], "cwd": ...} with two fds,
the write end of the pipe that becomes the child's stdout and stderr, and the read end of a pipe on which
the manager writes the child's environment (JSON). Reply: {"pid": n} or {"error": "..."}.

Each bot is forked twice (fork server -> intermediate -> bot) and the intermediate exits at once, so the
bot is re-parented to the manager, which is a child subreaper (PR_SET_CHILD_SUBREAPER): the manager
reaps its bots and reads their exit statuses itself, exactly as for exec'd ones, and a dying fork
server takes no bot with it.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import json
import os
import random
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_MESSAGE = 1 << 16
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def preload() -> None:
    """Import everything a bot imports, then freeze the heap: children share these pages copy-on-write."""
    import aiohttp  # noqa: F401
    import discord  # noqa: F401
    import dotenv  # noqa: F401  (each bot reads .env: utils/token_env.py imports it lazily)
    import wavelink  # noqa: F401

    import bot  # noqa: F401  (its module body defines MusicBot; `__main__` code does not run)
    from commands import EXTENSIONS

    for name in EXTENSIONS:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def set_process_name(name: str) -> None:
    """What ps -o comm, top and psutil's name() show for this process (15 bytes at most): which bot it is."""
    try:
        _libc().prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_command_line(args: list[str]) -> None:
    """Show `args` as this process's command line (ps, top -c, psutil), as setproctitle(3) does.

    A forked bot's argv is the fork server's; operators and tools look for `bot.py --bot n`. The argv area
    is rewritten in place (through /proc/self/mem, the process's own memory) with the new text, a NUL and
    non-NUL padding: the kernel then reports the text up to that NUL. Best effort: on failure, the name
    set by set_process_name still tells the bots apart.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            raw = stat.read()
        fields = raw[raw.rindex(b")") + 2:].split()  # fields[0] is field 3 of proc(5)
        start, end = int(fields[48 - 3]), int(fields[49 - 3])  # arg_start, arg_end
        size = end - start
        text = " ".join(args).encode()[:max(0, size - 2)]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(text + b"\0" + b" " * (size - len(text) - 1))
    except (OSError, ValueError, IndexError):
        pass


def _die_with_manager(manager_pid: int) -> None:
    """SIGKILL this server when the manager dies (its bots get SIGTERM from their own PDEATHSIG)."""
    try:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != manager_pid:
        os._exit(1)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _std_stream(fd: int) -> io.TextIOWrapper:
    """An unbuffered text stream on `fd`, as PYTHONUNBUFFERED gives an exec'd bot."""
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                            write_through=True, line_buffering=True)


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with for this SystemExit."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def run_child(argv: list[str], cwd: str, env_fd: int, out_fd: int, script: Path) -> int:
    """In the forked bot: take over stdio, environment, signals and randomness, then run the bot's main."""
    env = json.loads(_read_all(env_fd))
    os.close(env_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    sys.stdout, sys.stderr = _std_stream(1), _std_stream(2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)  # its own token only: what bot.py's own_environment then works from
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    random.seed()  # the interpreter reseeds `random` at fork too; this also covers a reseed-less fork
    sys.argv = [str(script), *argv]
    set_process_name(" ".join([script.name, *argv]))  # "bot.py --bot 3", in ps -o comm and top
    set_command_line([sys.executable, str(script), *argv])  # and its command line, as if exec'd
    try:
        if script == Path(sys.modules["bot"].__file__).resolve():
            return sys.modules["bot"].main(argv)
        runpy.run_path(str(script), run_name="__main__")
        return 0
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1


def fork_bot(request: dict, fds: list[int], server: socket.socket, script: Path) -> int:
    """Fork the bot for one request; returns its pid once it is the manager's child."""
    out_fd, env_fd = fds
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # intermediate: fork the bot, wait until it has its own session, report its pid, exit
        try:
            os.close(ready_r)
            middle_self = os.getpid()
            sync_r, sync_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the bot: whatever happens, it ends in _finish, never back in this server's code
                code = 1
                try:
                    os.close(sync_r)
                    os.close(ready_w)
                    server.close()
                    os.setsid()  # its own session and process group: the manager signals the group
                    os.write(sync_w, b"1")
                    os.close(sync_w)
                    deadline = time.monotonic() + 5
                    while os.getppid() == middle_self and time.monotonic() < deadline:
                        time.sleep(0.001)  # until re-parented to the manager (PDEATHSIG must name the manager)
                    code = run_child(request["argv"], request["cwd"], env_fd, out_fd, script)
                except BaseException:
                    traceback.print_exc()
                finally:
                    _finish(code)
            os.close(sync_w)
            os.read(sync_r, 1)
            os.write(ready_w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(out_fd)
    os.close(env_fd)
    data = _read_all(ready_r)
    os.close(ready_r)
    os.waitpid(middle, 0)
    if not data:
        raise OSError("the intermediate process reported no pid")
    return int(data)


def _finish(code: int) -> None:
    """End a forked bot as the interpreter ends an exec'd one (join its non-daemon threads, run its atexit
    callbacks, flush), then os._exit: the fork server's own frames below must never run in a child."""
    import atexit

    try:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()  # logging.shutdown() among them
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(sock: socket.socket, script: Path) -> None:
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
        except ConnectionResetError:
            return
        if not message:
            return  # the manager closed its end
        try:
            if len(fds) != 2:
                raise OSError(f"expected 2 file descriptors, got {len(fds)}")
            request = json.loads(message)
            if threading.active_count() != 1:
                raise OSError("the fork server has started a thread; refusing to fork")
            pid = fork_bot(request, fds, sock, script)
            reply = {"pid": pid}
        except Exception as exc:  # one bad request must not end the server
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sock.sendall(json.dumps(reply).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fork server for process_manager.py --spawn fork (internal).")
    parser.add_argument("--fd", type=int, required=True, help="inherited unix socket to serve")
    parser.add_argument("--manager-pid", type=int, required=True)
    parser.add_argument("--script", type=Path, default=HERE / "bot.py", help="the script each child runs")
    parser.add_argument("--no-ksm", dest="ksm", action="store_false",
                        help="do not opt in to kernel same-page merging (utils/ksm.py)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manager decides when this server stops
    _die_with_manager(args.manager_pid)
    set_process_name("fork_server.py")
    sock = socket.socket(fileno=args.fd)
    started = time.monotonic()
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from utils.ksm import opt_in

    preload()
    ksm = opt_in() if args.ksm else "off (--no-ksm)"  # inherited by every bot forked from here
    modules = sorted(m for m in sys.modules if m.split(".")[0] in ("discord", "wavelink", "aiohttp", "bot", "commands"))
    sock.sendall(json.dumps({"ready": True, "pid": os.getpid(), "preload_s": round(time.monotonic() - started, 3),
                             "modules": modules, "ksm": ksm}).encode())
    serve(sock, args.script.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
