"""Shared test helpers: running the real entry points (bot.py, process_manager.py) as processes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Variables from the developer's own environment that must not leak into a test process.
_SCRUB = re.compile(r"^(BOT_TOKEN.*|BOT_ID|BOT_CLIENT_ID_.*|LAVALINK_.*|DISCORD_.*|TEST_GUILD_ID|LOG_.*|STATE_DIR|"
                    r"RESTORE.*|IDLE_TIMEOUT|ALONE_TIMEOUT|SEARCH_MENU_TIMEOUT|MAX_QUEUE|DJ_ROLE|SUPERVISOR_.*|METRICS_.*|HEALTH_TIMEOUT|"
                    r"COOLDOWN_.*|DISABLED_COMMANDS)$")

# Tests send commands at machine speed, far above what a member can type: the per-member cooldowns would
# refuse them. Every process a test starts runs without them unless its env sets them (tests of the
# cooldowns pass COOLDOWN_PLAY="" for the production default).
MACHINE_SPEED = {"COOLDOWN_PLAY": "off", "COOLDOWN_CONTROLS": "off"}


def ksm_merge_any(pid: int | str = "self") -> bool | None:
    """Whether process `pid` opted in to same-page merging (utils/ksm.py), or None: a kernel that does not
    report it in /proc/PID/ksm_stat (before Linux 6.4)."""
    stat = Path(f"/proc/{pid}/ksm_stat")
    text = stat.read_text() if stat.exists() else ""
    if "ksm_merge_any:" not in text:
        return None
    return "ksm_merge_any: yes" in text


def copy_tracked(folder: str, dest: Path) -> list[str]:
    """Copy what a fresh clone holds under `folder` (the files git tracks there) into `dest`; their paths.

    Stand-ins of the repository use this instead of creating directories themselves, so a directory the
    repository forgot to ship is missing in the test too.
    """
    out = subprocess.run(["git", "ls-files", "-z", "--", folder], cwd=ROOT, check=True, capture_output=True).stdout
    paths = [p for p in out.decode().split("\0") if p]
    for rel in paths:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, dest / rel)
    return paths


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _SCRUB.match(k)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(MACHINE_SPEED)
    env.update(extra or {})
    return env


class Proc:
    """A child process whose merged stdout/stderr is collected line by line."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, args: Sequence[str], *, env: Mapping[str, str], name: str = "proc",
                    cwd: Path = ROOT) -> Proc:
        process = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        return cls(name, process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                break
            async with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_for_line(self, pattern: str, timeout: float = 20.0) -> str:
        """The first output line matching the regex `pattern`; fails with the output so far on timeout."""
        regex = re.compile(pattern)

        def match() -> str | None:
            return next((line for line in self.lines if regex.search(line)), None)

        async def waiter() -> str:
            async with self._changed:
                while (found := match()) is None:
                    if self._reader.done():
                        raise AssertionError(f"{self.name} ended before printing /{pattern}/:\n{self.output}")
                    await self._changed.wait()
                return found

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name} did not print /{pattern}/ within {timeout}s:\n{self.output}") from None

    async def wait(self, timeout: float = 15.0) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.output}") from None
        await asyncio.wait_for(asyncio.shield(self._reader), 5)
        return code

    def send_signal(self, sig: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def kill(self) -> None:
        """Stop the whole process group, whatever state it is in."""
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.process.wait()
        if not self._reader.done():
            self._reader.cancel()


async def start_bot(number: int, env: Mapping[str, str], *, log_dir: Path, extra_args: Sequence[str] = (),
                    python_path: Sequence[Path] = ()) -> Proc:
    """Run the real `bot.py --bot N` with `env` (a sandbox's bot_env) and logs under `log_dir`."""
    full = clean_env({"STATE_DIR": str(log_dir.parent / "state"), **env, "LOG_DIR": str(log_dir),
                      "LOG_LEVEL": env.get("LOG_LEVEL", "INFO")})
    if python_path:
        full["PYTHONPATH"] = os.pathsep.join(str(p) for p in python_path)
    args = [sys.executable, str(ROOT / "bot.py"), "--bot", str(number), "--env-file", os.devnull, *extra_args]
    return await Proc.start(args, env=full, name=f"bot {number}")


async def register_commands(env: Mapping[str, str], *args: str, timeout: float = 60.0) -> str:
    """Register the bots' slash commands through the real `register_commands.py` (default: globally).

    `env` is a sandbox's bot_env(apps); `args` e.g. ("--guild", "123"). The sandbox refuses to invoke a
    command that was not registered, just as a Discord client would not show it. Returns the output.
    """
    where = args if any(a in ("--guild", "--global") for a in args) else ("--global", *args)
    cmd = [sys.executable, str(ROOT / "register_commands.py"), "--env-file", os.devnull, *where]
    proc = await Proc.start(cmd, env=clean_env(env), name="register_commands.py")
    try:
        code = await proc.wait(timeout=timeout)
    finally:
        await proc.kill()
    assert code == 0, f"register_commands.py exited with {code}:\n{proc.output}"
    return proc.output
