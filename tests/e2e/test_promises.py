"""README promises no other test covered: /queue's page option and time remaining, the panel's shuffle and
queue buttons.

Real bot.py processes against the sandbox; assertions on what members see (answers, panels) and on what the
emulated Discord received.
"""

from __future__ import annotations

import re

import pytest
import pytest_asyncio

from tests.e2e.fleet import running_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


def track_url(slug: str, length: int = 600_000) -> str:
    return f"https://music.example/track/{slug}?length={length}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 2) as fleet:
        yield fleet


@pytest_asyncio.fixture(loop_scope="module")
async def scene(fleet):
    return await fleet.scene()


async def playing_with_queue(scene, slugs, length: int = 60_000):
    """alice in the Lounge, bot 1 playing a 10:00 song, then `slugs` queued (each `length` ms long)."""
    await scene.join("alice", "Lounge")
    first = await scene.cmd(1, "alice", "play", query=track_url("ten-minutes"))
    assert first.content.startswith("Now playing"), first.content
    for slug in slugs:
        queued = await scene.cmd(1, "alice", "play", query=track_url(slug, length))
        assert queued.content.startswith("Queued at position"), queued.content
    await scene.wait_player(1, lambda p: p["identifier"] is not None and "ten-minutes" in p["identifier"])


def remaining_seconds(footer: str) -> int:
    found = re.search(r"· (?:(\d+):)?(\d+):(\d\d) remaining ·", footer)
    assert found, footer
    hours, minutes, seconds = (int(x or 0) for x in found.groups())
    return (hours * 60 + minutes) * 60 + seconds


def queue_lines(embed) -> list[str]:
    """The numbered queue entries of a /queue page ("`11.` [Song](url) `1:00` · <@id>")."""
    return [line for line in embed["description"].splitlines() if re.match(r"`\d+\.`", line)]


# ---- /queue [page] and time remaining ---------------------------------------------------------------------

async def test_queue_page_option_shows_that_page_with_the_time_remaining(scene):
    slugs = [f"page-song-{n:02d}" for n in range(1, 13)]  # 12 songs of 1:00: two pages
    await playing_with_queue(scene, slugs)

    page = await scene.cmd(1, "alice", "queue", page=2)
    embed = page.embeds[0]
    assert page.ephemeral and embed["footer"]["text"].startswith("Page 2/2 · 12 tracks · ")
    lines = queue_lines(embed)
    assert [line.split("`")[1] for line in lines] == ["11.", "12."], lines
    assert "Page Song 11" in lines[0] and "Page Song 12" in lines[1]
    assert "**Now:** [Ten Minutes]" in embed["description"]
    # 12 x 1:00 queued + what is left of the 10:00 song (it has just started).
    left = remaining_seconds(embed["footer"]["text"])
    position = scene.player(1)["position"] // 1000
    assert 22 * 60 - position - 3 <= left <= 22 * 60, (left, position)
    # The page buttons continue from the page asked for.
    buttons = page.components[0]["components"]
    assert buttons[0]["disabled"] is False and buttons[1]["disabled"] is True
    back = await scene.press(1, "alice", page.message_id, buttons[0]["custom_id"])
    assert back.embeds[0]["footer"]["text"].startswith("Page 1/2")
    assert "Page Song 01" in back.embeds[0]["description"] and "Page Song 11" not in back.embeds[0]["description"]

    beyond = await scene.cmd(1, "alice", "queue", page=3)
    assert beyond.ephemeral and beyond.content == "The queue has 2 pages.", beyond.content


async def test_time_remaining_shrinks_as_the_song_plays_and_grows_with_the_queue(scene):
    await playing_with_queue(scene, ["one-minute"])
    before = remaining_seconds((await scene.cmd(1, "alice", "queue")).embeds[0]["footer"]["text"])
    position = scene.player(1)["position"] // 1000
    assert 11 * 60 - position - 3 <= before <= 11 * 60, (before, position)
    start = scene.player(1)["position"]
    await scene.wait_player(1, lambda p: p["position"] >= start + 2_000)
    later = remaining_seconds((await scene.cmd(1, "alice", "queue")).embeds[0]["footer"]["text"])
    assert later <= before - 1, (before, later)
    await scene.cmd(1, "alice", "play", query=track_url("five-minutes", 300_000))
    grown = remaining_seconds((await scene.cmd(1, "alice", "queue")).embeds[0]["footer"]["text"])
    assert later + 5 * 60 - 6 <= grown <= later + 5 * 60, (later, grown)  # minus the seconds played meanwhile


# ---- the panel's shuffle and queue buttons ------------------------------------------------------------------

async def test_panel_shuffle_button_reorders_the_queue(scene):
    slugs = [f"shuffle-{n:02d}" for n in range(1, 11)]  # 10! orders: the same one again is 1 in 3.6 million
    await playing_with_queue(scene, slugs)
    panel = await scene.wait_panel("Ten Minutes")
    order = queue_lines((await scene.cmd(1, "alice", "queue")).embeds[0])

    pressed = await scene.press(1, "alice", int(panel["id"]), "panel:shuffle")
    assert pressed.callback_type == 7 and not pressed.ephemeral  # the panel itself is updated
    assert "Ten Minutes" in pressed.embeds[0]["description"]
    shuffled = queue_lines((await scene.cmd(1, "alice", "queue")).embeds[0])
    titles = [line.split("`", 2)[2] for line in shuffled]
    assert sorted(titles) == sorted(line.split("`", 2)[2] for line in order)  # the same songs ...
    assert titles != [line.split("`", 2)[2] for line in order]  # ... in another order
    assert "ten-minutes" in scene.player(1)["identifier"]  # the current song plays on


async def test_panel_shuffle_button_with_one_song_queued_says_why_not(scene):
    await playing_with_queue(scene, ["lonely-next"])
    panel = await scene.wait_panel("Ten Minutes")
    pressed = await scene.press(1, "alice", int(panel["id"]), "panel:shuffle")
    assert pressed.ephemeral and "nothing to shuffle" in pressed.content, pressed.content


async def test_panel_queue_button_shows_the_queue_to_the_member_who_pressed_it(scene):
    await playing_with_queue(scene, ["queued-one", "queued-two"])
    await scene.join("bob", "Lounge")
    panel = await scene.wait_panel("Ten Minutes")

    pressed = await scene.press(1, "bob", int(panel["id"]), "panel:queue")
    assert pressed.ephemeral  # only bob sees it; the panel stays as it was
    embed = pressed.embeds[0]
    assert embed["title"] == "Queue" and embed["footer"]["text"].startswith("Page 1/1 · 2 tracks · ")
    lines = queue_lines(embed)
    assert len(lines) == 2 and "Queued One" in lines[0] and "Queued Two" in lines[1], lines
    owner = pressed.components[0]["components"][0]["custom_id"].split(":")[1]
    assert owner == str(scene.member("bob"))  # bob's own view: he may turn its pages, nobody else
    still = scene.fleet.discord.message(int(panel["id"]))
    assert still is not None and still["embeds"][0]["title"] == "Now playing"
