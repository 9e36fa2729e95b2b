"""Each bot process holds only its own token, yet still knows its siblings (their user ids, not their tokens).

Read from the kernel's side: /proc/PID/environ (the environment block the process was started with; unsetting
os.environ does not change it) and the process's writable memory. Two ways a bot starts: as a child of
process_manager.py (which builds each child's environment) and directly with every token in its environment,
as under supervisord (bot.py then re-executes itself without the others). In both, the busy-bot hint still
names the free siblings: the ids travel in FLEET_BOT_IDS.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import psutil
import pytest

from sandbox.control import Sandbox
from tests.e2e.fleet import Fleet
from tests.faults.helpers import bot_pid, playing, start_manager, stop_manager, track_url, wait_lavalink_ready
from tests.helpers import ROOT, start_bot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def read_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode("utf-8", "replace").partition("=")[::2] for entry in raw.split(b"\0") if entry)


def secret_part(token: str) -> str:
    """The part of a token that is nothing but secret (the first is the user id, which is public)."""
    return token.rsplit(".", 1)[1]


def memory_holds(pid: int, needles: dict[str, str]) -> set[str]:
    """Which needles occur in the process's writable memory (heap, stack, anonymous maps)."""
    wanted = {name: value.encode() for name, value in needles.items()}
    found: set[str] = set()
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", 0)  # noqa: SIM115
    except PermissionError:
        pytest.skip("reading another process's memory needs ptrace rights")
    with mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found.update(name for name, value in wanted.items() if value in chunk)
    return found


def assert_holds_only_its_own(pid: int, number: int, tokens: dict[int, str], own_var: str, own_value: str,
                              user_ids: dict[int, int]) -> None:
    environ = read_environ(pid)
    token_vars = sorted(k for k in environ if k.startswith("BOT_TOKEN"))
    block = "\0".join(f"{k}={v}" for k, v in environ.items())
    if psutil.Process(pid).name() == f"bot.py --bot {number}":  # forked (process_manager.py --spawn fork)
        # Its environment came through a pipe after the fork: /proc shows the fork server's block, which
        # never held a token. The siblings' ids are checked by behaviour (the busy-bot hint).
        assert token_vars == [] and "FLEET_BOT_IDS" not in environ, token_vars
    else:
        assert token_vars == [own_var] and environ[own_var] == own_value, token_vars
        assert environ["FLEET_BOT_IDS"] == ",".join(f"{n}:{uid}" for n, uid in sorted(user_ids.items()))
    for n, token in tokens.items():
        if n != number:
            assert secret_part(token) not in block, f"bot {number}'s environment holds bot {n}'s token"
    needles = {f"bot {n}": secret_part(token) for n, token in tokens.items()}
    assert memory_holds(pid, needles) == {f"bot {number}"}  # its own token is there: the scan does see memory


async def test_manager_children_hold_only_their_own_token_and_still_name_their_siblings(tmp_path):
    async with Sandbox(player_update_interval=0.5) as sandbox:
        apps = sandbox.add_bots(3)
        tokens = {n: app.token for n, app in enumerate(apps, start=1)}
        user_ids = {n: app.user_id for n, app in enumerate(apps, start=1)}
        # Bot 1 by its variable, bot 2 by a token file, bot 3 by a secrets directory that holds bot 2's file too.
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "BOT_TOKEN_2").write_text(tokens[2] + "\n")
        (secrets / "BOT_TOKEN_3").write_text(tokens[3] + "\n")
        env = {**sandbox.bot_env(apps[:1]), "BOT_TOKEN_FILE_2": str(secrets / "BOT_TOKEN_2"),
               "BOT_TOKEN_DIR": str(secrets)}
        log_dir = tmp_path / "logs"
        manager = await start_manager(env, log_dir, "--stagger", "0.1")
        try:
            for app in apps:
                await sandbox.discord.wait_until_ready(app, timeout=30)
                await wait_lavalink_ready(sandbox, app)
            for n in (1, 2, 3):
                pid = bot_pid(manager, n)
                assert pid is not None, manager.output
                own = (f"BOT_TOKEN_FILE_{n}", str(secrets / f"BOT_TOKEN_{n}")) if n > 1 else ("BOT_TOKEN_1", tokens[1])
                assert_holds_only_its_own(pid, n, tokens, *own, user_ids)

            scene = await Fleet(sandbox, apps, [], log_dir).scene()
            await playing(scene, bot=1, member="alice", channel="Lounge", query=track_url("lounge-song"))
            await scene.join("bob", "Studio")
            busy = await scene.cmd(1, "bob", "play", query=track_url("studio-song"))
            assert busy.ephemeral and busy.content == (
                f"I'm already playing in <#{scene.voice('Lounge')}>. "
                f"Try <@{user_ids[2]}> or <@{user_ids[3]}>: they are free here.")
        finally:
            code = await stop_manager(manager)
    assert code == 0, manager.output


async def test_bot_started_with_every_token_keeps_only_its_own(tmp_path):
    """The supervisord case: every program gets the same environment, with every BOT_TOKEN_n."""
    async with Sandbox(player_update_interval=0.5) as sandbox:
        apps = sandbox.add_bots(3)
        tokens = {n: app.token for n, app in enumerate(apps, start=1)}
        user_ids = {n: app.user_id for n, app in enumerate(apps, start=1)}
        bot = await start_bot(2, sandbox.bot_env(apps), log_dir=tmp_path / "logs")
        try:
            await sandbox.discord.wait_until_ready(apps[1], timeout=30)
            await bot.wait_for_line(r"ready as", timeout=15)
            await wait_lavalink_ready(sandbox, apps[1])
            # Same pid and command line as started (a supervisor sees nothing of the re-exec).
            assert psutil.Process(bot.pid).cmdline()[1:] == [str(ROOT / "bot.py"), "--bot", "2", "--env-file",
                                                             "/dev/null"]
            assert psutil.Process(bot.pid).exe() == str(Path(sys.executable).resolve())
            assert_holds_only_its_own(bot.pid, 2, tokens, "BOT_TOKEN_2", tokens[2], user_ids)

            # Bots 1 and 3 are not even running: bot 2 knows them by id alone.
            scene = await Fleet(sandbox, apps, [bot], tmp_path / "logs").scene(wait_ready=False)
            await playing(scene, bot=2, member="alice", channel="Lounge", query=track_url("lounge-song"))
            await scene.join("bob", "Studio")
            busy = await scene.cmd(2, "bob", "play", query=track_url("studio-song"))
            assert busy.content == (f"I'm already playing in <#{scene.voice('Lounge')}>. "
                                    f"Try <@{user_ids[1]}> or <@{user_ids[3]}>: they are free here.")

            bot.send_signal(signal.SIGTERM)
            assert await bot.wait(timeout=20) == 0, bot.output
            assert any("SIGTERM received, shutting down" in line for line in bot.lines), bot.output
        finally:
            await bot.kill()
