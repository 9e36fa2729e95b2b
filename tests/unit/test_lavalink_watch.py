"""NodeLink's guard of wavelink's receive loop (utils/lavalink.py, workaround 2), with a fake websocket."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp

from utils.lavalink import NodeLink


class FakeWebsocket:
    """wavelink's Websocket as NodeLink sees it: connect() ends with a fresh receive loop in keep_alive_task.

    `fates[i]` is what the receive loop of connection i does: "dies" (an exception, e.g. the session PATCH
    after `ready` refused by a node that is shutting down) or "lives"."""

    def __init__(self, fates: list[str]) -> None:
        self.fates = fates
        self.connects = 0
        self.keep_alive_task: asyncio.Task | None = None

    async def connect(self) -> None:
        fate = self.fates[min(self.connects, len(self.fates) - 1)]
        self.connects += 1

        async def receive() -> None:
            await asyncio.sleep(0)
            if fate == "dies":
                raise aiohttp.ClientConnectionError("Connect call failed")
            await asyncio.Event().wait()

        self.keep_alive_task = asyncio.create_task(receive())


async def until(predicate, timeout: float = 5.0) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


async def test_a_receive_loop_that_dies_right_after_a_reconnect_is_reconnected_again():
    link = NodeLink(client=None, nodes=[])
    websocket = FakeWebsocket(["dies", "dies", "lives"])
    node = SimpleNamespace(identifier="node-1", _websocket=websocket)
    await websocket.connect()  # connection 1: wavelink's first, then its loop dies on the node's close frame
    link.watch(node)  # node ready
    # Reconnect 1 reaches the node while it shuts down: its loop dies before any node ready is dispatched.
    await until(lambda: websocket.connects == 3)  # ...and is guarded anyway: reconnect 2 follows
    await asyncio.sleep(0.05)
    assert websocket.connects == 3 and not websocket.keep_alive_task.done()  # the live one is left alone
    await link.close()


async def test_each_receive_loop_is_guarded_once_however_often_it_is_watched():
    link = NodeLink(client=None, nodes=[])
    websocket = FakeWebsocket(["dies", "lives"])
    node = SimpleNamespace(identifier="node-1", _websocket=websocket)
    await websocket.connect()
    link.watch(node)  # after Pool.connect
    link.watch(node)  # node ready for the same connection
    await until(lambda: websocket.connects == 2)
    await asyncio.sleep(0.05)
    assert websocket.connects == 2  # one reconnect, not one per watch
    await link.close()
