"""`process_manager.py --spawn fork`: real bots forked from the fork server, playing through the sandbox.

One fleet of three forked bots for the module. What only forking can break is checked here: each bot is its
own process with its own sessions and random state, a killed bot costs its siblings nothing, and a killed
fork server costs no bot (the manager starts a new one for the next fork).
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import psutil
import pytest
import pytest_asyncio

from sandbox.control import Sandbox
from tests.e2e.fleet import Fleet
from tests.helpers import ROOT, Proc, clean_env, ksm_merge_any

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

MANAGER = ROOT / "process_manager.py"
SERVER_STARTED = r"fork server started \(pid (\d+),"


def track_url(slug: str, length: int = 600_000) -> str:
    return f"https://music.example/track/{slug}?length={length}"


def queue_titles(embed) -> list[str]:
    """The song titles of a /queue page, in order ("`11.` [Song](url) `1:00` · <@requester>")."""
    return [m[1] for line in embed["description"].splitlines() if (m := re.match(r"`\d+\.` \[([^\]]+)\]", line))]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ForkedFleet(Fleet):
    manager: Proc

    def bot_pids(self) -> dict[int, int]:
        """Bot number -> pid of its running forked process (the manager's children named by fork_server.py)."""
        found = {}
        for child in psutil.Process(self.manager.pid).children():
            match = re.fullmatch(r"bot\.py --bot (\d+)", child.name())
            if match and child.status() != psutil.STATUS_ZOMBIE:
                found[int(match[1])] = child.pid
        return found

    def server_pids(self) -> list[int]:
        return [int(m[1]) for line in self.manager.lines if (m := re.search(SERVER_STARTED, line))]

    def lavalink_sessions(self, bot: int) -> list[str]:
        user = str(self.apps[bot - 1].user_id)
        return sorted(s["session_id"] for s in self.lavalink.sessions.values() if str(s["user_id"]) == user)

    async def ready(self, bot: int, identifies: int) -> None:
        """Bot `bot` has identified `identifies` times in all, and its node session is ready."""
        app = self.apps[bot - 1]
        await self.discord.wait_for(lambda: self.discord.gateway_stats(app)["identifies"] >= identifies, timeout=30)
        await self.discord.wait_until_ready(app, timeout=30)
        await self.lavalink.wait_for(lambda: any(str(s["user_id"]) == str(app.user_id) and s["client_ready"]
                                                 and s["connected"] for s in self.lavalink.sessions.values()),
                                     timeout=30)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forked")
    async with Sandbox(player_update_interval=0.5) as sandbox:
        apps = sandbox.add_bots(3)
        env = clean_env({**sandbox.bot_env(apps), "LOG_DIR": str(tmp / "logs"), "STATE_DIR": str(tmp / "state")})
        fleet = ForkedFleet(sandbox, apps, [], tmp / "logs")
        registration = asyncio.create_task(fleet.register())
        fleet.manager = await Proc.start([sys.executable, str(MANAGER), "--env-file", "/dev/null", "--spawn", "fork",
                                          "--startsecs", "1", "--stagger", "0.1", "--status-interval", "0"],
                                         env=env, name="process_manager.py")
        try:
            await registration
            for n in (1, 2, 3):
                await fleet.ready(n, 1)
                await fleet.manager.wait_for_line(rf"Bot {n}: STARTING -> RUNNING", 15)
            yield fleet
        finally:
            manager_pid = fleet.manager.pid
            fleet.manager.send_signal(signal.SIGTERM)
            try:
                code = await fleet.manager.wait(timeout=20)
            finally:
                await fleet.manager.kill()
                for child in psutil.Process().children(recursive=True):
                    if child.pid != manager_pid and "fork_server.py" in " ".join(child.cmdline()):
                        child.kill()
        assert code == 0, fleet.manager.output
        assert not sandbox.lavalink.unimplemented, sandbox.lavalink.unimplemented
        sandbox.discord.assert_all_emulated()


@pytest_asyncio.fixture(loop_scope="module")
async def scene(fleet):
    return await fleet.scene()


async def test_forked_bots_are_separate_processes_with_their_own_sessions_and_randomness(fleet, scene):
    pids = fleet.bot_pids()
    assert sorted(pids) == [1, 2, 3], fleet.manager.output
    server = fleet.server_pids()[-1]
    for n, pid in pids.items():
        bot = psutil.Process(pid)
        assert bot.ppid() == fleet.manager.pid  # the manager's own child (subreaper), not the server's
        assert bot.name() == f"bot.py --bot {n}" and pid != server  # forked (an exec'd bot is named python...)
        assert bot.cmdline()[-3:] == [str(ROOT / "bot.py"), "--bot", str(n)]  # ps shows which bot it is
        initial_env = bot.environ()  # the block it started with: the fork server's, which holds no token
        assert not any(k.startswith("BOT_TOKEN") for k in initial_env), sorted(initial_env)
        assert f"[Bot {n}] " in fleet.manager.output  # its output reached the manager through its own pipe
        # The fork server's opt-in to same-page merging reached the bot (utils/ksm.py): True, or None where
        # the kernel does not report it.
        assert ksm_merge_any(pid) is not False
    for n in (1, 2, 3):
        assert fleet.discord.gateway_stats(fleet.apps[n - 1])["identifies"] == 1
        # the choice made in bot.run() holds in a forked bot too (utils/gateway_compression.py)
        assert fleet.discord.gateway_stats(fleet.apps[n - 1])["compression"] == ["zlib-stream"]
    sessions = [fleet.lavalink_sessions(n) for n in (1, 2, 3)]
    assert all(len(s) == 1 for s in sessions) and len({s[0] for s in sessions}) == 3, sessions

    # The same ten songs queued on two bots, then /shuffle on both: independent random state, other orders.
    slugs = [f"fork-shuffle-{n:02d}" for n in range(1, 11)]  # 10! orders: the same one twice is 1 in 3.6 million
    await scene.join("alice", "Lounge")
    await scene.join("bob", "Studio")
    for bot, member in ((1, "alice"), (2, "bob")):
        first = await scene.cmd(bot, member, "play", query=track_url("fork-first"))
        assert first.content.startswith("Now playing"), first.content
        for slug in slugs:
            queued = await scene.cmd(bot, member, "play", query=track_url(slug, 60_000))
            assert queued.content.startswith("Queued at position"), queued.content
        assert (await scene.cmd(bot, member, "shuffle")).content == "Shuffled 10 songs."
    orders = [queue_titles((await scene.cmd(bot, member, "queue")).embeds[0]) for bot, member in
              ((1, "alice"), (2, "bob"))]
    assert sorted(orders[0]) == sorted(orders[1]) and len(orders[0]) == 10
    assert orders[0] != orders[1], "two forked bots shuffled alike: they share their random state"
    for bot in (1, 2):
        await scene.wait_track(bot, "fork-first")
        assert scene.player(bot)["session_id"] == fleet.lavalink_sessions(bot)[0]  # each plays on its own session


async def test_sigkill_of_one_forked_bot_leaves_its_siblings_untouched(fleet, scene):
    await scene.join("alice", "Lounge")
    await scene.join("bob", "Studio")
    for bot, member in ((2, "alice"), (3, "bob")):
        answer = await scene.cmd(bot, member, "play", query=track_url(f"sibling-{bot}"))
        assert answer.content.startswith("Now playing"), answer.content
        await scene.wait_player(bot, lambda p: p["identifier"] and f"sibling-{bot}" in p["identifier"]
                                and p["position"] > 0)
    before = {n: (fleet.discord.gateway_stats(fleet.apps[n - 1]), fleet.lavalink_sessions(n)) for n in (2, 3)}
    positions = {n: scene.player(n)["position"] for n in (2, 3)}
    identifies = fleet.discord.gateway_stats(fleet.apps[0])["identifies"]
    victim = fleet.bot_pids()[1]
    mark = len(fleet.manager.lines)

    psutil.Process(victim).kill()
    await fleet.manager.wait_for_line(r"Bot 1: RUNNING -> BACKOFF \(signal SIGKILL after .*restarting now\)", 10)
    await fleet.manager.wait_for_line(r"Bot 1: BACKOFF -> STARTING \(pid \d+\)", 10)
    await fleet.ready(1, identifies + 1)
    assert (await scene.cmd(1, "carol", "ping")).content.startswith("Pong!")  # bot 1 answers again
    assert not alive(victim)
    assert not any("fork server" in line and "gone" in line for line in fleet.manager.lines[mark:])

    for n in (2, 3):  # the siblings: same gateway session, same node session, playback went on
        stats, sessions = fleet.discord.gateway_stats(fleet.apps[n - 1]), fleet.lavalink_sessions(n)
        assert stats["identifies"] == before[n][0]["identifies"] and stats["resumes"] == before[n][0]["resumes"]
        assert stats["connected"] and sessions == before[n][1]
        player = scene.player(n)
        assert f"sibling-{n}" in player["identifier"] and not player["paused"]
        assert player["position"] > positions[n]


async def test_a_killed_fork_server_costs_no_bot_and_is_replaced_at_once(fleet, scene):
    await scene.join("alice", "Lounge")
    answer = await scene.cmd(3, "alice", "play", query=track_url("server-gone"))
    assert answer.content.startswith("Now playing"), answer.content
    await scene.wait_player(3, lambda p: p["identifier"] and "server-gone" in p["identifier"] and p["position"] > 0)
    old_server = fleet.server_pids()[-1]
    bots = fleet.bot_pids()
    identifies = {n: fleet.discord.gateway_stats(fleet.apps[n - 1])["identifies"] for n in (1, 2, 3)}

    psutil.Process(old_server).kill()
    gone = rf"fork server \(pid {old_server}\) is gone \(signal SIGKILL\); starting a new one"
    await fleet.manager.wait_for_line(gone, 15)
    line = await fleet.manager.wait_for_line(rf"fork server started \(pid (?!{old_server},)\d+,", 30)  # at once
    new_server = int(re.search(SERVER_STARTED, line)[1])
    assert new_server != old_server and alive(new_server)
    position = scene.player(3)["position"]
    await fleet.lavalink.wait_for(lambda: scene.player(3)["position"] > position + 1000, timeout=10)
    assert fleet.bot_pids() == bots  # every bot still runs, in the same process
    for n in (1, 2, 3):
        assert fleet.discord.gateway_stats(fleet.apps[n - 1])["identifies"] == identifies[n]

    psutil.Process(bots[2]).kill()  # the next start is a fork from the new server
    await fleet.ready(2, identifies[2] + 1)
    reborn = fleet.bot_pids()[2]
    assert reborn != bots[2] and psutil.Process(reborn).ppid() == fleet.manager.pid
    assert "exec'ing it instead" not in fleet.manager.output  # forked by the new server, not exec'd
    assert (await scene.cmd(2, "bob", "ping")).content.startswith("Pong!")
    assert "server-gone" in scene.player(3)["identifier"]  # bot 3 played on throughout


async def test_sighup_redeploys_with_a_fresh_fork_server_one_bot_at_a_time_keeping_the_queue(fleet, scene):
    await scene.join("alice", "Lounge")
    answer = await scene.cmd(1, "alice", "play", query=track_url("deploy-now"))
    assert answer.content.startswith("Now playing"), answer.content
    for slug in ("deploy-next-1", "deploy-next-2"):
        assert (await scene.cmd(1, "alice", "play", query=track_url(slug))).content.startswith("Queued")
    await scene.wait_player(1, lambda p: p["identifier"] and "deploy-now" in p["identifier"] and p["position"] > 0)
    bots = fleet.bot_pids()
    identifies = {n: fleet.discord.gateway_stats(fleet.apps[n - 1])["identifies"] for n in (1, 2, 3)}
    servers = len(fleet.server_pids())
    mark = len(fleet.manager.lines)

    fleet.manager.send_signal(signal.SIGHUP)
    await fleet.manager.wait_for_line(r"\] .*redeploy done$", 90)
    lines = fleet.manager.lines[mark:]
    assert len(fleet.server_pids()) == servers + 1  # a fresh server, started before any bot was restarted
    first_stop = next(i for i, line in enumerate(lines) if "-> STOPPING" in line)
    assert any("fork server started" in line for line in lines[:first_stop])
    for n in (2, 3):  # bot n is stopped only after bot n-1 answers again
        answered = next(i for i, line in enumerate(lines) if f"redeploy: Bot {n - 1} answers again" in line)
        stopped = next(i for i, line in enumerate(lines) if f"Bot {n}: RUNNING -> STOPPING" in line)
        assert answered < stopped, "\n".join(lines)
    assert "Bot 1: STOPPING -> STOPPED (exit 0" in "\n".join(lines)  # a clean stop: its snapshot was written
    assert set(fleet.bot_pids()) == {1, 2, 3} and not set(fleet.bot_pids().values()) & set(bots.values())
    for n in (1, 2, 3):
        assert fleet.discord.gateway_stats(fleet.apps[n - 1])["identifies"] == identifies[n] + 1

    # Bot 1's listeners heard a gap, not a loss: the same song again, the same queue behind it.
    await scene.wait_player(1, lambda p: p["identifier"] and "deploy-now" in p["identifier"], timeout=20)
    queued = queue_titles((await scene.cmd(1, "alice", "queue")).embeds[0])
    assert queued == ["Deploy Next 1", "Deploy Next 2"], queued
