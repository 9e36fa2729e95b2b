"""MusicPlayer: wavelink's Player plus the per-guild state a music bot keeps (home channel, panel,
requesters, leave timers). One per guild, living in this bot process only."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import discord
import wavelink

from utils.errors import MusicError, TrackGone
from utils.filters import Effects
from utils.formatting import is_digits, truncate
from utils.lavalink import lavalink_call
from utils.snapshots import HISTORY_KEPT, GuildSnapshot, TrackPayload
from utils.tracklist import LoopMode
from utils.versioned_queue import VersionedQueue

log = logging.getLogger(__name__)

REQUESTER_KEY = "requester_id"
FIND_AGAIN_TIMEOUT = 8.0
REJECTED_TRACK_STATUSES = (400, 500)
# Played songs kept for /previous: as many as a snapshot keeps, so a restart gives back the same history (each
# song is ~3 KB of decoded Lavalink JSON the bot would otherwise keep for nothing after a restart).
HISTORY_LIMIT = HISTORY_KEPT


def requester_id(track: wavelink.Playable | None) -> int | None:
    """Who asked for the track; stored in the track's extras so Lavalink keeps it (userData)."""
    if track is None:
        return None
    value = dict(track.extras).get(REQUESTER_KEY)
    return int(value) if isinstance(value, (int, str)) and is_digits(str(value)) else None


def tag_requester(track: wavelink.Playable, user_id: int) -> None:
    track.extras = {**dict(track.extras), REQUESTER_KEY: str(user_id)}


def track_payload(track: wavelink.Playable) -> TrackPayload:
    """The Lavalink payload a Playable was built from, with its current extras (requester). Kept on the track
    and reused while its extras object is the same one (tag_requester replaces it), so snapshots encode each
    track once; treat it as read-only."""
    extras = track.extras
    cached: tuple[object, TrackPayload] | None = getattr(track, "fleet_snapshot_payload", None)
    if cached is not None and cached[0] is extras:
        return cached[1]
    payload = TrackPayload({**track.raw_data, "userData": dict(extras)})
    track.fleet_snapshot_payload = (extras, payload)  # type: ignore[attr-defined]  # ours, not wavelink's
    return payload


def _build_snapshot(*, current: wavelink.Playable | None, queue: list[wavelink.Playable],
                    history: list[wavelink.Playable], **fields: Any) -> GuildSnapshot:
    """A captured player state (see MusicPlayer.capture) as a snapshot; runs on the snapshot writer's thread."""
    return GuildSnapshot(current=track_payload(current) if current is not None else None,
                         queue=[track_payload(t) for t in queue], history=[track_payload(t) for t in history],
                         **fields)


def wavelink_filters(effects: Effects) -> wavelink.Filters:
    """`effects` as wavelink's Filters, built through its setters: its Filters(data=...) ignores an equalizer
    that does not list all 15 bands (wavelink 3.5)."""
    payload = effects.payload()
    filters = wavelink.Filters()
    if "equalizer" in payload:
        filters.equalizer.set(bands=payload["equalizer"])
    if "timescale" in payload:
        filters.timescale.set(**payload["timescale"])
    if "rotation" in payload:
        filters.rotation.set(rotation_hz=payload["rotation"]["rotationHz"])
    if "karaoke" in payload:
        karaoke = payload["karaoke"]
        filters.karaoke.set(level=karaoke["level"], mono_level=karaoke["monoLevel"],
                            filter_band=karaoke["filterBand"], filter_width=karaoke["filterWidth"])
    if "tremolo" in payload:
        filters.tremolo.set(**payload["tremolo"])
    if "vibrato" in payload:
        filters.vibrato.set(**payload["vibrato"])
    if "lowPass" in payload:
        filters.low_pass.set(**payload["lowPass"])
    return filters


class MusicPlayer(wavelink.Player):
    """The per-guild state and the music logic, through wavelink's public API only. Bots connect with
    commands.recovery.RecoveringPlayer, which adds the workarounds that need wavelink's private parts."""

    home: discord.abc.Messageable | None
    panel_message: discord.Message | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: VersionedQueue = VersionedQueue()  # counts its changes: cheap "did anything change?" checks
        self.position_changes = 0  # bumped by play, seek and pause (the position basis moves): rewrite the snapshot
        self.home = None
        self.panel_message = None
        self.control_lock = asyncio.Lock()  # serializes toggles (the panel's pause button)
        # Panel replacements run one at a time; one asked for meanwhile is folded into a single later one
        # (commands/panel.py): songs can change faster than Discord lets a channel take messages.
        self.panel_lock = asyncio.Lock()
        self.panel_wanted = False
        # Watchdog bookkeeping (commands/watchdog.py): when the reported position last moved, since when the
        # player has had nothing to play, and since when nobody has been listening.
        self.progress: tuple[int, float] = (0, time.monotonic())
        self.idle_since: float | None = None
        self.alone_since: float | None = None
        # Voice as the node sees it (playerUpdate's `connected`, which wavelink 3.5 ignores): recovery.py rejoins
        # after a drop and the stall sweep leaves a song alone while there is no voice connection to play it on.
        self.voice_lost = False
        self.voice_back = asyncio.Event()
        self.voice_failed = asyncio.Event()  # the node closed the voice connection again during a rejoin try
        self.voice_lost_position: int | None = None  # where the song was when the voice connection went
        self.rejoin_task: asyncio.Task[None] | None = None
        # A kick is the node's 4014 AND our voice state cleared; they come over different sockets (recovery.py).
        self.voice_state_gone_at: float | None = None  # monotonic: Discord's VOICE_STATE_UPDATE without a channel
        self.closed_4014_at: float | None = None  # monotonic: the node's last WebSocketClosedEvent 4014
        self.closed_4014 = asyncio.Event()
        self.restored_note: str | None = None  # shown once on the next panel ("Back after a restart ...")
        self.skip_votes: set[int] = set()  # members who voted to skip the current song (utils/votes.py)
        self.autoplay = wavelink.AutoPlayMode.partial  # play the queue on; recommendations only with /autoplay
        self.inactive_channel_tokens = None  # idle and alone are handled by our watchdog (commands/watchdog.py)
        self.effects = Effects()  # /filter and /speed; wavelink re-sends its Filters with every play()
        # The last known (position, monotonic time): Lavalink's last playerUpdate, or a play/seek/pause/filter
        # change. Under a timescale the position advances at Effects.rate from here (see `position`).
        self.position_basis: tuple[int, float] | None = None

    @property
    def position(self) -> int:
        """wavelink's position, which extrapolates from Lavalink's last update at 1x; under a timescale (/speed,
        nightcore, vaporwave) Lavalink moves the track at speed x rate, and so does this."""
        position = super().position
        rate = self.effects.rate
        basis = self.position_basis
        if rate == 1.0 or basis is None or position == 0 or self.paused or self.current is None:
            return position
        since = max(0.0, time.monotonic() - basis[1])
        return min(int(basis[0] + since * 1000 * rate), self.current.length)

    async def set_effects(self, effects: Effects) -> None:
        """Apply a preset and speed on the node (one PATCH replaces the whole filter set)."""
        position = self.position  # at the old rate, up to now
        await self.set_filters(wavelink_filters(effects))
        self.effects = effects
        self.position_basis = (position, time.monotonic())

    @property
    def loop_mode(self) -> LoopMode:
        return LoopMode.from_queue_mode(self.queue.mode)

    @loop_mode.setter
    def loop_mode(self, mode: LoopMode) -> None:
        self.queue.mode = mode.queue_mode

    @property
    def autoplay_on(self) -> bool:
        return self.autoplay is wavelink.AutoPlayMode.enabled

    def set_autoplay(self, on: bool) -> None:
        self.autoplay = wavelink.AutoPlayMode.enabled if on else wavelink.AutoPlayMode.partial
        if not on:
            self.auto_queue.clear()

    def clear_all(self) -> None:
        """/stop: forget what is queued (history stays for /previous) and stop looping."""
        self.queue.clear()
        self.auto_queue.clear()
        self.loop_mode = LoopMode.off

    def listeners(self) -> list[discord.Member]:
        """Humans in the bot's voice channel."""
        channel = self.channel
        members = getattr(channel, "members", None) or []
        return [m for m in members if not m.bot]

    def previous_track(self) -> wavelink.Playable | None:
        """The track before the current one in the history, if any."""
        history = self.queue.history
        if history is None:
            return None
        offset = 2 if self.current is not None and len(history) and history[-1] == self.current else 1
        return history[-offset] if len(history) >= offset else None

    async def play_previous(self) -> wavelink.Playable | None:
        """Go back one track; the current one goes to the front of the queue."""
        previous = self.previous_track()
        if previous is None:
            return None
        history = self.queue.history
        assert history is not None
        current = self.current
        if current is not None:
            if len(history) and history[-1] == current:
                history.delete(len(history) - 1)
            self.queue.put_at(0, current)
        history.delete(len(history) - 1)  # `previous`; play() adds it back to the history
        await self.play(previous)
        return previous

    async def rebuild(self) -> None:
        """After a Lavalink node lost our session: send the voice state again and resume the track."""
        current, position, paused = self.current, self.position, self.paused
        await self._dispatch_voice_update()
        if current is not None:
            await self.play_first_playable(current, start=0 if current.is_stream else position, paused=paused,
                                           add_history=False)
        log.info("guild %s: player rebuilt on node %s (%s at %d ms)", self.guild and self.guild.id,
                 self.node.identifier, current.title if current else "nothing playing", position)

    async def play(self, track: wavelink.Playable, **kwargs: Any) -> wavelink.Playable:
        """wavelink's play(), plus: a track whose encoding the node rejects (after a Lavalink upgrade or a source
        plugin change) is looked up again by its URI and played from the same position; TrackGone when it
        cannot be found again.

        Lavalink answers an undecodable track with 500 ("Failed to decode track due to a mismatching version
        or missing source manager": its decoder throws, uncaught) or 400 (a malformed request); wavelink's
        exception keeps neither the message nor the cause, so both statuses get one lookup."""
        try:
            played = await super().play(track, **kwargs)
        except wavelink.LavalinkException as exc:
            if exc.status not in REJECTED_TRACK_STATUSES:
                raise
            log.info("guild %s: the node rejected the encoding of %s (%s); looking it up again",
                     self.guild and self.guild.id, track.title, exc.error)
            again = await self.find_again(track)
            if again is None:
                raise TrackGone(track.title) from None
            played = await super().play(again, **kwargs)
        self.position_moved(kwargs.get("start", 0))
        return played

    async def find_again(self, track: wavelink.Playable) -> wavelink.Playable | None:
        """The same song, freshly loaded from the node by its URI (with its requester), or None."""
        if not track.uri:
            return None
        try:
            found = await lavalink_call(wavelink.Playable.search(track.uri), FIND_AGAIN_TIMEOUT)
        except (MusicError, wavelink.LavalinkLoadException):
            return None
        tracks = list(found.tracks) if isinstance(found, wavelink.Playlist) else list(found)
        if not tracks:
            return None
        again = next((t for t in tracks if t.identifier == track.identifier), tracks[0])
        again.extras = dict(track.extras)
        return again

    async def play_first_playable(self, track: wavelink.Playable | None, *, gone: list[str] | None = None,
                                  **kwargs: Any) -> wavelink.Playable | None:
        """Play `track`, or else the next queued track the node can still play. Tracks that cannot be found
        again are skipped, with one message for all of them (`gone`: titles already skipped). None when
        nothing was playable."""
        gone = list(gone or [])
        try:
            while track is not None:
                try:
                    return await self.play(track, **kwargs)
                except TrackGone as exc:
                    gone.append(exc.title)
                    self.restored_note = None  # "resuming <that track>" would be wrong now
                    kwargs.pop("start", None)  # the saved position belonged to the track that is gone
                    track = self.queue.get() if self.queue else None
            return None
        finally:
            if gone:
                names = ", ".join(f"**{truncate(title, 60)}**" for title in gone[:5])
                more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
                await self.say(f"The audio server can no longer find {names}{more}; skipped.")

    async def say(self, text: str) -> None:
        """A line in the player's home channel; never fails the caller."""
        if self.home is None:
            return
        try:
            await self.home.send(text)
        except discord.HTTPException as exc:
            log.info("guild %s: could not post in the home channel (%s)", self.guild and self.guild.id, exc.status)

    async def leave(self, reason: str | None, *, keep_snapshot: bool = False) -> None:
        """Leave voice for good: remove the panel, say why (auto-leave), disconnect. The guild's snapshot ends
        with it, unless `keep_snapshot` (the caller handed it to the persistence cog for a later restart)."""
        if self.guild is not None and not keep_snapshot:
            self.client.dispatch("music_player_left", self.guild.id)
        home, panel = self.home, self.panel_message
        self.panel_message = None
        try:
            await self.disconnect()
        except Exception:
            log.warning("guild %s: disconnect failed", self.guild and self.guild.id, exc_info=True)
        if panel is not None:
            try:
                await panel.delete()
            except discord.HTTPException:
                pass  # already deleted by someone, or no permission
        if reason and home is not None:
            try:
                await home.send(reason)
            except discord.HTTPException:
                log.info("guild %s: could not say why I left", self.guild and self.guild.id)

    def position_moved(self, position: int) -> None:
        """play, seek or pause succeeded: the snapshot must be rewritten (RecoveringPlayer also moves wavelink's
        position basis, which wavelink leaves alone until Lavalink's next playerUpdate)."""
        self.position_changes += 1
        self.position_basis = (position, time.monotonic())

    async def seek(self, position: int = 0, /) -> None:
        await super().seek(position)
        if self.current is not None:
            self.position_moved(position)

    async def pause(self, value: bool, /) -> None:
        position = self.position
        await super().pause(value)
        if self.current is not None:
            self.position_moved(position)

    def fingerprint(self) -> tuple:
        """Everything a snapshot holds but a steadily advancing position: when this changes, the snapshot is out
        of date. O(1): the queues count their own changes (VersionedQueue), so no track is looked at."""
        history = self.queue.history
        current = self.current
        return (getattr(self.channel, "id", None), getattr(self.home, "id", None),
                self.panel_message.id if self.panel_message is not None else None,
                current.encoded if current is not None else None, self.position_changes, self.paused, self.volume,
                self.queue.mode, self.autoplay, self.queue.version, self.effects,
                history.version if isinstance(history, VersionedQueue) else None)

    def capture(self, *, stopped: bool = False, position: int | None = None) -> Callable[[], GuildSnapshot] | None:
        """The player's state now, cheaply (references and list copies, no track is encoded), as a function that
        builds the snapshot later, off the event loop. None when there is nothing worth restoring.
        `stopped`: the bot is shutting down, so playback stops now (GuildSnapshot.stopped); `position`: where
        the song stopped, when that is not where wavelink reckons it is now (it went silent earlier)."""
        current = self.current
        if self.guild is None or self.channel is None or (current is None and not self.queue):
            return None
        history = self.queue.history
        home = self.home
        return functools.partial(
            _build_snapshot,
            guild_id=self.guild.id,
            voice_channel_id=self.channel.id,
            home_channel_id=getattr(home, "id", None),
            panel_message_id=self.panel_message.id if self.panel_message is not None else None,
            current=current,
            position=(self.position if position is None else position) if current is not None else 0,
            paused=self.paused,
            volume=self.volume,
            loop=self.loop_mode.value,
            autoplay=self.autoplay_on,
            queue=self.queue[:],
            history=history[-HISTORY_KEPT:] if history is not None else [],
            saved_at=time.time(),
            stopped=stopped,
            filters=self.effects.to_json() if self.effects.active else None,
        )

    def snapshot(self) -> GuildSnapshot | None:
        """What a restarted bot needs to carry on here; None when there is nothing worth restoring."""
        build = self.capture()
        return build() if build is not None else None

    async def restore(self, snapshot: GuildSnapshot) -> wavelink.Playable | None:
        """Load a snapshot into this freshly connected player and resume the track where it was."""
        self.loop_mode = LoopMode(snapshot.loop)
        self.set_autoplay(snapshot.autoplay)
        self.effects = snapshot.effects
        # play() sends the filters with the track: one PATCH restores both (wavelink keeps them for later plays)
        effects = {"filters": wavelink_filters(self.effects)} if self.effects.active else {}

        self.queue.put([wavelink.Playable(t) for t in snapshot.queue])
        if self.queue.history is not None:
            self.queue.history.put([wavelink.Playable(t) for t in snapshot.history])
        if snapshot.current is None:
            if self.queue:
                await self.play_first_playable(self.queue.get(), volume=snapshot.volume, **effects)
            return None
        track = wavelink.Playable(snapshot.current)
        start = 0 if track.is_stream else min(snapshot.position_at(), max(0, track.length - 1000))
        played = await self.play_first_playable(track, start=start, volume=snapshot.volume, paused=snapshot.paused,
                                                add_history=False, **effects)
        if played is None:
            return None
        if snapshot.volume == 0:  # play(volume=0) falls back to the current volume in wavelink 3.5
            await self.set_volume(0)
        return played

    def note_progress(self, position: int) -> None:
        """Record a position reported by Lavalink; only a change counts as progress."""
        self.position_basis = (position, time.monotonic())
        if position != self.progress[0]:
            self.progress = (position, time.monotonic())

    def reset_progress(self) -> None:
        self.progress = (-1, time.monotonic())

    def trim_history(self) -> None:
        """Keep the newest HISTORY_LIMIT played songs. wavelink's history has no bound of its own, so a bot that
        plays for days (24/7 with autoplay) would keep every song it ever played. Not under /loop queue:
        wavelink refills the queue from the history at each wrap, so there the history is the loop itself."""
        history = self.queue.history
        if history is None or self.queue.mode is wavelink.QueueMode.loop_all:
            return
        while len(history) > HISTORY_LIMIT:
            history.delete(0)
