"""One music bot of the fleet: `python bot.py --bot N` runs the bot whose token is BOT_TOKEN_N.

Exit codes: 0 when asked to stop (SIGTERM/SIGINT), 78 on a configuration error (missing or
rejected token: a supervisor must not restart it), anything else is a crash.

The process keeps only its own token: started with other bots' tokens in its environment (supervisord
gives every program the same one), it re-executes itself without them before importing discord
(utils/token_env.py); the siblings' user ids travel on in FLEET_BOT_IDS.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from utils.token_env import own_environment, reexec_with_own_token

if __name__ == "__main__":
    reexec_with_own_token(sys.argv[1:])  # first, while a re-exec costs ~30 ms (discord not imported yet)

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import MISSING

from commands import EXTENSIONS
from utils import metrics
from utils.command_switches import check_names, disable_commands
from utils.config import EX_CONFIG, ConfigError, Settings
from utils.config_exit import hold_config_exit
from utils.endpoints import apply_endpoint_overrides
from utils.gateway_compression import use_zlib_stream
from utils.health import HealthInput, LoopLagMonitor
from utils.lavalink import NodeLink
from utils.log import setup_logging
from utils.parent_watch import stop_with_manager
from utils.replies import report_error
from utils.request_budget import FailureBudget
from utils.stay_store import StayStore

if TYPE_CHECKING:
    from utils.health_server import HealthServer

log = logging.getLogger("bot")
# "ready as ..." is logged even under LOG_LEVEL=WARNING: process_manager.py's redeploy (SIGHUP) waits for
# this line before it restarts the next bot (process_manager.READY_LINE).
ready_log = logging.getLogger("bot.ready")
ready_log.setLevel(logging.INFO)

# Close codes after which Discord will not let this token in without an operator fixing something.
_FATAL_CLOSE_CODES = {
    4004: "Discord rejected the token (gateway close 4004)",
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid gateway API version",
    4013: "invalid intents",
    4014: "privileged intents are not enabled for this application",
}


def build_intents() -> discord.Intents:
    """The least a slash-command music bot needs: guilds (channels, roles) and voice states."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.voice_states = True
    return intents


class MusicBot(commands.Bot):
    settings: Settings
    lavalink: NodeLink
    guild_volumes: dict[int, int]  # kept for the process lifetime (and in snapshots)
    request_budget: FailureBudget
    stays: StayStore  # 24/7 guilds (commands/stay.py); read by the watchdog and the restore
    stopping: bool
    gateway_up: bool  # from READY or RESUMED to the next disconnect
    started: float  # monotonic, for /healthz uptime
    lag: LoopLagMonitor
    health_server: HealthServer | None  # /healthz and /metrics when METRICS_PORT is set

    def __init__(self, settings: Settings) -> None:
        intents = build_intents()
        self.request_budget = FailureBudget(settings.failed_request_budget)
        super().__init__(
            command_prefix=commands.when_mentioned,  # unused: slash commands only
            help_command=None,
            intents=intents,
            application_id=settings.client_id,
            member_cache_flags=discord.MemberCacheFlags.from_intents(intents),  # voice members only
            chunk_guilds_at_startup=False,
            max_messages=None,  # no message cache: we never read messages
            allowed_mentions=discord.AllowedMentions.none(),
            http_trace=self.request_budget.trace_config(),  # counts 401/403/429 (see utils/request_budget.py)
        )
        self.settings = settings
        self.guild_volumes = {}
        self.stays = StayStore(settings.bot_state_dir)
        self.stopping = False
        self.gateway_up = False
        self.started = time.monotonic()
        self.lag = LoopLagMonitor()
        self.health_server = None

    async def setup_hook(self) -> None:
        self.tree.on_error = report_error  # one answer per failure; cogs define no handlers of their own
        self.lavalink = NodeLink(self, self.settings.lavalink_nodes, self.settings.bot_state_dir)
        self.stays.load()  # before the cogs: the restore and the watchdog consult it
        for extension in EXTENSIONS:
            try:
                await setup_extension(self, extension)
            except Exception:
                log.exception("failed to load extension %s", extension)
        if self.settings.disabled_commands:  # names checked by run() before any cog started
            removed = disable_commands(self.tree, self.settings.disabled_commands)
            log.info("commands turned off by DISABLED_COMMANDS: %s", ", ".join(f"/{n}" for n in removed) or "none")
        self.lavalink.start()  # after the cogs: their node-ready listeners must be there
        metrics.bind(self, self.request_budget, lambda: sum(s == "CONNECTED" for _, s in self.lavalink.status()))
        # Commands are registered by register_commands.py, never on start-up (global syncs are rate limited).

    async def start_health_server(self) -> None:
        """/healthz and /metrics (METRICS_PORT set), from before login: 503 until READY, then 200."""
        if self.settings.metrics_port is None:
            return
        from utils.health_server import HealthServer  # only bots that serve it pay for the server code

        self.lag.start()
        self.health_server = HealthServer(self.health_input, self.settings.metrics_host, self.settings.metrics_port)
        await self.health_server.start()

    async def on_ready(self) -> None:
        assert self.user is not None
        ready_log.info("ready as %s (id %s) in %d guild(s)", self.user, self.user.id, len(self.guilds))

    async def on_resumed(self) -> None:
        log.info("gateway session resumed")
        self.gateway_up = True
        metrics.GATEWAY_RESUMES.inc()

    async def on_connect(self) -> None:  # a new session (READY); a resumed one is on_resumed
        self.gateway_up = True
        metrics.GATEWAY_CONNECTS.inc()

    async def on_disconnect(self) -> None:
        if self.gateway_up:  # discord.py dispatches it for every failed attempt too
            metrics.GATEWAY_DISCONNECTS.inc()
        self.gateway_up = False

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        metrics.ACKS.received(interaction.id)

    async def on_app_command_completion(self, interaction: discord.Interaction,
                                        command: app_commands.Command | app_commands.ContextMenu) -> None:
        metrics.INTERACTIONS.labels(command.qualified_name, "ok").inc()  # failures: utils/replies.report_error

    def health_input(self) -> HealthInput:
        """What /healthz reports, read on the loop (see utils/health.py)."""
        nodes = dict(self.lavalink.status()) if hasattr(self, "lavalink") else {}
        return HealthInput(
            bot=self.settings.bot_index, pid=os.getpid(), uptime=time.monotonic() - self.started,
            ready=self.is_ready() and self.gateway_up, gateway_latency=self.latency, nodes=nodes,
            players=len(self.voice_clients),
            queued=sum(len(getattr(vc, "queue", ())) for vc in self.voice_clients),
            loop_lag=self.lag.current(), closing=self.stopping or self.is_closed())

    async def close(self) -> None:
        """Leave voice cleanly, then close Lavalink and the gateway."""
        if self.is_closed():
            return await super().close()
        self.stopping = True
        persistence = self.get_cog("Persistence")
        if persistence is not None:
            persistence.flush_for_shutdown()  # snapshots survive a deploy; leaving voice below must not end them
        voices = list(self.voice_clients)
        if voices:  # all at once: the whole shutdown must fit in a supervisor's grace period
            try:
                results = await asyncio.wait_for(
                    asyncio.gather(*(v.disconnect(force=True) for v in voices), return_exceptions=True), timeout=3)
            except asyncio.TimeoutError:
                log.warning("leaving %d voice channel(s) took too long; closing anyway", len(voices))
            else:
                for voice, result in zip(voices, results):
                    if isinstance(result, Exception):
                        log.warning("could not leave voice in guild %s cleanly: %s", getattr(voice.guild, "id", "?"),
                                    result)
        if hasattr(self, "lavalink"):  # absent when closing before setup_hook ran
            await self.lavalink.close()
        self.lag.stop()
        if self.health_server is not None:
            await self.health_server.close()
        await super().close()


class CommandCollector(MusicBot):
    """A MusicBot that is never started: its cogs hand over their slash commands and nothing else.

    `Bot.add_cog` would also run each cog's `cog_load` (the snapshot sampler, the restore of bot N's
    snapshots, the watchdog's sweep) and attach its listeners; registering commands needs none of that,
    and closing such a bot afterwards would flush snapshots through a Lavalink link that never existed.
    So `add_cog` here only puts the cog's app commands in the tree, as `Bot.add_cog` and `Cog._inject` do.
    """

    async def add_cog(self, cog: commands.Cog, /, *, override: bool = False,
                      guild: discord.abc.Snowflake | None = MISSING,
                      guilds: Sequence[discord.abc.Snowflake] = MISSING) -> None:
        if not isinstance(cog, commands.Cog):
            raise TypeError("cogs must derive from Cog")
        group = cog.app_command  # a GroupCog's group, holding its commands
        for command in [group] if group is not None else cog.get_app_commands():
            self.tree.add_command(command, override=override, guild=guild, guilds=guilds)


async def setup_extension(bot: commands.Bot, extension: str) -> None:
    """Register the cogs of `extension` (a module of commands.EXTENSIONS) on `bot`.

    Not Bot.load_extension(): discord.py runs an extension's module afresh from its file on every load
    (Bot._load_from_module_spec) and puts the new copy in sys.modules, so a bot forked from fork_server.py,
    which imported every cog module already, would build a private copy of each (~3 MB per bot). The imported
    module's setup() registers the same cogs; Bot.close() still removes them all.
    """
    await importlib.import_module(extension).setup(bot)


async def collect_commands(settings: Settings, *, fail_soft: bool = False) -> app_commands.CommandTree:
    """The slash commands the bots serve: every cog's, read without starting any cog, DISABLED_COMMANDS removed.

    An extension that fails to load raises (registering without it would delete its commands), and so does a
    DISABLED_COMMANDS entry naming no command (ConfigError). `fail_soft` (the bot's own check, whose
    setup_hook reports a broken extension): such an extension is skipped and the names are not checked.
    """
    collector = CommandCollector(settings)
    complete = True
    for extension in EXTENSIONS:
        try:
            await setup_extension(collector, extension)
        except Exception:
            if not fail_soft:
                raise
            complete = False
    if complete:
        check_names(collector.tree, settings.disabled_commands)
    disable_commands(collector.tree, settings.disabled_commands)
    return collector.tree


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run one music bot of the fleet. Reads BOT_TOKEN_N (or the file named by BOT_TOKEN_FILE_N, "
        "or BOT_TOKEN_DIR/BOT_TOKEN_N, or BOT_TOKEN with BOT_ID) and the rest of the configuration from the "
        "environment and .env; other bots' tokens are dropped from the process at start.",
        epilog="Exit codes: 0 stopped on request, 78 configuration error (do not restart), other = crash.",
    )
    parser.add_argument("--bot", type=int, metavar="N",
                        help="bot number N: use BOT_TOKEN_N (default: BOT_ID, or a StatefulSet pod's ordinal + 1 "
                        "from BOT_ID_FROM_ORDINAL=<pod name>, or 1)")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env; missing is fine)")
    return parser.parse_args(argv)


async def run(settings: Settings) -> int:
    """Run until stopped. Returns the process exit code."""
    apply_endpoint_overrides(settings.api_base, settings.gateway_url)
    use_zlib_stream()  # not zstd-stream: its decoder's window costs each bot 2 MB more (utils/gateway_compression.py)
    if settings.disabled_commands:
        try:  # before any cog starts: a typo in DISABLED_COMMANDS must not leave a command on
            await collect_commands(settings, fail_soft=True)
        except ConfigError as exc:
            log.error("configuration error: %s", exc)
            return EX_CONFIG
    bot = MusicBot(settings)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def request_stop(sig: signal.Signals) -> None:
        if not stop_requested.is_set():
            log.info("%s received, shutting down", sig.name)
            stop_requested.set()
            asyncio.ensure_future(bot.close())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig)
    stop_with_manager()  # under process_manager.py: SIGTERM if the manager dies

    try:
        async with bot:
            await bot.start_health_server()
            await bot.start(settings.token, reconnect=True)
    except discord.LoginFailure:
        log.error("%s was rejected by Discord (401 Unauthorized): check the token", settings.token_var)
        return EX_CONFIG
    except discord.PrivilegedIntentsRequired:
        log.error("%s: %s", settings.token_var, _FATAL_CLOSE_CODES[4014])
        return EX_CONFIG
    except discord.ConnectionClosed as exc:
        if exc.code in _FATAL_CLOSE_CODES:
            log.error("%s: %s", settings.token_var, _FATAL_CLOSE_CODES[exc.code])
            return EX_CONFIG
        if stop_requested.is_set():
            return 0
        raise
    if stop_requested.is_set():
        log.info("stopped")
        return 0
    log.error("the client stopped without being asked to")
    return 1


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    try:
        index, env = own_environment(os.environ, args.env_file, args.bot)
        os.environ.clear()  # the .env file's variables join it, the siblings' tokens leave it
        os.environ.update(env)
        settings = Settings.from_env(index, env)
    except ConfigError as exc:
        prefix = f"[Bot {args.bot}] " if args.bot else ""
        print(f"{prefix}configuration error: {exc}", file=sys.stderr, flush=True)
        hold_config_exit(started, lambda line: print(prefix + line, file=sys.stderr, flush=True), os.environ)
        return EX_CONFIG
    setup_logging(settings.bot_index, settings.log_level, settings.log_dir, secrets=settings.secrets)
    try:
        code = asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 0
    if code == EX_CONFIG:
        hold_config_exit(started, log.info, os.environ)  # under supervisord, 78 must come after startsecs
    return code


if __name__ == "__main__":
    sys.exit(main())
