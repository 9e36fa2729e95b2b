"""Sessions and node-wide state of the emulated Lavalink node (no networking here).

A :class:`Session` is one websocket client's state: its players, its resume settings and its outbound op
stream (a sink callable supplied by the server). :class:`NodeState` owns every session plus the clock
settings shared by all players (``speed``, update/stats intervals). See sandbox/lavalink_players.py for the
playback semantics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from sandbox.lavalink_players import Player

log = logging.getLogger(__name__)

_SESSION_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

Sink = Callable[[dict[str, Any]], None]


def session_id_for(counter: int) -> str:
    """Deterministic 16-char lowercase alphanumeric id (real Lavalink's are random with this shape)."""
    digest = hashlib.sha256(f"lavalink-session-{counter}".encode()).digest()
    return "".join(_SESSION_ALPHABET[b % len(_SESSION_ALPHABET)] for b in digest[:16])


class Session:
    """A websocket session: its players, resume settings and outbound op stream."""

    def __init__(self, node: NodeState, session_id: str, user_id: int, client_name: str | None) -> None:
        self.node = node
        self.id = session_id
        self.user_id = user_id
        self.client_name = client_name
        self.resuming = False
        self.timeout = 60
        self.players: dict[int, Player] = {}
        self.paused = False  # disconnected but resumable
        self.client_ready = False  # the client fetched /v4/info after our ready (wavelink's last step)
        self.destroyed = False
        self._sink: Sink | None = None
        self._queue: list[dict[str, Any]] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._stats: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._sink is not None

    def info(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "user_id": self.user_id,
            "client_name": self.client_name,
            "connected": self.connected,
            "client_ready": self.client_ready,
            "paused": self.paused,
            "resuming": self.resuming,
            "timeout": self.timeout,
            "players": sorted(self.players),
        }

    def emit(self, op: dict[str, Any], *, update: bool = False) -> None:
        """Send now, queue while paused (events only, as Lavalink skips playerUpdates then), else drop."""
        if self._sink is not None:
            self._sink(op)
        elif self.paused and not update and op.get("op") == "event":
            self._queue.append(op)

    def attach(self, sink: Sink, *, resumed: bool) -> None:
        """Bind a live socket: send ready, then (on resume) the queued events and one playerUpdate per player."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._sink = sink
        self.paused = False
        self.client_ready = False
        sink({"op": "ready", "resumed": resumed, "sessionId": self.id})
        if resumed:
            queued, self._queue = self._queue, []
            for op in queued:
                sink(op)
            for player in self.players.values():
                player.send_update()
        else:
            self._stats = self.node.loop.call_soon(self._send_stats)

    def detach(self, undelivered: list[dict[str, Any]] | None = None) -> None:
        """The socket is gone: keep the session for ``timeout`` s if resuming is on, else shut it down."""
        self._sink = None
        self.client_ready = False
        if self.destroyed:
            return
        if self.resuming:
            self.paused = True
            self._queue = [op for op in (undelivered or []) if op.get("op") == "event"] + self._queue
            self._expiry = self.node.loop.call_later(self.timeout, self.node.expire, self)
            log.info("Session %s can be resumed within the next %s seconds", self.id, self.timeout)
        else:
            self.node.destroy_session(self)

    def _send_stats(self) -> None:
        self._stats = None
        if self.destroyed:
            return
        if self._sink is not None:
            self.emit(self.node.stats(rest=False, session=self))
        self._stats = self.node.loop.call_later(self.node.stats_interval, self._send_stats)

    def player(self, guild_id: int) -> Player:
        if guild_id not in self.players:
            self.players[guild_id] = Player(self, guild_id)
        return self.players[guild_id]

    def destroy_player(self, guild_id: int) -> None:
        player = self.players.pop(guild_id, None)
        if player is not None:
            player.destroy(emit=True)

    def shutdown(self) -> None:
        self.destroyed = True
        self.paused = False
        self._sink = None
        self._queue = []
        for handle in (self._expiry, self._stats):
            if handle is not None:
                handle.cancel()
        self._expiry = self._stats = None
        for player in self.players.values():
            player.destroy(emit=False)
        self.players.clear()


#: ``(user_id, guild_id, voice) -> None`` when Discord would accept these voice credentials (token, endpoint,
#: sessionId) for this bot in this guild, else ``(close code, reason)`` of the voice websocket Discord closes.
VoiceVerifier = Callable[[int, int, dict[str, str]], "tuple[int, str] | None"]


class NodeState:
    """All sessions of one emulated node plus the node-wide clock settings."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        player_update_interval: float = 1.0,
        stats_interval: float = 60.0,
        cleanup_threshold: float = 60.0,
        stuck_threshold_ms: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.speed = speed
        self.stuck_threshold_ms = stuck_threshold_ms
        self.player_update_interval = player_update_interval
        self.stats_interval = stats_interval
        self.cleanup_threshold = cleanup_threshold
        self.clock = clock
        # Who checks the voice credentials a client sends (see VoiceVerifier); None accepts any, as a bare
        # emulator without a Discord to ask has to.
        self.voice_verifier: VoiceVerifier | None = None
        self.sessions: dict[str, Session] = {}
        self.started_at = clock()
        self._counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def players(self) -> Iterator[Player]:
        for session in list(self.sessions.values()):
            yield from list(session.players.values())

    def new_session(self, user_id: int, client_name: str | None) -> Session:
        while True:
            self._counter += 1
            session_id = session_id_for(self._counter)
            if session_id not in self.sessions:
                break
        session = Session(self, session_id, user_id, client_name)
        self.sessions[session_id] = session
        return session

    def live_session(self, session_id: str) -> Session | None:
        """A session the REST API can use: Lavalink answers 404 for paused (disconnected) sessions."""
        session = self.sessions.get(session_id)
        return session if session is not None and session.connected else None

    def resumable(self, session_id: str | None) -> Session | None:
        session = self.sessions.get(session_id or "")
        return session if session is not None and session.paused else None

    def expire(self, session: Session) -> None:
        log.info("Session %s was not resumed in time; destroying it", session.id)
        self.destroy_session(session)

    def destroy_session(self, session: Session) -> None:
        playing = sum(1 for p in session.players.values() if p.track is not None)
        log.info("Shutting down %d playing players for session %s", playing, session.id)
        session.shutdown()
        self.sessions.pop(session.id, None)

    def destroy_all(self) -> None:
        for session in list(self.sessions.values()):
            self.destroy_session(session)

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        players = list(self.players())
        for player in players:
            player._rebase()
        self.speed = speed
        for player in players:
            player.reclock()

    def stats(self, *, rest: bool, session: Session | None = None) -> dict[str, Any]:
        """Stats in Lavalink's shape; deterministic apart from uptime."""
        players = list(self.players())
        playing = [p for p in players if p.track is not None and not p.paused]
        data: dict[str, Any] = {
            "players": len(players),
            "playingPlayers": len(playing),
            "uptime": int((self.clock() - self.started_at) * 1000),
            "memory": {"free": 52_428_800, "used": 104_857_600, "allocated": 157_286_400, "reservable": 1_073_741_824},
            "cpu": {"cores": os.cpu_count() or 1, "systemLoad": 0.05, "lavalinkLoad": 0.01},
            "frameStats": None,
        }
        if not rest:
            data = {"op": "stats", **data}
            own = [p for p in playing if session is None or p.session is session]
            if own:
                data["frameStats"] = {"sent": 3000 * len(own), "nulled": 0, "deficit": 0}
        return data
