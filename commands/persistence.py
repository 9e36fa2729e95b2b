"""Snapshots of every player, and restoring them when the bot starts again after a crash or a deploy.

A sampler looks at each player twice a second and, when something a snapshot holds changed (track,
queue, history, pause, seek, volume, loop, autoplay, channel, panel), hands a new snapshot to the
writer thread (utils/snapshot_writer.py), so a change is on disk within a second and no command has to
remember to save. A track that just plays on is not rewritten: a restore computes its position from the
saved one and the time since (GuildSnapshot.position_at). Looking costs O(1) per player (a fingerprint of
counters and scalars); building and writing a snapshot happen off the event loop. A player with nothing
left to play has no snapshot: /stop, /disconnect and auto-leave therefore end the guild's snapshot, while
SIGTERM keeps it (the sampler stops before the bot leaves voice), so a deploy resumes too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
import wavelink
from discord.ext import commands, tasks

from commands.recovery import RecoveringPlayer
from utils import metrics
from utils.checks import preflight
from utils.errors import MusicError
from utils.formatting import format_duration, truncate
from utils.player import MusicPlayer
from utils.snapshot_writer import SnapshotWriter
from utils.snapshots import GuildSnapshot, SnapshotStore

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

SAMPLE_EVERY = 0.5
DRIFT_MS = 1000  # rewrite when the position is this far from what a restore would compute (stalls, speed changes)
SHUTDOWN_FLUSH_TIMEOUT = 3.0  # bot.close must fit in a supervisor's grace period
RESTORE_WAIT_FOR_AUDIO = 30.0


@dataclass(frozen=True)
class Saved:
    """What the sampler last handed to the writer for a guild: fingerprint, and the position basis then."""

    fingerprint: tuple
    position: int = 0
    at: float = 0.0  # monotonic seconds
    empty: bool = False  # nothing to restore: no snapshot (deleted)
    kept: bool = False  # the player left but its snapshot stays for the next start (see Persistence.keep)


def drifted(saved: Saved, player: MusicPlayer, now: float) -> bool:
    """Whether the player's position left the line a restore would compute from the saved snapshot (a stall,
    a loop restarting the same track, a speed change). Streams restart at 0 anyway, and a disconnected player
    reports 0 (wavelink): that is no reason to overwrite a good position."""
    current = player.current
    if current is None or current.is_stream or not player.connected:
        return False
    # Under a timescale (/speed, nightcore) the song moves at speed x rate, as GuildSnapshot.position_at assumes.
    expected = saved.position if player.paused else saved.position + (now - saved.at) * 1000 * player.effects.rate
    return abs(player.position - min(expected, current.length)) > DRIFT_MS


class Persistence(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot
        self.store = SnapshotStore(bot.settings.bot_state_dir)
        self.writer = SnapshotWriter(self.store, on_failure=self._write_failed)
        self._saved: dict[int, Saved] = {}
        self._restoring: set[int] = set()
        self._restore_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_alive: float | None = None

    async def cog_load(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._last_alive = self.store.last_alive()  # the previous run's heartbeat, before ours overwrites it
        self.writer.start()
        self.sample.start()
        if self.bot.settings.restore:
            self._restore_task = asyncio.create_task(self._restore_all(), name="restore-snapshots")

    async def cog_unload(self) -> None:
        self.sample.cancel()
        if self._restore_task is not None:
            self._restore_task.cancel()
        await asyncio.to_thread(self.writer.close, SHUTDOWN_FLUSH_TIMEOUT)

    # ---- saving ----------------------------------------------------------------------------------------

    def _players(self) -> dict[int, MusicPlayer]:
        """Every live player, from the Lavalink nodes: discord.py forgets its voice clients when a new
        gateway session starts (after a non-resumable INVALID_SESSION), wavelink does not."""
        return {guild_id: player for node in self.bot.lavalink.nodes for guild_id, player in node.players.items()
                if isinstance(player, MusicPlayer)}

    def save_all(self, *, force: bool = False, stopping: bool = False) -> None:
        """Hand the writer a snapshot of every player that changed; delete those with nothing left to play.
        `force`: every player, changed or not; `stopping`: the bot leaves voice next (clean shutdown)."""
        now = time.monotonic()
        players = self._players()
        for guild_id, player in players.items():
            if guild_id in self._restoring:
                continue
            fingerprint = player.fingerprint()  # O(1); the snapshot is captured only when it changed
            saved = self._saved.get(guild_id)
            if not force and saved is not None and saved.fingerprint == fingerprint and (
                    saved.empty or not drifted(saved, player, now)):
                continue
            build = player.capture(stopped=stopping)
            if build is None:
                self._forget(guild_id)
                self._saved[guild_id] = Saved(fingerprint, empty=True)
                continue
            self.writer.save(guild_id, build)
            self._saved[guild_id] = Saved(fingerprint, build.keywords["position"], now)
        for guild_id in [g for g, s in self._saved.items()
                         if g not in players and g not in self._restoring and not s.kept]:
            self._forget(guild_id)
            del self._saved[guild_id]

    def keep(self, guild_id: int, build: Callable[[], GuildSnapshot]) -> None:
        """A player is about to leave although its session is not over (recovery.py: voice could not be got
        back): write this last state and keep it, so the next start restores it, until a new player in the
        guild replaces it."""
        self.writer.save(guild_id, build)
        self._saved[guild_id] = Saved((), kept=True)
        log.info("guild %s: snapshot kept for the next start", guild_id)

    def _forget(self, guild_id: int) -> None:
        saved = self._saved.get(guild_id)
        if saved is not None and saved.empty:
            return  # deleted already (or being deleted by the writer)
        self._saved[guild_id] = Saved((), empty=True)
        if saved is not None or self.store.path(guild_id).exists():
            self.writer.delete(guild_id)
            log.info("guild %s: nothing left to play, snapshot removed", guild_id)

    def _write_failed(self, guild_id: int) -> None:
        """Writer thread: a write failed; let the next sample try again."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._saved.pop, guild_id, None)

    @tasks.loop(seconds=SAMPLE_EVERY)
    async def sample(self) -> None:
        if self.bot.stopping:
            return
        try:
            self.save_all()
        except Exception:
            log.exception("saving player snapshots failed")

    def flush_for_shutdown(self) -> None:
        """SIGTERM: write every player's latest state before the bot leaves voice (the sampler is off by now),
        marked `stopped`, so the song resumes where it stopped rather than where it would have got to.
        Blocks until written (bounded): the process exits right after."""
        self.sample.cancel()
        try:
            self.save_all(force=True, stopping=True)
        except Exception:
            log.exception("final snapshot flush failed")
        if not self.writer.flush(SHUTDOWN_FLUSH_TIMEOUT):
            log.warning("final snapshots not all written within %.0f s", SHUTDOWN_FLUSH_TIMEOUT)

    # ---- restoring -------------------------------------------------------------------------------------

    async def _wait_for_guilds(self, guild_ids: set[int]) -> None:
        """Until those guilds are in the cache, or READY is complete. discord.py fires on_ready only ~2 s
        after the last GUILD_CREATE; restoring as soon as the guild is there brings the music back sooner."""
        if not guild_ids:
            await self.bot.wait_until_ready()
            return
        while not self.bot.is_ready():
            available = {g.id for g in self.bot.guilds if not g.unavailable and g.me is not None}
            if guild_ids <= available:
                return
            await asyncio.sleep(0.05)

    async def _restore_all(self) -> None:
        try:
            await self._restore_snapshots()
        finally:
            self.bot.dispatch("music_restore_done")  # commands/stay.py rejoins 24/7 channels left empty

    async def _restore_snapshots(self) -> None:
        snapshots = self.store.load_all()
        await self._wait_for_guilds({s.guild_id for s in snapshots})
        self._restoring.update(s.guild_id for s in snapshots)
        try:
            deadline = time.monotonic() + RESTORE_WAIT_FOR_AUDIO
            while not self.bot.lavalink.connected():
                if time.monotonic() > deadline:
                    if snapshots:
                        log.warning("audio server still unreachable: %d snapshot(s) kept for the next start",
                                    len(snapshots))
                    return
                await asyncio.sleep(0.2)
            for snapshot in snapshots:
                try:
                    await self._restore_one(snapshot)
                except Exception:
                    log.exception("guild %s: restoring the player failed; snapshot discarded", snapshot.guild_id)
                    self.store.delete(snapshot.guild_id)
        finally:
            self._restoring.clear()
        await self._leave_silent_channels()
        # A resumed Lavalink session may still hold players of guilds we did not take back.
        await self.bot.lavalink.drop_orphans(keep=set(self._players()))

    async def _leave_silent_channels(self) -> None:
        """A process that crashed leaves Discord showing the bot in its voice channel. Where nothing was restored
        (snapshot too old, permissions lost, nobody listening) that would be a mute bot in the channel: leave."""
        for guild in self.bot.guilds:
            me = guild.me
            if me is None or me.voice is None or me.voice.channel is None or guild.voice_client is not None:
                continue
            log.info("guild %s: leaving #%s, where the previous process was and nothing plays now", guild.id,
                     me.voice.channel.name)
            try:
                await guild.change_voice_state(channel=None)
            except (ConnectionError, discord.ClientException) as exc:
                log.warning("guild %s: could not leave the voice channel (%s)", guild.id, type(exc).__name__)

    @commands.Cog.listener()
    async def on_music_player_left(self, guild_id: int) -> None:
        """/disconnect and auto-leave: the guild's session is over, so is its snapshot."""
        if not self.bot.stopping:
            self._forget(guild_id)

    def _discard(self, snapshot: GuildSnapshot, why: str) -> None:
        self.store.delete(snapshot.guild_id)
        log.info("guild %s: not restoring the player (%s)", snapshot.guild_id, why)

    async def _restore_one(self, snapshot: GuildSnapshot) -> None:
        age = snapshot.age(alive=self._last_alive)
        if age > self.bot.settings.restore_max_age:
            return self._discard(snapshot, f"snapshot is {age:.0f} s old")
        guild = self.bot.get_guild(snapshot.guild_id)
        if guild is None:
            return self._discard(snapshot, "no longer in that guild")
        channel = guild.get_channel(snapshot.voice_channel_id)
        if not isinstance(channel, discord.VoiceChannel):
            return self._discard(snapshot, "the voice channel is gone")
        staying = self.bot.stays.get(guild.id)  # 24/7 mode: back in its channel even when nobody is there
        if not [m for m in channel.members if not m.bot] and (staying is None or staying.channel_id != channel.id):
            return self._discard(snapshot, "nobody is listening in the voice channel")
        try:
            preflight(channel, guild.me)
        except MusicError as exc:
            return self._discard(snapshot, str(exc))
        if guild.voice_client is not None:
            return self._discard(snapshot, "already connected there")

        player = await channel.connect(cls=RecoveringPlayer, self_deaf=True, timeout=10.0)
        assert isinstance(player, MusicPlayer)
        home = guild.get_channel(snapshot.home_channel_id) if snapshot.home_channel_id else None
        player.home = home if isinstance(home, discord.abc.Messageable) else None
        self.bot.guild_volumes[guild.id] = snapshot.volume
        position = snapshot.position_at()
        if snapshot.current is not None:
            title = truncate(wavelink.Playable(snapshot.current).title, 80)
            player.restored_note = (f"Back after a restart - resuming **{title}** at "
                                    f"{format_duration(position)}.")
        await self._delete_old_panel(player, snapshot)
        track = await player.restore(snapshot)
        if player.current is None and not player.queue:
            await player.leave("None of the songs I was playing can be found on the audio server any more, so I "
                               "left the voice channel. Use /play to start again.")
            return
        metrics.RESTORES.inc()
        log.info("guild %s: restored the player in #%s (%s, %d queued)", guild.id, channel.name,
                 f"{track.title} at {format_duration(position)}" if track else "queue only",
                 len(player.queue))

    async def _delete_old_panel(self, player: MusicPlayer, snapshot: GuildSnapshot) -> None:
        if player.home is None or snapshot.panel_message_id is None:
            return
        try:
            await player.home.get_partial_message(snapshot.panel_message_id).delete()  # type: ignore[union-attr]
        except (discord.HTTPException, AttributeError):
            pass  # gone already; an old panel's buttons answer "outdated" anyway


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Persistence(bot))
