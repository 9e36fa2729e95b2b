"""Real MusicPlayer objects with real wavelink.Playable tracks, but no network: for the snapshot sampler's unit
tests and benchmark. The node answers every player update at once, as Lavalink would; the player is "connected".
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import wavelink

from sandbox.catalogue import Catalogue
from commands.recovery import RecoveringPlayer
from utils.player import MusicPlayer

_catalogue = Catalogue()


def playable(slug: str, length: int = 240_000, *, stream: bool = False) -> wavelink.Playable:
    """A track exactly as the emulated Lavalink would load it (real encoded blob)."""
    track = _catalogue.music_track(slug, length=length)
    payload = track.to_payload()
    if stream:
        payload["info"]["isStream"] = True
    return wavelink.Playable(payload)


def offline_node(identifier: str = "offline") -> wavelink.Node:
    node = wavelink.Node(uri="http://127.0.0.1:9", password="unused", identifier=identifier)

    async def update_player(guild_id: int, *, data: Any, replace: bool = False) -> dict[str, Any]:
        return {}

    node._update_player = update_player  # type: ignore[method-assign]
    return node


def offline_player(node: wavelink.Node, guild_id: int, channel_id: int = 1) -> MusicPlayer:
    player = RecoveringPlayer(nodes=[node])
    player._guild = types.SimpleNamespace(id=guild_id)  # type: ignore[assignment]
    player.channel = types.SimpleNamespace(id=channel_id, members=[])  # type: ignore[assignment]
    player._connected = True
    node._players[guild_id] = player
    return player


def offline_bot(node: wavelink.Node, state_dir: Path) -> Any:
    """What the Persistence cog reads from its bot: settings, the Lavalink nodes, the stopping flag."""
    return types.SimpleNamespace(settings=types.SimpleNamespace(bot_state_dir=state_dir, restore=False),
                                 lavalink=types.SimpleNamespace(nodes=[node]), stopping=False)
