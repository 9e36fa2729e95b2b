"""The bot's connection to its Lavalink node(s), with workarounds for two wavelink 3.5 behaviours.

1. `wavelink.Pool.connect` does not return until a node is reachable (it retries forever), so it
   runs as a background task: the bot reaches READY and answers "audio server unreachable"
   meanwhile instead of hanging in `setup_hook`.
2. A Lavalink node that shuts down sends a websocket close frame. wavelink's receive loop only
   expects CLOSED/CLOSING, tries to parse the CLOSE message as JSON and dies, leaving the node
   marked CONNECTED forever. We watch that loop and, when it dies, start wavelink's own
   reconnect (with its backoff) ourselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import discord
import wavelink

from utils.config import LavalinkNode
from utils.errors import AudioUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

LAVALINK_TIMEOUT = 2.5  # a call that takes longer answers "audio server unreachable" (Discord's deadline is 3 s)


async def lavalink_call(awaitable: Awaitable[T], timeout: float = LAVALINK_TIMEOUT) -> T:
    """Await a Lavalink request, turning an unreachable, refusing or hanging node into AudioUnavailable."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except (asyncio.TimeoutError, wavelink.InvalidNodeException, wavelink.NodeException, OSError):
        raise AudioUnavailable() from None
    except wavelink.LavalinkException as exc:
        log.warning("Lavalink refused a request: %s", exc)
        raise AudioUnavailable() from None


class NodeLink:
    """Owns the wavelink nodes of one bot process."""

    def __init__(self, client: discord.Client, nodes: Sequence[LavalinkNode]) -> None:
        self.client = client
        self.nodes = [
            wavelink.Node(identifier=n.identifier, uri=n.uri, password=n.password, retries=None,
                          resume_timeout=60, inactive_player_timeout=None)
            for n in nodes
        ]
        self._connect_task: asyncio.Task[None] | None = None
        self._reconnects: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> None:
        """Connect every node in the background."""
        self._connect_task = asyncio.create_task(self._connect_all(), name="lavalink-connect")

    async def _connect_all(self) -> None:
        # One Pool.connect per node: a node that is down must not delay the others.
        await asyncio.gather(*(self._connect_one(node) for node in self.nodes))

    async def _connect_one(self, node: wavelink.Node) -> None:
        try:
            await wavelink.Pool.connect(nodes=[node], client=self.client)
        except Exception:
            log.exception("Lavalink node %s: connection failed", node.identifier)
        if node.status is not wavelink.NodeStatus.CONNECTED and node.identifier not in wavelink.Pool.nodes:
            log.error("Lavalink node %s: gave up (wrong password or not a Lavalink v4 server?)", node.identifier)

    def watch(self, node: wavelink.Node) -> None:
        """Called on every node ready: guard the receive loop wavelink just started."""
        websocket = getattr(node, "_websocket", None)
        task = getattr(websocket, "keep_alive_task", None)
        if task is None:
            return
        task.add_done_callback(lambda t, node=node: self._on_receive_loop_end(node, t))

    def _on_receive_loop_end(self, node: wavelink.Node, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # wavelink cancels it itself when reconnecting or closing
        exc = task.exception()
        if exc is None or self._closing:
            return  # normal end: wavelink already scheduled its own reconnect
        log.warning("Lavalink node %s closed the connection (%s); reconnecting", node.identifier,
                    type(exc).__name__)
        websocket = getattr(node, "_websocket", None)
        if websocket is None:
            return
        reconnect = asyncio.create_task(websocket.connect(), name=f"lavalink-reconnect-{node.identifier}")
        self._reconnects.add(reconnect)
        reconnect.add_done_callback(self._reconnects.discard)

    def status(self) -> list[tuple[str, str]]:
        """(identifier, status) per node, e.g. ("node-1", "CONNECTED")."""
        return [(node.identifier, node.status.name) for node in self.nodes]

    def connected(self) -> bool:
        return any(node.status is wavelink.NodeStatus.CONNECTED for node in self.nodes)

    async def close(self) -> None:
        self._closing = True
        for task in (self._connect_task, *self._reconnects):
            if task is not None and not task.done():
                task.cancel()
        for node in self.nodes:
            try:
                await node.close(eject=True)
            except Exception:
                log.exception("Lavalink node %s: error while closing", node.identifier)
            session = getattr(node, "_session", None)
            if session is not None and not session.closed:
                await session.close()
