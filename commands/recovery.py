"""Recovery: what the bot does when something under a playing song breaks. Every such rule is here, or named here.

| event                                       | what the bot does                                                    |
|---------------------------------------------|----------------------------------------------------------------------|
| bot starts with a saved node session        | resumes it (Session-Id), so Lavalink's players keep playing          |
| node closed (close frame, dead socket)      | restarts wavelink's reconnect, with its backoff (NodeLink.watch)      |
| node back, session resumed                  | nothing: Lavalink kept every player playing                          |
| node back, new session                      | rebuilds each player: voice state, then the song at its position     |
| node dead, another alive                    | moves its players to the least loaded live node                      |
| new gateway session (not a resume)          | hands the player back to discord.py and rejoins its channel          |
| voice dropped (4006, 4009, 4015, 1006), or  | rejoins the same channel after 1, 5, 15 s (VOICE_REJOIN_DELAYS) and  |
| our voice state cleared with no 4014 within | the node plays on from its position; silent when the first try works,|
| KICK_WINDOW (1 s) of it                     | one message when it failed, one more when back; no stall skip meanwhile|
| a rejoin try failed                         | the node closed again, or no `connected` within 12 s: next try       |
| all tries failed                            | one message, leaves, and keeps the snapshot (at the position where   |
|                                             | the song went silent) for the next start                             |
| kicked: 4014 AND our voice state cleared,   | leaves for good: player and panel gone, snapshot and 24/7 mode ended,|
| within KICK_WINDOW of each other            | one message; never rejoins; /play brings the bot back                |
| moved by a moderator (new channel + voice   | plays on in the new channel (wavelink hands the node the new server);|
| server; a lone 4014 is part of a move)      | a member moving (the requester too) never moves the bot              |
| track stuck (Lavalink) or stalled (10 s)    | skips it with a message                                              |
| restore at start                            | rejoins and resumes from the snapshot (persistence.py)               |
| encoding rejected (after a node upgrade)    | finds the song again by its URI, else skips it with one message;     |
|                                             | nothing playable at a restore -> leaves with a message (player.py)  |

Every place that writes a private attribute of wavelink or discord.py is in this module and says which upstream
behaviour it works around: RecoveringPlayer (the player bots connect with: a bounded disconnect, wavelink's
position basis, its auto-play task), resume_saved_sessions, accept_every_voice_close_code and the gateway
takeover. Re-resolving a rejected track needs only wavelink's public API: MusicPlayer.play in utils/player.py.
Two such writes are not recovery and stay with their jobs: utils/versioned_queue.py swaps wavelink.Queue's internal
list for one that counts changes (snapshot bookkeeping), and utils/gateway_compression.py sets discord.py's gateway
decoder (zlib-stream, not zstd-stream: memory). tests/unit/test_private_writes.py keeps it that way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import discord
import wavelink
from discord.ext import commands, tasks

from utils import metrics
from utils.errors import MusicError, TrackGone
from utils.formatting import truncate
from utils.lavalink import lavalink_call
from utils.player import MusicPlayer

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

STALL_SWEEP_EVERY = 2.0
STALL_AFTER = 10.0  # seconds without a change in the reported position while playing
REBUILD_TIMEOUT = 10.0
VOICE_DROPPED = {4006, 4009, 4015, 1006}  # session invalid, timeout, server crashed, abnormal close; not 4014
VOICE_CLOSED = 4014  # "Disconnected": a kick (with our voice state cleared) or a move (with a new voice server)
KICK_WINDOW = 1.0  # the 4014 (node) and the cleared voice state (gateway) of one kick arrive this close together
VOICE_CONFIRM = 12.0  # the node says `connected` in its next playerUpdate: every 5 s in production
# The delays before each rejoin try are Settings.voice_rejoin_delays (VOICE_REJOIN_DELAYS, default 1, 5, 15 s).
SWITCH_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 2.0


class RecoveringPlayer(MusicPlayer):
    """MusicPlayer plus the workarounds that reach into wavelink 3.5's private parts; what bots connect with."""

    def position_moved(self, position: int) -> None:
        """wavelink 3.5 leaves its position basis alone on play(), seek() and pause() until Lavalink's next
        playerUpdate (5 s apart by default), so `position` reports the old place meanwhile (and a resumed track
        jumps ahead by the time it spent paused since the last update). Set the basis when the request
        succeeded, as Lavalink does: snapshots (and the panel) then see the right position at once."""
        super().position_moved(position)
        self._last_position = position
        self._last_update = time.monotonic_ns()

    async def _auto_play_event(self, payload: wavelink.TrackEndEventPayload) -> None:
        """wavelink plays the next queued track from a task of its own; a rejected encoding there would end that
        task with an unhandled exception and leave the bot silent in voice. Go on with a playable one instead."""
        try:
            await super()._auto_play_event(payload)
        except TrackGone as exc:
            await self.play_first_playable(self.queue.get() if self.queue else None, gone=[exc.title])

    async def on_voice_state_update(self, data: Any, /) -> None:
        """wavelink 3.5 destroys the player on any VOICE_STATE_UPDATE without a channel, silently: the panel
        stays, the snapshot goes, and a voice state Discord lost by itself is never rejoined. Our own leaves
        never get here (disconnect() takes the player out of discord.py first), so it is a moderator's
        disconnect or a loss; Recovery tells them apart (on_music_voice_state_gone)."""
        if data.get("channel_id") or getattr(self.client, "stopping", False):
            if data.get("channel_id"):
                self.voice_state_gone_at = None
            await super().on_voice_state_update(data)
            return
        self.client.dispatch("music_voice_state_gone", self)

    async def disconnect(self, **kwargs: object) -> None:
        """Leave voice at once and drop the node's player within a bound.

        wavelink's own disconnect() awaits the node's DELETE before leaving voice, with no timeout: a hung
        node kept /disconnect, auto-leave and the watchdog waiting for minutes. Leaving voice first needs
        only the gateway; the DELETE then finishes (or is abandoned) in the background."""
        guild = self.guild
        assert guild is not None
        node = self.node
        self._invalidate()  # wavelink's own first step: no longer connected, removed from discord.py
        node._players.pop(guild.id, None)  # what wavelink's _destroy() does before its DELETE
        try:
            await asyncio.wait_for(guild.change_voice_state(channel=None), DISCONNECT_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, discord.ClientException) as exc:
            log.warning("guild %s: could not send the voice leave (%s)", guild.id, type(exc).__name__)
        try:
            await lavalink_call(node._destroy_player(guild.id), DISCONNECT_TIMEOUT)
        except MusicError:
            log.warning("guild %s: the audio server did not drop the player in time; it will time it out",
                        guild.id)


def mark_voice_lost(player: MusicPlayer) -> None:
    """The player is silent for want of a voice connection: remember where the song went quiet."""
    if not player.voice_lost:
        player.voice_lost_position = player.position if player.current is not None else None
    player.voice_lost = True
    player.voice_back.clear()


def alive(player: MusicPlayer) -> bool:
    """Still this guild's player at its node (not left, disconnected or destroyed). wavelink's `connected` goes
    false on a 4014 already, before we know whether it was a kick."""
    return player.guild is not None and player.node.get_player(player.guild.id) is player


def kicked(player: MusicPlayer) -> bool:
    """A moderator's disconnect: the node's 4014 and our voice state cleared, within KICK_WINDOW of each other."""
    gone, closed = player.voice_state_gone_at, player.closed_4014_at
    return gone is not None and closed is not None and abs(gone - closed) <= KICK_WINDOW


async def voice_confirmed(player: MusicPlayer) -> bool:
    """Whether the node reports its voice connection up (playerUpdate `connected`) before it closes it again
    or VOICE_CONFIRM passes."""
    waits = [asyncio.ensure_future(player.voice_back.wait()), asyncio.ensure_future(player.voice_failed.wait())]
    try:
        await asyncio.wait(waits, timeout=VOICE_CONFIRM, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
    return player.voice_back.is_set()


async def skip_stalled(player: MusicPlayer, why: str) -> None:
    """Skip the current track with a short message (Lavalink's stuck event, or our own stall sweep)."""
    track = player.current
    if track is None:
        return
    player.reset_progress()
    await player.say(f"**{truncate(track.title, 80)}** {why}; skipping it.")
    try:
        await lavalink_call(player.skip(force=True))
    except MusicError:
        log.warning("guild %s: could not skip a stalled track", getattr(player.guild, "id", "?"))


def resume_saved_sessions(nodes: list[wavelink.Node], saved: dict[str, str]) -> None:
    """Give each node the session id its previous process had, before it connects.

    wavelink 3.5 has no public way to resume a session across processes; it sends `Node._session_id` as the
    Session-Id header when it connects, so a restarted bot resumes its Lavalink session instead of leaving
    the old session's players running beside new ones until Lavalink times them out."""
    for node in nodes:
        if saved.get(node.identifier):
            node._session_id = saved[node.identifier]


def accept_every_voice_close_code() -> None:
    """wavelink 3.5 turns a WebSocketClosedEvent's code into DiscordVoiceCloseType, a plain Enum that lacks codes
    Lavalink does send (1006 for an abnormal close, 4020+ from newer voice servers): the ValueError ends wavelink's
    websocket receive loop, so the node drops and every player is rebuilt. Give the Enum a `_missing_` that
    answers unknown codes with a pseudo-member carrying the number, as Enum does for Flag values."""
    close_type = wavelink.DiscordVoiceCloseType
    if getattr(close_type, "_fleet_accepts_any", False):
        return

    def _missing_(cls: type[wavelink.DiscordVoiceCloseType], value: object) -> wavelink.DiscordVoiceCloseType | None:
        if not isinstance(value, int):
            return None
        member = object.__new__(cls)
        member._name_ = f"CODE_{value}"
        member._value_ = value
        return member

    close_type._missing_ = classmethod(_missing_)  # type: ignore[method-assign, assignment]
    close_type._fleet_accepts_any = True  # type: ignore[attr-defined]


class Recovery(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        accept_every_voice_close_code()
        # setup_hook creates the nodes, loads the cogs and only then connects: the ids are in place in time.
        link = getattr(self.bot, "lavalink", None)  # absent when cogs are loaded outside setup_hook (tests)
        if link is not None:
            resume_saved_sessions(link.nodes, link.saved_sessions())
        self.stall_sweep.start()

    async def cog_unload(self) -> None:
        self.stall_sweep.cancel()

    # ---- the audio server ---------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_wavelink_node_ready(self, payload: wavelink.NodeReadyEventPayload) -> None:
        log.info("Lavalink node %s ready (session %s, resumed %s)", payload.node.identifier, payload.session_id,
                 payload.resumed)
        self.bot.lavalink.watch(payload.node)
        self.bot.lavalink.remember_sessions()
        if payload.resumed:
            return
        for player in list(payload.node.players.values()):
            if isinstance(player, MusicPlayer) and player.connected:
                try:
                    await lavalink_call(player.rebuild(), REBUILD_TIMEOUT)
                except Exception:
                    log.exception("guild %s: could not rebuild the player", getattr(player.guild, "id", "?"))

    @commands.Cog.listener()
    async def on_wavelink_node_disconnected(self, payload: wavelink.NodeDisconnectedEventPayload) -> None:
        """With several nodes, move the players of a node that went away to a live one."""
        dead = payload.node
        log.warning("Lavalink node %s disconnected", dead.identifier)
        if self.bot.stopping:
            return
        for player in [p for p in list(dead.players.values()) if isinstance(p, MusicPlayer) and p.connected]:
            live = [n for n in self.bot.lavalink.nodes if n is not dead and n.status is wavelink.NodeStatus.CONNECTED]
            if not live:
                return  # nowhere to go: the player is rebuilt when its node comes back
            target = min(live, key=lambda n: len(n.players))
            try:
                await lavalink_call(player.switch_node(target), SWITCH_TIMEOUT)  # bounded, never cancelled mid-way
            except Exception:
                log.exception("guild %s: could not move the player to node %s", getattr(player.guild, "id", "?"),
                              target.identifier)
            else:
                log.info("guild %s: player moved from node %s to node %s", getattr(player.guild, "id", "?"),
                         dead.identifier, target.identifier)

    # ---- the gateway -------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        """After a new gateway session (not a resume) discord.py has forgotten its voice clients and rebuilt its
        guilds, while wavelink's player and Lavalink's playback carry on. Hand the player back to discord.py and
        rejoin its channel: Lavalink gets the new voice session and the song continues without a restart."""
        player = next((p for node in self.bot.lavalink.nodes for gid, p in node.players.items()
                       if gid == guild.id and isinstance(p, MusicPlayer)), None)
        if player is None or guild.voice_client is player:
            return
        channel = guild.get_channel(player.channel.id) if player.channel is not None else None
        if not isinstance(channel, discord.VoiceChannel):
            log.info("guild %s: the player's voice channel is gone after the new session; leaving", guild.id)
            await lavalink_call(player._destroy(), REBUILD_TIMEOUT)
            return
        log.warning("guild %s: new gateway session; taking the player back in #%s", guild.id, channel.name)
        # discord.py keeps voice clients in its connection state and wavelink keeps the guild it was created
        # for; both were replaced when the session was, so point them at the new objects (no public API for it).
        player._guild = guild
        player.channel = channel
        self.bot._connection._add_voice_client(guild.id, player)
        if isinstance(player.home, discord.abc.GuildChannel):
            player.home = guild.get_channel(player.home.id)
        await guild.change_voice_state(channel=channel, self_deaf=True)

    # ---- voice ----------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_wavelink_websocket_closed(self, payload: wavelink.WebsocketClosedEventPayload) -> None:
        """The node's voice connection to Discord closed. wavelink 3.5 acts only on 4014, and only half-way; a
        drop would leave the player silent, so rejoin the channel. A 4014 is only noted: it is a kick together
        with our voice state cleared (on_music_voice_state_gone), and a move otherwise (wavelink's own wait)."""
        player = payload.player
        code = payload.code.value  # a DiscordVoiceCloseType (see accept_every_voice_close_code)
        if not isinstance(player, MusicPlayer) or self.bot.stopping:
            return
        if code == VOICE_CLOSED and payload.by_remote:
            player.closed_4014_at = time.monotonic()
            player.closed_4014.set()
            return
        if code not in VOICE_DROPPED:
            return
        log.warning("guild %s: voice connection lost (%s %s)", getattr(player.guild, "id", "?"), code,
                    payload.reason or "")
        rejoining = player.rejoin_task is not None and not player.rejoin_task.done()
        mark_voice_lost(player)
        if rejoining:
            player.voice_failed.set()  # the try in progress failed
        else:
            self._start_rejoin(player)

    @commands.Cog.listener()
    async def on_music_voice_state_gone(self, player: MusicPlayer) -> None:
        """Discord says we are in no voice channel, and we did not ask to leave (RecoveringPlayer). A moderator's
        disconnect also makes the node report 4014; the two come over different sockets in either order, so a
        4014 within KICK_WINDOW of the voice state vanishing makes a kick. Anything else is a drop: rejoin."""
        if self.bot.stopping or player.guild is None:
            return
        player.voice_state_gone_at = time.monotonic()
        mark_voice_lost(player)
        if not kicked(player):
            player.closed_4014.clear()
            try:
                await asyncio.wait_for(player.closed_4014.wait(), KICK_WINDOW)
            except asyncio.TimeoutError:
                pass
        if player.voice_state_gone_at is None or not alive(player):
            return  # back in a channel meanwhile (a move, a rejoin), or the player is gone
        if kicked(player):
            await self._kicked(player)
            return
        log.warning("guild %s: my voice state vanished without a moderator's disconnect; rejoining", player.guild.id)
        self._start_rejoin(player, waited=KICK_WINDOW)

    async def _kicked(self, player: MusicPlayer) -> None:
        """A moderator disconnected the bot: that is a decision, not a fault. Clean up, say so, never rejoin."""
        if player.rejoin_task is not None:
            player.rejoin_task.cancel()
        channel = player.channel
        log.info("guild %s: a moderator disconnected me from #%s; leaving for good", getattr(player.guild, "id", "?"),
                 getattr(channel, "name", "?"))
        where = channel.mention if channel is not None else "the voice channel"
        guild_id = getattr(player.guild, "id", None)
        staying = guild_id is not None and self.bot.stays.get(guild_id) is not None
        await player.leave(f"A moderator disconnected me from {where}, so I stopped and cleared the queue"
                           + (" and turned 24/7 mode off" if staying else "") + ". Use /play to bring me back.")
        if guild_id is not None:  # like /disconnect: a restart must not bring the bot back (commands/stay.py)
            self.bot.dispatch("music_disconnect_requested", guild_id)

    def _start_rejoin(self, player: MusicPlayer, waited: float = 0.0) -> None:
        if player.rejoin_task is None or player.rejoin_task.done():
            player.rejoin_task = asyncio.create_task(self._rejoin(player, waited), name="voice-rejoin")

    async def _rejoin(self, player: MusicPlayer, waited: float = 0.0) -> None:
        """Rejoin the same channel after each delay (VOICE_REJOIN_DELAYS; `waited`: already spent before the
        first). Silent when the first try works; give up after the last, keeping the snapshot."""
        guild = player.guild
        delays = self.bot.settings.voice_rejoin_delays
        for attempt, delay in enumerate(delays, start=1):
            await asyncio.sleep(max(0.0, delay - waited) if attempt == 1 else delay)
            if not player.voice_lost:
                return  # the node got its connection back by itself
            channel = player.channel
            if self.bot.stopping or not alive(player) or guild is None or channel is None:
                return
            # Asking Discord for the same channel again gives a fresh voice session and server; wavelink hands
            # them to the node (on_voice_server_update), which connects again and plays on from its position.
            player.voice_failed.clear()
            try:
                await guild.change_voice_state(channel=channel, self_deaf=True)
                back = await voice_confirmed(player)
            except ConnectionError:
                back = False
            if back:
                metrics.VOICE_REJOINS.inc()
                log.info("guild %s: voice connection back in #%s (try %d)", guild.id, channel.name, attempt)
                if attempt > 1:
                    await player.say(f"Back in {channel.mention}; playing on.")
                return
            log.warning("guild %s: voice rejoin %d of %d failed", guild.id, attempt, len(delays))
            if attempt == 1 and len(delays) > 1:
                await player.say(f"I lost my voice connection in {channel.mention}; trying to get back...")
        metrics.VOICE_REJOIN_FAILURES.inc()
        log.error("guild %s: gave up rejoining voice after %d tries", guild.id if guild else "?", len(delays))
        await self._give_up(player, len(delays))

    async def _give_up(self, player: MusicPlayer, tries: int) -> None:
        """Leave, but keep the snapshot (at the position where the song went silent) for the next start."""
        guild, channel = player.guild, player.channel
        if guild is None:
            return
        build = player.capture(stopped=True, position=player.voice_lost_position)
        keep = getattr(self.bot.get_cog("Persistence"), "keep", None)  # not imported: persistence imports us
        kept = build is not None and keep is not None
        if kept:
            keep(guild.id, build)
        where = channel.mention if channel is not None else "the voice channel"
        after = ("I saved the song and the queue: they come back when I'm restarted, or use /play to start again."
                 if kept else "Use /play to start again.")
        await player.leave(f"I couldn't get back into {where} after {tries} tries, so I left. {after}",
                           keep_snapshot=kept)

    # ---- stuck and stalled tracks -------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_wavelink_player_update(self, payload: wavelink.PlayerUpdateEventPayload) -> None:
        player = payload.player
        if isinstance(player, MusicPlayer):
            player.note_progress(payload.position)
            if payload.connected and player.voice_lost and player.voice_state_gone_at is None:
                player.voice_lost = False
                player.voice_back.set()

    @commands.Cog.listener()
    async def on_wavelink_track_stuck(self, payload: wavelink.TrackStuckEventPayload) -> None:
        player = payload.player
        if isinstance(player, MusicPlayer) and player.current is not None and player.current == payload.track:
            await skip_stalled(player, "got stuck")

    @tasks.loop(seconds=STALL_SWEEP_EVERY)
    async def stall_sweep(self) -> None:
        """Lavalink reports a stuck track only when its own threshold passes, and not at all when it keeps
        sending the same position (a frozen source); a position that stops moving is caught here."""
        if self.bot.stopping:
            return
        now = time.monotonic()
        for player in [vc for vc in self.bot.voice_clients if isinstance(vc, MusicPlayer)]:
            try:
                await self.check_progress(player, now)
            except Exception:
                log.exception("guild %s: stall check failed", getattr(player.guild, "id", "?"))

    async def check_progress(self, player: MusicPlayer, now: float) -> None:
        if not player.connected or player.current is None or player.paused or player.voice_lost \
                or player.node.status is not wavelink.NodeStatus.CONNECTED:
            player.reset_progress()  # nothing should move (outages and voice drops are handled above)
            return
        if now - player.progress[1] >= STALL_AFTER:
            log.warning("guild %s: %s made no progress for %.0f s", getattr(player.guild, "id", "?"),
                        player.current.title, now - player.progress[1])
            await skip_stalled(player, "stopped making progress")


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Recovery(bot))
