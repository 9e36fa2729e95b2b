"""Several Lavalink nodes (LAVALINK_URI list): players move off a node that goes away."""

from __future__ import annotations

import pytest

from sandbox.control import LAVALINK_PASSWORD
from sandbox.lavalink import LavalinkEmulator
from tests.e2e.fleet import start_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_players_move_to_a_live_node_when_theirs_dies(sandbox, tmp_path):
    async with LavalinkEmulator(password=LAVALINK_PASSWORD, player_update_interval=0.5) as second:
        second.voice_verifier = sandbox.verify_voice  # as strict about voice credentials as the first node
        nodes = {"node-1": sandbox.lavalink, "node-2": second}
        fleet = await start_fleet(sandbox, 1, tmp_path / "logs",
                                  LAVALINK_URI=f"{sandbox.lavalink.uri},{second.uri}")
        try:
            app = fleet.apps[0]
            await second.wait_for(lambda: any(s["user_id"] == app.user_id and s["client_ready"]
                                               for s in second.sessions.values()), timeout=20)
            scene = await fleet.scene()
            await scene.join("alice", "Lounge")
            await scene.cmd(1, "alice", "play", query="https://music.example/track/moving-song?length=600000")
            await scene.cmd(1, "alice", "play", query="https://music.example/track/queued-song?length=600000")
            holder_name = next(name for name, node in nodes.items() if node.player(app.user_id, scene.guild_id))
            holder = nodes[holder_name]
            other = second if holder is sandbox.lavalink else sandbox.lavalink
            await holder.wait_for(lambda: (holder.player(app.user_id, scene.guild_id) or {}).get("position", 0) > 1500)
            before = holder.player(app.user_id, scene.guild_id)["position"]

            await holder.restart(downtime=60)  # gone for longer than the test
            moved = await other.wait_for(
                lambda: (p := other.player(app.user_id, scene.guild_id)) is not None and p["identifier"] and p,
                timeout=20)
            assert "moving-song" in moved["identifier"] and moved["voice"] is not None
            assert before - 1000 <= moved["position"] <= before + 5000
            await other.wait_for(lambda: other.player(app.user_id, scene.guild_id)["position"] > moved["position"])
            await fleet.bots[0].wait_for_line(rf"player moved from node {holder_name} to node", timeout=5)
            queue = (await scene.cmd(1, "alice", "queue")).embeds[0]["description"]
            assert "Queued Song" in queue
            skipped = await scene.cmd(1, "alice", "skip")
            assert skipped.content.startswith("Skipped **Moving Song**")
            await other.wait_for(lambda: "queued-song" in ((other.player(app.user_id, scene.guild_id) or {})
                                                           .get("identifier") or ""), timeout=10)
        finally:
            await fleet.stop()
