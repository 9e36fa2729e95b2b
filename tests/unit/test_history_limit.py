"""The played-songs history stays bounded (wavelink's grows without limit), except where it is the loop itself."""

from __future__ import annotations

import wavelink

from tests.offline_player import offline_node, offline_player, playable
from utils.player import HISTORY_LIMIT


async def test_the_history_keeps_the_newest_songs_only():
    node = offline_node()
    player = offline_player(node, 42)
    try:
        player.queue.history.put([playable(f"played-{i}") for i in range(HISTORY_LIMIT + 30)])
        player.trim_history()
        kept = [track.uri for track in player.queue.history]
        assert len(kept) == HISTORY_LIMIT
        assert "/played-30?" in kept[0]  # the 30 oldest went
        assert f"/played-{HISTORY_LIMIT + 29}?" in kept[-1]  # the newest stays: it is what /previous plays
    finally:
        await node._session.close()


async def test_under_loop_queue_the_history_is_the_loop_and_stays_whole():
    node = offline_node()
    player = offline_player(node, 42)
    try:
        player.queue.mode = wavelink.QueueMode.loop_all
        player.queue.history.put([playable(f"looped-{i}") for i in range(HISTORY_LIMIT + 30)])
        player.trim_history()
        assert len(player.queue.history) == HISTORY_LIMIT + 30  # every song comes round again at the wrap
    finally:
        await node._session.close()
