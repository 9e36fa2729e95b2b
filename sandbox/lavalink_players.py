"""Players and the playback clock of the emulated Lavalink node (no networking here).

Sessions and node-wide settings live in sandbox/lavalink_sessions.py.

The clock is event driven: a player stores the position it had at its last state change (``_base_pos`` at
``_base_at``, monotonic seconds) and derives the current position from the elapsed time, the node's ``speed``
and the timescale filter. One ``loop.call_later`` timer per player fires at the next interesting point (the
track's end, its ``endTime`` or the moment a ``stuck-`` track freezes); another sends the periodic
``playerUpdate``. Nothing polls, so an idle node costs no CPU.

Semantics follow Lavalink 4.0.x / lavaplayer (checked against their source):
- play -> TrackStartEvent (preceded by TrackEndEvent ``replaced`` for a playing track) then a playerUpdate;
  ``noReplace`` with a playing track ignores the new track; ``encoded: null`` -> TrackEndEvent ``stopped``.
- reaching the length or ``endTime`` -> TrackEndEvent ``finished``; DELETE of a playing player -> ``stopped``
  (lavaplayer's destroy() is stopTrack()); a track started without a voice connection never advances and is
  cleaned up after ``cleanup_threshold`` seconds (TrackEndEvent ``cleanup``), as lavaplayer does for players
  nobody pulls audio from.
- a ``stuck-`` track stops advancing at 1 s of track time and reports TrackStuckEvent (``thresholdMs``) only
  once it has made no progress for ``stuck_threshold_ms`` of wall time while playing (lavaplayer's
  trackStuckThreshold; pausing or losing voice restarts the wait).
- seeking a non-seekable track is silently ignored (lavaplayer) and answered 200; seeking past the end
  finishes the track; volume is clamped to 0..1000 (lavaplayer), not rejected.
- while a resumable session is disconnected its events are queued (playerUpdates are skipped) and replayed
  after ``ready`` on resume, followed by one playerUpdate per player.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from sandbox.catalogue import CatalogueTrack

if TYPE_CHECKING:
    from sandbox.lavalink_sessions import Session

log = logging.getLogger(__name__)

STUCK_AFTER_MS = 1000  # track time at which a stuck- track stops advancing
VOICE_PING_MS = 20


def unix_ms() -> int:
    return int(time.time() * 1000)


class Player:
    """One guild's player inside a session."""

    def __init__(self, session: Session, guild_id: int) -> None:
        self.session = session
        self.node = session.node
        self.guild_id = guild_id
        self.track: CatalogueTrack | None = None
        self.user_data: dict[str, Any] = {}
        self.paused = False
        self.volume = 100
        self.filters: dict[str, Any] = {}
        self.voice: dict[str, str] | None = None  # the credentials the client sent last
        self.voice_open = False  # the node's voice websocket to Discord is up (Koe's gatewayConnection.isOpen)
        self.voice_closed: dict[str, Any] | None = None  # the last WebSocketClosedEvent's code/reason/byRemote
        self.end_time: int | None = None
        self.frozen = False  # a stuck- track that stopped advancing
        self.stuck = False  # ... and reported TrackStuckEvent
        self._base_pos = 0.0
        self._base_at = self.node.clock()
        self._deadline: asyncio.TimerHandle | None = None
        self._updates: asyncio.TimerHandle | None = None
        self._cleanup: asyncio.TimerHandle | None = None

    # -- clock ----------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.voice is not None and self.voice_open

    def rate(self) -> float:
        """Track milliseconds per real millisecond."""
        timescale = self.filters.get("timescale") or {}
        factor = float(timescale.get("speed", 1.0) or 1.0) * float(timescale.get("rate", 1.0) or 1.0)
        return self.node.speed * factor

    def advancing(self) -> bool:
        return self.playing() and not self.frozen

    def playing(self) -> bool:
        """Has a track and asks for audio (lavaplayer's frame provider is being polled)."""
        return self.track is not None and not self.paused and self.connected

    def limit(self) -> float:
        if self.track is None:
            return 0.0
        end = math.inf if self.track.is_stream else float(self.track.length)
        if self.end_time is not None:
            end = min(end, float(self.end_time))
        return end

    def _raw_position(self, now: float | None = None) -> float:
        pos = self._base_pos
        if self.advancing():
            now = self.node.clock() if now is None else now
            pos += max(0.0, now - self._base_at) * 1000.0 * self.rate()
        return min(pos, self.limit()) if self.track is not None else 0.0

    def position(self, now: float | None = None) -> int:
        return int(self._raw_position(now))

    def _rebase(self) -> None:
        now = self.node.clock()
        self._base_pos = self._raw_position(now)
        self._base_at = now

    def _arm(self) -> None:
        """(Re)schedule the timer for the next point where something happens."""
        if self.frozen:  # the wait for the stuck report runs on while the player keeps asking for audio
            if not self.playing() or self.stuck:
                self._cancel(deadline=True)
            elif self._deadline is None:
                self._deadline = self.node.loop.call_later(self.node.stuck_threshold_ms / 1000.0, self._report_stuck)
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not self.advancing() or self.rate() <= 0:
            return
        assert self.track is not None
        target = self.limit()
        if self.track.behaviour == "stuck":
            target = min(target, float(STUCK_AFTER_MS))
        if math.isinf(target):
            return
        delay = max(0.0, (target - self._raw_position()) / (1000.0 * self.rate()))
        self._deadline = self.node.loop.call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.track is None:
            return
        pos = self._raw_position()
        if self.track.behaviour == "stuck" and not self.frozen and pos >= STUCK_AFTER_MS - 1:
            self._rebase()
            self._base_pos = float(STUCK_AFTER_MS)  # deterministic freeze point, whatever the timer lateness
            self.frozen = True
            self._arm()  # the stuck report, after the threshold
            return
        if pos >= self.limit() - 1:
            self._end("finished")
            return
        self._arm()

    def _report_stuck(self) -> None:
        self._deadline = None
        if self.track is None or not self.frozen or not self.playing():
            return
        self.stuck = True
        threshold = self.node.stuck_threshold_ms
        log.warning("%s got stuck! Threshold surpassed: %s", self.track.title, threshold)
        self._emit_event("TrackStuckEvent", self.track, thresholdMs=threshold)
        self.send_update()

    # -- wire payloads --------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "time": unix_ms(),
            "position": self.position(),
            "connected": self.connected,
            "ping": VOICE_PING_MS if self.connected else -1,
        }

    def track_payload(self) -> dict[str, Any] | None:
        if self.track is None:
            return None
        return self.track.to_payload(self.position(), self.user_data)

    def to_response(self) -> dict[str, Any]:
        """The Lavalink v4 Player object."""
        voice = self.voice or {}
        return {
            "guildId": str(self.guild_id),
            "track": self.track_payload(),
            "volume": self.volume,
            "paused": self.paused,
            "state": self.state(),
            "voice": {
                "token": voice.get("token", ""),
                "endpoint": voice.get("endpoint", ""),
                "sessionId": voice.get("sessionId", ""),
            },
            "filters": dict(self.filters),
        }

    def snapshot(self) -> dict[str, Any]:
        """Emulator-side view for tests (not a wire format)."""
        track = self.track
        return {
            "guild_id": self.guild_id,
            "session_id": self.session.id,
            "track": track.info(self.position()) if track else None,
            "identifier": track.identifier if track else None,
            "title": track.title if track else None,
            "encoded": track.encoded if track else None,
            "user_data": dict(self.user_data),
            "position": self.position(),
            "paused": self.paused,
            "volume": self.volume,
            "filters": dict(self.filters),
            "voice": dict(self.voice) if self.voice else None,
            "connected": self.connected,
            "voice_closed": dict(self.voice_closed) if self.voice_closed else None,
            "end_time": self.end_time,
            "frozen": self.frozen,
            "stuck": self.stuck,
        }

    def send_update(self) -> None:
        self.session.emit({"op": "playerUpdate", "guildId": str(self.guild_id), "state": self.state()}, update=True)

    def _emit_event(self, event_type: str, track: CatalogueTrack, position: int | None = None, **extra: Any) -> None:
        payload = track.to_payload(self.position() if position is None else position, self.user_data)
        op = {"op": "event", "type": event_type, "guildId": str(self.guild_id), "track": payload}
        op.update(extra)
        self.session.emit(op)

    # -- operations (called by the REST layer, in Lavalink's order) -----------------------------------------

    def set_voice(self, voice: dict[str, str]) -> None:
        """Connect to Discord's voice server with these credentials, as Lavalink's PlayerRestHandler does:
        the same credentials on an open connection change nothing; anything else replaces the connection.
        Credentials Discord did not issue (see NodeState.voice_verifier) make the new connection close at
        once: WebSocketClosedEvent with Discord's voice close code, and no audio."""
        if self.voice_open and self.voice == voice:
            return
        verifier = self.node.voice_verifier
        rejection = verifier(self.session.user_id, self.guild_id, dict(voice)) if verifier is not None else None
        self._rebase()
        self.voice = dict(voice)
        if rejection is not None:
            self.voice_open = False
            self._arm()
            code, reason = rejection
            log.warning("Voice connection for guild %s refused by Discord: %s %s", self.guild_id, code, reason)
            # Koe's connect() completes first, the voice server closes right after: the event follows the answer.
            self.node.loop.call_soon(self._voice_lost, code, reason, True)
            return
        self.voice_open = True
        self.voice_closed = None
        if self._cleanup is not None:
            self._cleanup.cancel()
            self._cleanup = None
        self._arm()
        self.send_update()  # Koe's gatewayReady triggers one in real Lavalink

    def close_voice(self, code: int, reason: str, by_remote: bool = True) -> bool:
        """Discord (or the network) closes the node's voice websocket: no more audio until new credentials
        arrive. Returns False when there was no open voice connection to close."""
        if not self.voice_open:
            return False
        self._voice_lost(code, reason, by_remote)
        return True

    def _voice_lost(self, code: int, reason: str, by_remote: bool) -> None:
        if self.session.destroyed:
            return
        self._rebase()
        self.voice_open = False
        self.voice_closed = {"code": code, "reason": reason, "byRemote": by_remote}
        self._arm()
        if self.track is not None and self._cleanup is None:  # nobody pulls audio any more (lavaplayer cleanup)
            self._cleanup = self.node.loop.call_later(self.node.cleanup_threshold, self._end, "cleanup")
        # Lavalink's WsEventHandler.gatewayClosed: the event, then a playerUpdate (connected false)
        self.session.emit({"op": "event", "type": "WebSocketClosedEvent", "guildId": str(self.guild_id),
                           "code": code, "reason": reason, "byRemote": by_remote})
        self.send_update()

    def set_paused(self, paused: bool) -> None:
        self._rebase()
        self.paused = paused
        self._arm()

    def set_volume(self, volume: int) -> None:
        self.volume = min(1000, max(0, volume))

    def seek(self, position: int) -> None:
        if self.track is None:
            return
        if self.track.is_seekable:
            self._rebase()
            self._base_pos = float(max(0, position))
            self._arm()
        self.send_update()

    def set_end_time(self, end_time: int | None) -> None:
        if self.track is None:
            return
        self._rebase()
        self.end_time = end_time
        self._arm()

    def set_filters(self, filters: dict[str, Any]) -> None:
        self._rebase()
        self.filters = dict(filters)
        self._arm()
        self.send_update()

    def play(
        self,
        track: CatalogueTrack,
        *,
        position: int | None = None,
        end_time: int | None = None,
        paused: bool = False,
        user_data: dict[str, Any] | None = None,
    ) -> None:
        self._rebase()
        self.paused = paused
        old = self.track
        if old is not None:
            self._emit_event("TrackEndEvent", old, reason="replaced")
        self._cancel(deadline=True, cleanup=True)
        self.track = track
        self.user_data = dict(user_data or {})
        self.end_time = end_time
        self.frozen = self.stuck = False
        self._base_pos = float(max(0, position or 0))
        self._base_at = self.node.clock()
        self._emit_event("TrackStartEvent", track)
        self.send_update()
        if self._updates is None:
            self._updates = self.node.loop.call_later(self.node.player_update_interval, self._periodic_update)
        if track.behaviour == "explode":
            self.node.loop.call_soon(self._explode, track)
            return
        if not self.connected:
            self._cleanup = self.node.loop.call_later(self.node.cleanup_threshold, self._end, "cleanup")
        self._arm()

    def _explode(self, track: CatalogueTrack) -> None:
        if self.track is not track:
            return
        exception = {
            "message": "Something broke when playing the track.",
            "severity": "fault",
            "cause": f"java.lang.IllegalStateException: Simulated decoder failure ({track.identifier})",
        }
        self._emit_event("TrackExceptionEvent", track, exception=exception)
        self._end("loadFailed")

    def stop(self) -> None:
        if self.track is not None:
            self._end("stopped")

    def _end(self, reason: str) -> None:
        track = self.track
        if track is None:
            return
        position = self.position()
        self._rebase()
        self._cancel(deadline=True, cleanup=True, updates=True)
        self.track = None
        self.frozen = self.stuck = False
        self.end_time = None
        self._base_pos = 0.0
        self._emit_event("TrackEndEvent", track, position=position, reason=reason)

    def _periodic_update(self) -> None:
        self._updates = None
        if self.track is None:
            return
        self.send_update()
        self._updates = self.node.loop.call_later(self.node.player_update_interval, self._periodic_update)

    def _cancel(self, *, deadline: bool = False, cleanup: bool = False, updates: bool = False) -> None:
        for name, wanted in (("_deadline", deadline), ("_cleanup", cleanup), ("_updates", updates)):
            handle = getattr(self, name)
            if wanted and handle is not None:
                handle.cancel()
                setattr(self, name, None)

    def destroy(self, *, emit: bool) -> None:
        """DELETE (emit=True: TrackEndEvent ``stopped`` if playing) or session shutdown (emit=False)."""
        if emit:
            self.stop()
        self._cancel(deadline=True, cleanup=True, updates=True)
        self.track = None

    def reclock(self) -> None:
        """Re-arm after a node-wide speed change (``_rebase`` was done before the change)."""
        self._arm()
