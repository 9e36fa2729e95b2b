"""Gateway sessions and connections: sequence numbers, replay buffer, compressed frame writing."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import zstandard
from aiohttp import web

from .discord_state import BotApp

log = logging.getLogger(__name__)

REPLAY_BUFFER = 2000
SEND_LIMIT = 120  # client payloads per 60 s before Discord closes with 4008


@dataclass
class BotStats:
    """Per-bot gateway counters that tests assert on."""

    connections: int = 0
    identifies: int = 0
    resumes: int = 0
    compression: list[str | None] = field(default_factory=list)
    intents: int | None = None
    server_closes: list[int] = field(default_factory=list)
    invalid_sessions: int = 0
    heartbeats: int = 0
    presences: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "identifies": self.identifies, "resumes": self.resumes,
            "compression": list(self.compression), "intents": self.intents,
            "server_closes": list(self.server_closes), "invalid_sessions": self.invalid_sessions,
            "heartbeats": self.heartbeats, "presences": list(self.presences),
        }


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Connection:
    """One websocket: frames go through a single writer task so compression state stays in order."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, compression: str | None) -> None:
        self.ws = ws
        self.request = request
        self.compression = compression
        self.session: Session | None = None
        self.app: BotApp | None = None
        self.last_heartbeat = time.monotonic()
        self.written_seq = 0
        self.closed_by_server: int | None = None
        self._sent_window: collections.deque[float] = collections.deque()
        self._queue: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self._zstd = zstandard.ZstdCompressor().compressobj() if compression == "zstd-stream" else None
        self._zlib = zlib.compressobj() if compression == "zlib-stream" else None
        self._writer = asyncio.create_task(self._write_loop())

    def count_send(self) -> bool:
        """Count one client payload; False once it exceeds Discord's 120 per 60 s."""
        now = time.monotonic()
        while self._sent_window and now - self._sent_window[0] > 60:
            self._sent_window.popleft()
        self._sent_window.append(now)
        return len(self._sent_window) <= SEND_LIMIT

    def send(self, payload: dict[str, Any]) -> None:
        self._queue.put_nowait(payload)

    def close(self, code: int, reason: str) -> None:
        """Close after every frame queued so far has been written."""
        self._queue.put_nowait(_Close(code, reason))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _encode(self, payload: dict[str, Any]) -> bytes | str:
        text = json.dumps(payload, separators=(",", ":"))
        if self._zstd is not None:
            data = text.encode()
            return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        if self._zlib is not None:
            return self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        return text

    async def _write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if self.ws.closed:
                continue
            try:
                if isinstance(item, _Close):
                    self.closed_by_server = item.code
                    await self.ws.close(code=item.code, message=item.reason.encode())
                    continue
                frame = self._encode(item)
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
                if item.get("s") is not None:
                    self.written_seq = item["s"]
            except (ConnectionError, RuntimeError) as exc:
                log.debug("gateway write failed: %s", exc)

    async def finish(self) -> None:
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass


class Session:
    """A gateway session: survives its connection so a RESUME can replay what was missed."""

    def __init__(self, session_id: str, app: BotApp, intents: int, shard: tuple[int, int] | None,
                 large_threshold: int) -> None:
        self.session_id = session_id
        self.app = app
        self.intents = intents
        self.shard = shard
        self.large_threshold = large_threshold
        self.seq = 0
        self.buffer: collections.deque[dict[str, Any]] = collections.deque(maxlen=REPLAY_BUFFER)
        self.conn: Connection | None = None
        self.invalid = False
        self.ready_seq: int | None = None  # seq of the last GUILD_CREATE after READY

    def wants_guild(self, guild_id: int) -> bool:
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id

    def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Number, buffer and (if connected) send one dispatch; returns its seq."""
        self.seq += 1
        payload = {"op": 0, "t": event, "s": self.seq, "d": data}
        self.buffer.append(payload)
        if self.conn is not None:
            self.conn.send(payload)
        log.debug("dispatch %s s=%d to %s (%s)", event, self.seq, self.app.name,
                  "live" if self.conn is not None else "buffered")
        return self.seq

    def replay_from(self, seq: int) -> list[dict[str, Any]] | None:
        """Dispatches after `seq`, or None when the buffer no longer reaches back that far."""
        if seq > self.seq:
            return None
        missed = [p for p in self.buffer if p["s"] > seq]
        if missed and missed[0]["s"] != seq + 1:
            return None
        if not missed and seq != self.seq:
            return None
        return missed
