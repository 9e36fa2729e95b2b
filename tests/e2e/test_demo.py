"""The README's run command without tokens: the fleet demo plays its whole scene and stops cleanly."""

from __future__ import annotations

import re
import sys

import pytest

from tests.helpers import Proc, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_fleet_demo_plays_its_scene_and_stops_cleanly(tmp_path):
    demo = await Proc.start([sys.executable, "-m", "sandbox.demo", "--pace", "0"],
                            env=clean_env({"LOG_DIR": str(tmp_path)}), name="demo")
    try:
        assert await demo.wait(timeout=150) == 0, demo.output
    finally:
        await demo.kill()
    out = demo.output
    for expected in (
        "registered the slash commands with register_commands.py --global:",
        "| Bot 3 (Music 3): updated: +ping",
        "all three bots are READY",
        "alice uses /ping  on Music 3 (only they see it):",
        "| Pong! Gateway latency:",
        "| Audio server node-1: connected.",
        "alice uses /play query:golden harbor on Music 1 (everyone sees it):",
        "Queued at position 2:",
        "Skipped **Golden Harbor",
        "alice uses /filter preset:nightcore on Music 1 (everyone sees it):",
        "| 🎛️ Filter **Nightcore** on (",
        "voted to skip **[Midnight Signals](<https://music.example/track/midnight-signals?length=200000>)** (1/2 votes).",
        "I'm already playing in <#",
        "Music 2 is back",
        "no reconnect",
        "restored its player from its own snapshot",
        "Back after a restart - resuming **Velvet Highway",
        "all bots stopped, manager exiting with status 0",
        "process_manager.py exited with 0",
    ):
        assert expected in out, f"missing {expected!r} in:\n{out}"
    assert re.search(r"Bot 2: (STARTING|RUNNING) -> BACKOFF \(signal SIGKILL", out), out
    # What the narration claims unconditionally ("two bots now play at once", "kept playing") is checked
    # against what the members saw and what the scene measured.
    assert re.search(r"carol uses /play query:velvet highway on Music 2 \(everyone sees it\):\n"
                     r" +\| Now playing: \*\*\[Velvet Highway", out), out
    kept = re.search(r"Music 1 kept playing: position ([\d.]+)s -> ([\d.]+)s, no reconnect", out)
    assert kept and float(kept[2]) > float(kept[1]), out
    assert re.search(r"carol uses /nowplaying +on Music 2 .*:\n +\| Now playing\n +\| \*\*\[Velvet Highway"
                     r"(.*\n)+? +\| playing · ", out), out
    assert "Traceback" not in out
    assert out.index("register_commands.py --global") < out.index("uses /ping")  # registered before the scene
    assert sorted(p.name for p in tmp_path.glob("bot-*.log")) == ["bot-1.log", "bot-2.log", "bot-3.log"]
