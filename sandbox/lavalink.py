"""Emulated Lavalink v4 node: an aiohttp server that an unmodified wavelink 3.5.2 client can use.

Protocol behaviour follows Lavalink 4.0.x, checked against its source. Layout: this module holds the server
(websocket, middleware for auth/recording/faults) and the facade; sandbox/lavalink_rest.py the REST handlers;
sandbox/lavalink_sessions.py and sandbox/lavalink_players.py the sessions and the playback clock;
sandbox/lavalink_faults.py the fault rules; sandbox/catalogue.py the tracks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import types
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import WSCloseCode, web

from sandbox.catalogue import Catalogue
from sandbox.lavalink_faults import FaultPlan
from sandbox.lavalink_lyrics import LyricsPlugin
from sandbox.lavalink_rest import ApiError, RestApi, error_response
from sandbox.lavalink_sessions import NodeState, Session, VoiceVerifier
from sandbox.lavalink_websocket import RECORD, WEBSOCKET_PATH, Connection, WebsocketEndpoint

log = logging.getLogger(__name__)

_SESSION_IN_PATH = re.compile(r"^/v4/sessions/([^/]+)")
#: The answer to a route the emulator does not serve: 501 Not Implemented, which no Lavalink route uses.
NOT_EMULATED = HTTPStatus.NOT_IMPLEMENTED.value


async def _api_version_header(request: web.Request, response: web.StreamResponse) -> None:
    """Lavalink's ResponseHeaderFilter: on every response, the websocket handshake included."""
    response.headers["Lavalink-Api-Version"] = "4"


class LavalinkEmulator:
    """A local Lavalink v4 node with a control API for tests and the demo.

    Lifecycle: ``await ll.start()`` / ``await ll.stop()`` or ``async with LavalinkEmulator() as ll:``;
    ``ll.uri`` (``http://127.0.0.1:PORT``), ``ll.port``, ``ll.password``.

    State (read-only views, for assertions):
      ``ll.catalogue`` the :class:`~sandbox.catalogue.Catalogue` (``add_track`` registers custom tracks);
      ``ll.sessions`` session id -> info (user_id, client_name, connected, client_ready, paused, resuming,
      timeout, players); ``client_ready`` turns True when the client fetched /v4/info after ``ready``, which is
      wavelink's last step before ``on_wavelink_node_ready`` (``connected`` alone races it);
      ``ll.player(user_id, guild_id)`` / ``ll.players_of(user_id)`` player snapshots (track info, identifier,
      title, position computed now, paused, volume, filters, voice, connected, end_time, frozen (a stuck-
      track stopped advancing), stuck (and reported TrackStuckEvent));
      ``ll.events`` every op written to a websocket (a copy plus ``sent_at`` monotonic, ``session_id``,
      ``user_id``); ``ll.requests`` every HTTP request (method, path, query, json, status, user_id,
      session_id, time; status is None while unanswered); ``ll.unimplemented`` every authorised request
      to a route or method the emulator does not serve (method, path, query). Those are answered 501 with
      "sandbox: route not emulated", a status no real Lavalink route uses, and the test fixtures that own a
      sandbox fail the test when this list is not empty (``unknown_routes`` is the same list).

    Waiting: ``await ll.wait_for(predicate, timeout)`` returns the predicate's first truthy value;
    ``await ll.wait_for_event("TrackStartEvent", user_id=..., guild_id=..., start=index)`` returns the first
    matching entry of ``ll.events`` at or after ``start`` (matches ``type`` of events or ``op``, e.g. "ready").

    Clock and faults: ``set_speed(x)``; ``set_latency(seconds, path_pattern=None)`` (0 clears);
    ``hang(path_pattern)`` / ``unhang(path_pattern=None)``; ``fail_next(path_pattern, status=500, count=1)``;
    ``clear_faults()``. Patterns are regular expressions searched in the request path (websocket handshake
    included). ``await restart(downtime)`` closes every websocket with a 1001 close frame, loses every
    session and closes the port; it returns then (``wait=True``: once back up) and listens again on the same
    port after ``downtime`` s (``await wait_until_up()``; ``running`` is False meanwhile);
    ``await drop_connections()`` aborts the websocket TCP connections without a close frame (resumable
    sessions survive); ``await close_websocket(user_id, code=1000)`` closes one client's socket with a frame.
    ``upgrade()`` (or ``restart(..., upgrade=True)``, the upgrade happening while the node is down) moves the
    node to a newer track encoding: tracks encoded before no longer decode (500 "Failed to decode track due
    to a mismatching version or missing source manager"), a new loadtracks gives tracks that play.

    Plugins: ``lyrics_plugin`` (default True) installs LavaLyrics (sandbox/lavalink_lyrics.py); ``ll.lyrics.installed``
    can be changed at run time and ``ll.lyrics.set_lyrics(identifier, lyrics_or_None)`` overrides a track's lyrics.

    Voice: ``ll.voice_verifier = f`` makes the node accept only the voice credentials Discord issued:
    ``f(user_id, guild_id, {"token", "endpoint", "sessionId"})`` returns None (accepted) or ``(code, reason)``,
    and a refused connection reports WebSocketClosedEvent with that code and plays no audio (the Sandbox
    wires this to the emulated Discord; a bare emulator accepts anything). ``close_voice(user_id, guild_id,
    code, reason)`` closes a player's voice connection as Discord or the network would (4014, 4006, 1006...).

    Rough edges kept on purpose (Lavalink 4.0.x does the same): REST without ``Authorization`` -> 401, with a
    wrong one -> 403, both with an empty body; a disconnected resumable session answers 404 "Session not
    found" until resumed; an undecodable track -> 500 (an uncaught exception in Lavalink); out-of-range
    volume is clamped, not rejected. Every response, the websocket handshake included, carries
    ``Lavalink-Api-Version: 4``. A ``stuck-`` track stops advancing and reports TrackStuckEvent only after
    ``stuck_threshold_ms`` (Lavalink's ``trackStuckThresholdMs``, default 10 s) of wall time (not scaled by
    ``speed``) without progress while playing; ``ll.stuck_threshold_ms`` can be changed at run time.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "youshallnotpass",
        speed: float = 1.0,
        player_update_interval: float = 1.0,
        stats_interval: float = 60.0,
        *,
        cleanup_threshold: float = 60.0,
        stuck_threshold_ms: int = 10_000,
        catalogue: Catalogue | None = None,
        lyrics_plugin: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._password = password
        self.catalogue = catalogue or Catalogue()
        self.node = NodeState(speed=speed, player_update_interval=player_update_interval,
                              stats_interval=stats_interval, cleanup_threshold=cleanup_threshold,
                              stuck_threshold_ms=stuck_threshold_ms)
        self.lyrics = LyricsPlugin(self.catalogue, installed=lyrics_plugin)
        self._rest = RestApi(self.node, self.catalogue, self.lyrics)
        self._runner: web.AppRunner | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._port: int | None = None
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.unimplemented: list[dict[str, Any]] = []
        self.unknown_routes = self.unimplemented  # the older name
        self.faults = FaultPlan()
        self._changed = asyncio.Event()
        self._websocket = WebsocketEndpoint(self.node, password, self.events, self._notify)

    def __repr__(self) -> str:
        return f"<LavalinkEmulator uri={self.uri if self._port else None} sessions={len(self.node.sessions)}>"

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def password(self) -> str:
        return self._password

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LavalinkEmulator is not started")
        return self._port

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("LavalinkEmulator already started")
        self._changed = asyncio.Event()
        await self._listen(self._port or self._requested_port)

    async def stop(self) -> None:
        await self._cancel_restart()
        await self._shutdown(WSCloseCode.GOING_AWAY)

    async def __aenter__(self) -> LavalinkEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _listen(self, port: int) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(_api_version_header)
        self._rest.add_routes(app)
        app.router.add_get(WEBSOCKET_PATH, self._websocket.handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        log.info("Emulated Lavalink listening on %s", self.uri)

    async def _shutdown(self, code: int) -> None:
        """What a real node going down does: close sockets with a frame, lose all state, close the port."""
        if self._runner is None:
            return
        self.node.destroy_all()
        connections = list(self._websocket.connections)
        await asyncio.gather(*(c.ws.close(code=code) for c in connections), return_exceptions=True)
        runner, self._runner = self._runner, None
        await runner.cleanup()
        self._notify()
        log.info("Emulated Lavalink on port %s stopped", self._port)

    async def restart(self, downtime: float = 1.0, *, wait: bool = False, upgrade: bool = False) -> None:
        """Like a node restart: 1001 close frames, every session and player lost, port closed for ``downtime`` s.

        Returns once the node is down (the port is closed); it listens again on the same port in the
        background. ``wait=True`` returns only when it is back up; ``await wait_until_up()`` does the same later.
        ``upgrade=True``: the node comes back upgraded (see ``upgrade()``).
        """
        port = self.port
        await self._cancel_restart()
        await self._shutdown(WSCloseCode.GOING_AWAY)
        if upgrade:
            self.upgrade()
        self._restarting = asyncio.create_task(self._come_back(port, downtime), name="lavalink-restart")
        if wait:
            await self.wait_until_up(timeout=downtime + 10.0)

    async def _come_back(self, port: int, downtime: float) -> None:
        await asyncio.sleep(downtime)
        self.node.started_at = self.node.clock()
        try:
            await self._listen(port)
        except OSError:
            log.exception("Emulated Lavalink could not listen on port %s again", port)
            raise
        self._notify()

    async def _cancel_restart(self) -> None:
        task, self._restarting = self._restarting, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def wait_until_up(self, timeout: float = 10.0) -> None:
        """Wait until the node listens again after ``restart()`` (raises the restart's error if it failed)."""
        task = self._restarting
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if self._runner is None:
            raise RuntimeError("LavalinkEmulator is not running")

    async def drop_connections(self) -> None:
        """Abort every websocket's TCP connection without a close frame (resumable sessions are kept)."""
        connections = list(self._websocket.connections)
        for conn in connections:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        await self._await_finished(connections)

    async def close_websocket(self, user_id: int | str, code: int = 1000, message: str = "") -> None:
        """Close the websocket(s) of one client with a close frame."""
        connections = [c for c in self._websocket.connections if str(c.session.user_id) == str(user_id)]
        await asyncio.gather(*(c.ws.close(code=code, message=message.encode()) for c in connections),
                             return_exceptions=True)
        await self._await_finished(connections)

    @staticmethod
    async def _await_finished(connections: list[Connection]) -> None:
        if not connections:
            return
        waiters = [asyncio.ensure_future(c.finished.wait()) for c in connections]
        _, pending = await asyncio.wait(waiters, timeout=5.0)
        for waiter in pending:
            waiter.cancel()

    # -- control API: state ---------------------------------------------------------------------------------

    @property
    def sessions(self) -> Mapping[str, dict[str, Any]]:
        return types.MappingProxyType({sid: s.info() for sid, s in self.node.sessions.items()})

    def _sessions_of(self, user_id: int | str) -> list[Session]:
        return [s for s in self.node.sessions.values() if str(s.user_id) == str(user_id)]

    def player(self, user_id: int | str, guild_id: int | str) -> dict[str, Any] | None:
        """Snapshot of the user's player for ``guild_id`` (latest session wins), or None."""
        for session in reversed(self._sessions_of(user_id)):
            player = session.players.get(int(guild_id))
            if player is not None:
                return player.snapshot()
        return None

    def players_of(self, user_id: int | str) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for session in self._sessions_of(user_id):
            for guild_id, player in session.players.items():
                found[guild_id] = player.snapshot()
        return found

    @property
    def voice_verifier(self) -> VoiceVerifier | None:
        return self.node.voice_verifier

    @voice_verifier.setter
    def voice_verifier(self, verifier: VoiceVerifier | None) -> None:
        self.node.voice_verifier = verifier

    def close_voice(self, user_id: int | str, guild_id: int | str, code: int, reason: str = "",
                    *, by_remote: bool = True) -> bool:
        """Close the voice connection of the user's player in ``guild_id`` (every session of that user):
        WebSocketClosedEvent ``code``/``reason``/``byRemote``, then a playerUpdate with connected false; the
        track stops advancing until the client sends voice credentials Discord accepts. False if no player
        had an open voice connection."""
        closed = False
        for session in self._sessions_of(user_id):
            player = session.players.get(int(guild_id))
            if player is not None and player.close_voice(code, reason, by_remote):
                closed = True
        if closed:
            self._notify()
        return closed

    @property
    def stuck_threshold_ms(self) -> int:
        """Lavalink's ``trackStuckThresholdMs``: how long a playing track makes no progress before
        TrackStuckEvent (wall time; takes effect for tracks that get stuck afterwards)."""
        return self.node.stuck_threshold_ms

    @stuck_threshold_ms.setter
    def stuck_threshold_ms(self, value: int) -> None:
        self.node.stuck_threshold_ms = int(value)

    def set_speed(self, speed: float) -> None:
        self.node.set_speed(speed)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every state change and every 50 ms)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    def find_events(
        self,
        event_type: str | None = None,
        *,
        user_id: int | str | None = None,
        guild_id: int | str | None = None,
        session_id: str | None = None,
        start: int = 0,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Entries of ``events`` (from index ``start``) matching every given filter."""
        found = []
        for entry in self.events[start:]:
            if event_type is not None and event_type not in (entry.get("type"), entry.get("op")):
                continue
            if user_id is not None and str(entry["user_id"]) != str(user_id):
                continue
            if guild_id is not None and entry.get("guildId") != str(guild_id):
                continue
            if session_id is not None and entry["session_id"] != session_id:
                continue
            if match is not None and not match(entry):
                continue
            found.append(entry)
        return found

    async def wait_for_event(
        self,
        event_type: str,
        *,
        user_id: int | str | None = None,
        guild_id: int | str | None = None,
        session_id: str | None = None,
        timeout: float = 10.0,
        start: int = 0,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The first sent op of ``event_type`` at or after index ``start`` of ``events``; waits for it."""
        def first() -> dict[str, Any] | None:
            found = self.find_events(event_type, user_id=user_id, guild_id=guild_id, session_id=session_id,
                                     start=start, match=match)
            return found[0] if found else None

        try:
            return await self.wait_for(first, timeout)
        except TimeoutError:
            raise TimeoutError(f"no {event_type} (user_id={user_id}, guild_id={guild_id}) within {timeout} s") from None

    # -- control API: faults --------------------------------------------------------------------------------

    def upgrade(self) -> int:
        """From now on, tracks encoded before are rejected and new ones are encoded differently (returns the
        new track message version). Combine with a restart: ``restart(downtime, upgrade=True)``."""
        version = self.catalogue.upgrade()
        self._notify()
        return version

    def set_latency(self, seconds: float, path_pattern: str | None = None) -> None:
        """Delay answers to matching requests (all when None); 0 clears (``set_latency(0)``: every rule)."""
        self.faults.set_latency(seconds, path_pattern)

    def hang(self, path_pattern: str) -> None:
        """Matching requests get no answer until ``unhang()`` (stop/restart drops their connections)."""
        self.faults.hang(path_pattern)

    def unhang(self, path_pattern: str | None = None) -> None:
        self.faults.unhang(path_pattern)

    def fail_next(self, path_pattern: str, status: int = 500, count: int = 1) -> None:
        """The next ``count`` matching requests are answered ``status`` in Lavalink's error shape."""
        self.faults.fail_next(path_pattern, status, count)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- HTTP plumbing --------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        match = _SESSION_IN_PATH.match(request.path)
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "json": None,
            "status": None,
            "user_id": request.headers.get("User-Id"),
            "session_id": match.group(1) if match else None,
            "time": time.monotonic(),
        }
        if request.body_exists:
            raw = await request.read()
            try:
                record["json"] = json.loads(raw) if raw else None
            except ValueError:
                record["json"] = None
        request[RECORD] = record
        self.requests.append(record)
        self._notify()
        try:
            response = await self._dispatch(request, handler)
        except BaseException:
            self._notify()
            raise
        record["status"] = response.status
        if request.path == "/v4/info" and response.status == 200:
            self._mark_client_ready(record["user_id"])
        self._notify()
        log.debug("%s %s -> %s", request.method, request.path, response.status)
        return response

    async def _dispatch(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        path = request.path
        status = await self.faults.apply(request.method, request.path_qs)
        if status is not None:
            return error_response(status, HTTPStatus(status).phrase, request)
        if path != WEBSOCKET_PATH:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
        route_error = request.match_info.http_exception
        if route_error is not None:
            # 404 and 405 alike: a route (or method) the emulator does not serve. A real node might serve it,
            # so answer what no real route answers and make the test that hit it fail (see ``unimplemented``).
            log.warning("Unimplemented route %s %s (emulator answered %s)", request.method, path, NOT_EMULATED)
            self.unimplemented.append({"method": request.method, "path": path, "query": dict(request.query)})
            return error_response(NOT_EMULATED, f"sandbox: route not emulated: {request.method} {path}", request)
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, request)

    def _mark_client_ready(self, user_id: str | None) -> None:
        """wavelink fetches /v4/info right after ``ready`` and only then dispatches node_ready."""
        for session in self._sessions_of(user_id or ""):
            if session.connected:
                session.client_ready = True

    def _check_auth(self, request: web.Request) -> web.Response | None:
        """Lavalink 4's RequestAuthorizationFilter: missing -> 401, wrong -> 403, both with an empty body."""
        authorization = request.headers.get("Authorization")
        if authorization == self._password:
            return None
        if authorization is None:
            log.warning("Authorization missing for %s on %s %s", request.remote, request.method, request.path)
            return web.Response(status=401)
        log.warning("Authorization failed for %s on %s %s", request.remote, request.method, request.path)
        return web.Response(status=403)
