"""The bot's connection to its Lavalink node(s), with workarounds for two wavelink 3.5 behaviours.

1. `wavelink.Pool.connect` does not return until a node is reachable (it retries forever), so it
   runs as a background task: the bot reaches READY and answers "audio server unreachable"
   meanwhile instead of hanging in `setup_hook`.
2. A Lavalink node that shuts down sends a websocket close frame. wavelink's receive loop only
   expects CLOSED/CLOSING, tries to parse the CLOSE message as JSON and dies, leaving the node
   marked CONNECTED forever. We watch that loop and, when it dies, start wavelink's own
   reconnect (with its backoff) ourselves. The loop is watched from the moment a (re)connect
   returns, not only once the node is ready: a reconnect that reaches a node still shutting down
   gets its `ready` op, marks the node CONNECTED, then dies on the session PATCH that follows.

It also remembers each node's session id on disk, so a restarted bot process resumes its
Lavalink session (wavelink sends it as Session-Id) instead of leaving the old session's players
running beside the new ones until Lavalink times them out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

import aiohttp
import discord
import wavelink

from utils import metrics
from utils.config import LavalinkNode
from utils.errors import AudioUnavailable, MusicError

log = logging.getLogger(__name__)
T = TypeVar("T")

LAVALINK_TIMEOUT = 2.5  # a call that takes longer answers "audio server unreachable"
ACK_WITHIN = 1.0  # a command waits this long for the node before acknowledging (Discord's deadline is 3 s)
WRITE_TIMEOUT = 5.0  # then the user waits at most this long in all before "audio server unreachable"
BACKGROUND_LIMIT = 60.0  # a write the node holds keeps going this long in the background, then is abandoned

_background: set[asyncio.Task[object]] = set()


async def lavalink_call(awaitable: Awaitable[T], timeout: float = LAVALINK_TIMEOUT) -> T:
    """Await a Lavalink request, turning an unreachable, refusing or hanging node into AudioUnavailable.

    The request is never cancelled mid-flight: wavelink updates its own view (current track, paused, volume)
    only after the node answered, so cancelling a request the node still applies would leave the two
    disagreeing. A request that outlasts `timeout` finishes in the background instead (up to
    BACKGROUND_LIMIT), and wavelink's view follows whatever the node did."""
    task = asyncio.ensure_future(awaitable)
    started = time.perf_counter()
    metrics.LAVALINK_REQUESTS.inc()
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.TimeoutError:
        metrics.LAVALINK_ERRORS.labels("timeout").inc()
        _finish_in_background(task)
        raise AudioUnavailable() from None
    except (wavelink.InvalidNodeException, wavelink.NodeException, OSError, aiohttp.ClientError):
        metrics.LAVALINK_ERRORS.labels("unreachable").inc()
        raise AudioUnavailable() from None
    except wavelink.LavalinkException as exc:
        metrics.LAVALINK_ERRORS.labels("refused").inc()
        log.warning("Lavalink refused a request: %s", exc)
        raise AudioUnavailable() from None
    finally:
        metrics.LAVALINK_LATENCY.observe(time.perf_counter() - started)


def _finish_in_background(task: asyncio.Future[T]) -> None:
    async def finish() -> None:
        try:
            await asyncio.wait_for(task, BACKGROUND_LIMIT)
        except asyncio.TimeoutError:
            log.warning("a Lavalink request got no answer in %.0f s; abandoned", BACKGROUND_LIMIT)
        except Exception as exc:
            log.warning("a slow Lavalink request failed in the end (%s)", type(exc).__name__)
        else:
            log.info("a slow Lavalink request completed late")

    runner: asyncio.Task[object] = asyncio.ensure_future(finish())
    _background.add(runner)
    runner.add_done_callback(_background.discard)


async def node_write(interaction: discord.Interaction, awaitable: Awaitable[T]) -> T:
    """A Lavalink write on behalf of a command that answers without deferring (pause, skip, volume...).

    Discord drops an interaction not acknowledged within 3 s, whatever the node does: if the node has not
    answered after ACK_WITHIN, acknowledge first (a public "thinking...", replaced by the answer), then
    wait up to WRITE_TIMEOUT in all."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=ACK_WITHIN)
    if not done and not interaction.response.is_done():
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException:
            log.info("could not acknowledge interaction %s while the audio server is slow", interaction.id)
    return await lavalink_call(task, WRITE_TIMEOUT - ACK_WITHIN)


class NodeLink:
    """Owns the wavelink nodes of one bot process."""

    def __init__(self, client: discord.Client, nodes: Sequence[LavalinkNode], state_dir: Path | None = None) -> None:
        self.client = client
        self.nodes = [
            wavelink.Node(identifier=n.identifier, uri=n.uri, password=n.password, retries=None,
                          resume_timeout=60, inactive_player_timeout=None)
            for n in nodes
        ]
        self.sessions_file = state_dir / "lavalink-sessions.json" if state_dir is not None else None
        self._connect_task: asyncio.Task[None] | None = None
        self._reconnects: set[asyncio.Task[None]] = set()
        self._watched: weakref.WeakSet[asyncio.Task[None]] = weakref.WeakSet()  # receive loops already guarded
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
        self.watch(node)
        if node.status is not wavelink.NodeStatus.CONNECTED and node.identifier not in wavelink.Pool.nodes:
            log.error("Lavalink node %s: gave up (wrong password or not a Lavalink v4 server?)", node.identifier)

    def saved_sessions(self) -> dict[str, str]:
        """Node identifier -> the session id the previous process had (commands/recovery.py resumes them)."""
        if self.sessions_file is None:
            return {}
        try:
            data = json.loads(self.sessions_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self.sessions_file.name, exc)
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}

    def remember_sessions(self) -> None:
        if self.sessions_file is None:
            return
        data = {node.identifier: node.session_id for node in self.nodes if node.session_id}
        try:
            self.sessions_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.sessions_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.sessions_file)
        except OSError as exc:
            log.warning("could not remember the Lavalink session ids (%s)", exc)

    async def drop_orphans(self, keep: set[int]) -> None:
        """Remove players a resumed session still holds for guilds we did not take back."""
        for node in self.nodes:
            if node.status is not wavelink.NodeStatus.CONNECTED:
                continue
            try:
                players = await lavalink_call(node.fetch_players())
            except MusicError:
                continue
            for player in players:
                if player.guild_id not in keep:
                    try:
                        await lavalink_call(node._destroy_player(player.guild_id))
                        log.info("Lavalink node %s: dropped the leftover player of guild %s", node.identifier,
                                 player.guild_id)
                    except MusicError:
                        log.warning("Lavalink node %s: could not drop the player of guild %s", node.identifier,
                                    player.guild_id)

    def watch(self, node: wavelink.Node) -> None:
        """After every (re)connect and node ready: guard the receive loop wavelink started (once per loop)."""
        websocket = getattr(node, "_websocket", None)
        task = getattr(websocket, "keep_alive_task", None)
        if task is None or task in self._watched:
            return
        self._watched.add(task)
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
        reconnect.add_done_callback(lambda t, node=node: None if t.cancelled() or self._closing else self.watch(node))

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
