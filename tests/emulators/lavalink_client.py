"""A tiny raw Lavalink v4 client for the emulator's protocol tests (plain aiohttp, no wavelink)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from sandbox.lavalink import LavalinkEmulator

VOICE = {"token": "voice-token", "endpoint": "127.0.0.1:9999", "sessionId": "voice-session", "channelId": "4001"}


class RawClient:
    """Holds one websocket (every received message is kept in ``messages``) and does REST calls."""

    def __init__(self, ll: LavalinkEmulator, user_id: int = 1001, password: str | None = None) -> None:
        self.ll = ll
        self.user_id = user_id
        self.password = ll.password if password is None else password
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: list[aiohttp.WSMessage] = []
        self.session_id: str | None = None
        self.resumed_header: str | None = None
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.password, "User-Id": str(self.user_id), "Client-Name": "RawClient/1.0"}

    async def connect(self, session_id: str | None = None) -> dict[str, Any]:
        headers = self.headers
        if session_id:
            headers["Session-Id"] = session_id
        self.messages = []
        self.ws = await self.http.ws_connect(f"{self.ll.uri}/v4/websocket", headers=headers)
        self.resumed_header = self.ws._response.headers.get("Session-Resumed")
        self._reader = asyncio.create_task(self._read(self.ws))
        ready = await self.next_op("ready")
        self.session_id = ready["sessionId"]
        return ready

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            self.messages.append(message)
            self._arrived.set()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return

    def ops(self, op: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
        found = []
        for message in self.messages:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            if op is not None and data.get("op") != op:
                continue
            if event_type is not None and data.get("type") != event_type:
                continue
            found.append(data)
        return found

    async def next_op(self, op: str | None = None, event_type: str | None = None, *, index: int = 0,
                      timeout: float = 5.0) -> dict[str, Any]:
        """The ``index``-th received op matching the filters, waiting for it if needed."""
        async def wait() -> dict[str, Any]:
            while True:
                found = self.ops(op, event_type)
                if len(found) > index:
                    return found[index]
                self._arrived.clear()
                await self._arrived.wait()
        return await asyncio.wait_for(wait(), timeout)

    async def wait_closed(self, timeout: float = 5.0) -> aiohttp.WSMessage:
        async def wait() -> aiohttp.WSMessage:
            while True:
                for message in self.messages:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        return message
                self._arrived.clear()
                await self._arrived.wait()
        return await asyncio.wait_for(wait(), timeout)

    async def rest(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.ll.uri}{path}", json=json, params=params,
                                     headers=self.headers if headers is None else headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def load(self, identifier: str) -> dict[str, Any]:
        status, body = await self.rest("GET", "/v4/loadtracks", params={"identifier": identifier})
        assert status == 200, body
        return body

    async def track(self, identifier: str) -> dict[str, Any]:
        result = await self.load(identifier)
        assert result["loadType"] == "track", result
        return result["data"]

    async def patch(self, guild_id: int, body: dict[str, Any], *, no_replace: bool = False) -> tuple[int, Any]:
        return await self.rest("PATCH", f"/v4/sessions/{self.session_id}/players/{guild_id}",
                               json=body, params={"noReplace": str(no_replace)})

    async def voice(self, guild_id: int) -> None:
        status, body = await self.patch(guild_id, {"voice": VOICE}, no_replace=True)
        assert status == 200, body

    async def play(self, guild_id: int, identifier: str, **fields: Any) -> dict[str, Any]:
        track = await self.track(identifier)
        body = {"track": {"encoded": track["encoded"], "userData": {}}, "volume": 100, "position": 0,
                "endTime": None, "paused": False}
        body.update(fields)
        status, player = await self.patch(guild_id, body)
        assert status == 200, player
        return track

    async def drop_socket(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def close(self) -> None:
        await self.drop_socket()
        await self.http.close()
