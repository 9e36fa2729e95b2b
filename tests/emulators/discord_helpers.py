"""Helpers for running a real, in-process discord.py client against the emulated Discord."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator

import aiohttp
import discord
import yarl
import zstandard
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_state import BotApp, Channel, Guild, User


class ZlibDecompressionContext:
    """discord.py's zlib-stream context (only defined by discord.py when zstandard is missing)."""

    COMPRESSION_TYPE = "zlib-stream"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.context = zlib.decompressobj()

    def decompress(self, data: bytes, /) -> str | None:
        self.buffer.extend(data)
        if len(data) < 4 or data[-4:] != b"\x00\x00\xff\xff":
            return None
        msg = self.context.decompress(self.buffer)
        self.buffer = bytearray()
        return msg.decode("utf-8")


@contextlib.contextmanager
def pointed_at(emu: DiscordEmulator) -> Iterator[None]:
    """Point discord.py's REST base and gateway URL at the emulator, restoring them afterwards."""
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = emu.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


def make_client(intents: discord.Intents | None = None, **kwargs: Any) -> discord.Client:
    return discord.Client(intents=intents or discord.Intents.default(), guild_ready_timeout=0.3, **kwargs)


@contextlib.asynccontextmanager
async def running(emu: DiscordEmulator, app: BotApp, client: discord.Client | None = None,
                  timeout: float = 15.0) -> AsyncIterator[discord.Client]:
    """Start `client` with the bot's token, wait for on_ready, close it afterwards."""
    client = client or make_client()
    with pointed_at(emu):
        task = asyncio.create_task(client.start(app.token))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()  # raises the client's error
                raise RuntimeError("client stopped before becoming ready")
            if ready not in done:
                raise TimeoutError("client did not become ready")
            yield client
        finally:
            ready.cancel()
            await client.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)


@dataclass
class World:
    """A small guild: a bot, a human, a text and a voice channel."""

    emu: DiscordEmulator
    app: BotApp
    guild: Guild
    text: Channel
    voice: Channel
    user: User


async def make_world(emu: DiscordEmulator, *, privileged_intents: int = 0, bot_name: str = "Music 1") -> World:
    app = emu.add_bot(bot_name, privileged_intents=privileged_intents)
    guild = emu.create_guild("Test Guild")
    text = emu.create_text_channel(guild.id, "general")
    voice = emu.create_voice_channel(guild.id, "Lounge")
    user = emu.add_member(guild.id, "alice")
    await emu.add_bot_to_guild(app, guild.id)
    return World(emu, app, guild, text, voice, user)


class RawGateway:
    """A bare aiohttp gateway client for byte-level checks (text frames unless compress is given)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self._zstd = zstandard.ZstdDecompressor().decompressobj() if compress == "zstd-stream" else None
        self._zlib = ZlibDecompressionContext() if compress == "zlib-stream" else None
        self.frame_types: list[aiohttp.WSMsgType] = []

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            self.frame_types.append(msg.type)
            if msg.type is aiohttp.WSMsgType.TEXT:
                return json.loads(msg.data)
            if msg.type is aiohttp.WSMsgType.BINARY:
                if self._zstd is not None:
                    return json.loads(self._zstd.decompress(msg.data))
                if self._zlib is not None:
                    text = self._zlib.decompress(msg.data)
                    if text is not None:
                        return json.loads(text)
                    continue
            raise ConnectionError(f"gateway closed: {msg.type} {msg.data!r} {msg.extra!r}")

    async def recv_dispatch(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            payload = await self.recv(timeout)
            if payload.get("t") == event:
                return payload

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def identify(self, token: str, intents: int = 53575421) -> dict[str, Any]:
        await self.send(2, {"token": token, "intents": intents, "properties": {"os": "linux"}})
        return await self.recv_dispatch("READY")


@contextlib.asynccontextmanager
async def raw_gateway(emu: DiscordEmulator, compress: str | None = None) -> AsyncIterator[RawGateway]:
    query = "?v=10&encoding=json" + (f"&compress={compress}" if compress else "")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(emu.gateway_url + query, autoclose=False, max_msg_size=0) as ws:
            raw = RawGateway(ws, compress)
            hello = await raw.recv()
            assert hello["op"] == 10
            yield raw


@contextlib.asynccontextmanager
async def synced(emu: DiscordEmulator, bot: commands.Bot) -> AsyncIterator[tuple[World, commands.Bot]]:
    """A fresh world with `bot` running in it, its global commands synced to the world's guild."""
    world = await make_world(emu)
    async with running(emu, world.app, bot):
        guild = discord.Object(world.guild.id)
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        yield world, bot
