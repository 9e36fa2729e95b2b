"""commands/panel.py: panel replacements never pile up (songs can change faster than a channel takes messages)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from commands.panel import Panel


def panel_cog_with_slow_posts() -> tuple[Panel, list[str], asyncio.Event, asyncio.Event]:
    """A Panel cog whose one replacement (delete + post) waits until `release` is set, as a rate-limited
    post does; every replacement appends the song playing when it posts to `posted`."""
    cog = Panel.__new__(Panel)  # the replacement logic needs no bot
    posted: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def once(player) -> None:
        started.set()
        await release.wait()
        posted.append(player.current)

    cog._replace_panel_once = once  # type: ignore[method-assign]
    return cog, posted, started, release


def player(current: str) -> SimpleNamespace:
    return SimpleNamespace(panel_lock=asyncio.Lock(), panel_wanted=False, current=current, panel_message=None)


async def test_replacements_asked_for_while_one_runs_fold_into_one_for_the_latest_song():
    cog, posted, started, release = panel_cog_with_slow_posts()
    p = player("song 1")
    first = asyncio.create_task(cog.replace_panel(p))
    await asyncio.wait_for(started.wait(), 5)
    for n in range(2, 12):  # ten more song changes while the first post waits
        p.current = f"song {n}"
        await asyncio.wait_for(cog.replace_panel(p), 1)  # returns at once: nothing waits in line
    release.set()
    await asyncio.wait_for(first, 5)
    assert posted == ["song 11", "song 11"]  # the first post (late), then one for the song playing
    assert not p.panel_lock.locked() and not p.panel_wanted


async def test_a_refresh_during_a_replacement_makes_it_go_round_once_more():
    cog, posted, started, release = panel_cog_with_slow_posts()
    p = player("song 1")
    first = asyncio.create_task(cog.replace_panel(p))
    await asyncio.wait_for(started.wait(), 5)
    await cog.on_music_panel_refresh(p)  # e.g. /loop changed what the panel shows
    assert p.panel_wanted
    release.set()
    await asyncio.wait_for(first, 5)
    assert len(posted) == 2
