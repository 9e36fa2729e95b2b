"""The ``/v4/websocket`` endpoint of the emulated Lavalink node.

Handshake as Lavalink 4's HandshakeInterceptor: wrong ``Authorization`` -> 401 and a missing ``User-Id`` ->
400, both before the upgrade; ``Session-Id`` naming a paused resumable session resumes it; the answer carries
``Session-Resumed: true|false``. After the upgrade the server sends ``ready`` first. Outbound ops go through
one ordered queue per socket; ops that never reached the client go back to a resumable session's queue.
The server ignores what the client sends (Lavalink v4 is REST-driven).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.lavalink_rest import error_response
from sandbox.lavalink_sessions import NodeState, Session

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/v4/websocket"
CLOSE_TIMEOUT = 2.0  # how long a server-side close waits for the client's close frame
#: The middleware's request record, so the handshake can add its session id.
RECORD = web.RequestKey("lavalink_record", dict)


class Connection:
    """One accepted websocket: an ordered outbound queue drained by a writer task."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, session: Session,
                 on_sent: Callable[[Connection, dict[str, Any]], None]) -> None:
        self.ws = ws
        self.request = request
        self.session = session
        self._on_sent = on_sent
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._current: dict[str, Any] | None = None
        self.finished = asyncio.Event()
        self._writer = asyncio.create_task(self._write(), name=f"lavalink-ws-writer-{session.id}")

    def push(self, op: dict[str, Any]) -> None:
        self._queue.put_nowait(op)

    async def _write(self) -> None:
        while True:
            op = await self._queue.get()
            self._current = op
            try:
                await self.ws.send_str(json.dumps(op))
            except (ConnectionError, RuntimeError) as exc:
                log.debug("Could not send to session %s: %s", self.session.id, exc)
                return
            self._current = None
            self._on_sent(self, op)

    async def finish(self) -> list[dict[str, Any]]:
        """Stop writing; return the ops that never reached the client, in order."""
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        undelivered = [self._current] if self._current is not None else []
        while not self._queue.empty():
            undelivered.append(self._queue.get_nowait())
        self.finished.set()
        return undelivered


class WebsocketEndpoint:
    """Accepts websocket clients for one node and records every op written to them."""

    def __init__(self, node: NodeState, password: str, events: list[dict[str, Any]],
                 notify: Callable[[], None]) -> None:
        self.node = node
        self._password = password
        self.events = events
        self._notify = notify
        self.connections: set[Connection] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != self._password:
            log.error("Authentication failed from %s", request.remote)
            return web.Response(status=401)
        user_id = request.headers.get("User-Id", "")
        if not user_id.isdigit() or int(user_id) == 0:
            log.error("Missing User-Id header from %s", request.remote)
            return web.Response(status=400)
        client_name = request.headers.get("Client-Name")
        resumable = self.node.resumable(request.headers.get("Session-Id"))
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT, autoping=True)
        if not ws.can_prepare(request).ok:
            return error_response(400, 'Can "Upgrade" only to "WebSocket".', request)
        ws.headers["Session-Resumed"] = "true" if resumable is not None else "false"
        await ws.prepare(request)
        if resumable is not None:
            session = resumable
            log.info("Resumed session with id %s", session.id)
        else:
            session = self.node.new_session(int(user_id), client_name)
            log.info("Connection successfully established from %s", client_name or "an unnamed client")
        request[RECORD].update(session_id=session.id, status=101)
        conn = Connection(ws, request, session, self._record_event)
        self.connections.add(conn)
        session.attach(conn.push, resumed=resumable is not None)
        self._notify()
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    log.warning("Lavalink v4 does not support websocket messages. Please use the REST api.")
        finally:
            self.connections.discard(conn)
            undelivered = await conn.finish()
            log.info("Connection closed for session %s (close code %s)", session.id, ws.close_code)
            session.detach(undelivered)
            self._notify()
        return ws

    def _record_event(self, conn: Connection, op: dict[str, Any]) -> None:
        entry = dict(op)
        entry.update(sent_at=time.monotonic(), session_id=conn.session.id, user_id=conn.session.user_id)
        self.events.append(entry)
        self._notify()
