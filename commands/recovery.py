"""Recovery: what the bot does when something under a playing song breaks. Every such rule is here, or named here.

| event                                       | what the bot does                                                    |
|---------------------------------------------|----------------------------------------------------------------------|
| bot starts with a saved node session        | resumes it (Session-Id), so Lavalink's players keep playing          |
| node closed (close frame, dead socket)      | restarts wavelink's reconnect, with its backoff (NodeLink.watch)      |
| node back, session resumed                  | nothing: Lavalink kept every player playing                          |
| node back, new session                      | rebuilds each player: voice state, then the song at its position     |
| node dead, another alive                    | moves its players to the least loaded live node                      |
| new gateway session (not a resume)          | hands the player back to discord.py and rejoins its channel          |
| voice lost                                  | not handled yet (no rejoin): the idle/alone sweep ends the player    |
| track stuck (Lavalink) or stalled (10 s)    | skips it with a message                                              |
| restore at start                            | rejoins and resumes from the snapshot (persistence.py)               |
| encoding rejected (after a node upgrade)    | finds the song again by its URI, else skips it with one message;     |
|                                             | nothing playable at a restore -> leaves with a message (player.py)  |

Workarounds for library behaviour that writes private attributes of wavelink or discord.py live in this module
and say which upstream behaviour they cover. The player's own overrides (a bounded disconnect, re-resolving a
rejected track, wavelink's auto-play task) are methods of MusicPlayer in utils/player.py.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord
import wavelink
from discord.ext import commands, tasks

from utils.errors import MusicError
from utils.formatting import truncate
from utils.lavalink import lavalink_call
from utils.player import MusicPlayer

if TYPE_CHECKING:
    from bot import MusicBot

log = logging.getLogger(__name__)

STALL_SWEEP_EVERY = 2.0
STALL_AFTER = 10.0  # seconds without a change in the reported position while playing
REBUILD_TIMEOUT = 10.0
SWITCH_TIMEOUT = 10.0


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


class Recovery(commands.Cog):
    def __init__(self, bot: MusicBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
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

    # ---- stuck and stalled tracks -------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_wavelink_player_update(self, payload: wavelink.PlayerUpdateEventPayload) -> None:
        if isinstance(payload.player, MusicPlayer):
            payload.player.note_progress(payload.position)

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
        if not player.connected or player.current is None or player.paused \
                or player.node.status is not wavelink.NodeStatus.CONNECTED:
            player.reset_progress()  # nothing should move (an audio server outage is handled above)
            return
        if now - player.progress[1] >= STALL_AFTER:
            log.warning("guild %s: %s made no progress for %.0f s", getattr(player.guild, "id", "?"),
                        player.current.title, now - player.progress[1])
            await skip_stalled(player, "stopped making progress")


async def setup(bot: MusicBot) -> None:
    await bot.add_cog(Recovery(bot))
