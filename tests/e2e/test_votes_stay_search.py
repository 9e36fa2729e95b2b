"""Vote skip, 24/7 mode (/stay) and the search picker (/search), end to end against the sandbox."""

from __future__ import annotations

import signal

import pytest
import pytest_asyncio

from sandbox.discord_options import InvalidInvocation
from tests.e2e.fleet import running_fleet
from tests.helpers import start_bot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150), pytest.mark.asyncio(loop_scope="module")]

MANAGE_GUILD = 1 << 5
SEARCH_MENU_TIMEOUT = 8  # long enough to pick on a busy machine, short enough to watch one expire


def track_url(slug: str) -> str:
    return f"https://music.example/track/{slug}?length=600000"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory):
    async with running_fleet(tmp_path_factory, 1, IDLE_TIMEOUT="10", ALONE_TIMEOUT="5",
                             SEARCH_MENU_TIMEOUT=str(SEARCH_MENU_TIMEOUT)) as fleet:
        yield fleet


def vote_field(panel: dict) -> str | None:
    fields = {f["name"]: f["value"] for f in panel["embeds"][0].get("fields") or []}
    return fields.get("Vote to skip")


async def test_skip_votes_need_a_majority_of_listeners_and_reset(fleet):
    scene = await fleet.scene(members=("alice", "bob", "carol"))
    mods = fleet.discord.create_role(scene.guild_id, "Mods", permissions=MANAGE_GUILD)
    scene.world.member_ids["dave"] = fleet.discord.add_member(scene.guild_id, "dave", roles=[mods.id]).id
    for member in ("alice", "bob", "carol"):
        await scene.join(member, "Lounge")
    for slug in ("first-vote", "second-vote", "third-vote", "fourth-vote"):
        await scene.cmd(1, "alice", "play", query=track_url(slug))
    panel = await scene.wait_panel("First Vote")

    # Three listeners: two votes skip. bob's vote is counted, shown, and cannot be cast twice.
    voted = await scene.cmd(1, "bob", "skip")
    assert not voted.ephemeral and voted.content == f"<@{scene.member('bob')}> voted to skip **[First Vote]" \
        f"(<{track_url('first-vote')}>)** (1/2 votes)."
    await fleet.discord.wait_for(lambda: vote_field(fleet.discord.message(int(panel["id"]))) == "1/2 votes")
    again = await scene.cmd(1, "bob", "skip")
    assert again.ephemeral and again.content.startswith("You already voted to skip") and "(1/2 votes)" in again.content
    jump = await scene.cmd(1, "bob", "skip", to=2)
    assert jump.ephemeral and jump.content.startswith("Only the requester of this song or a DJ")
    assert "first-vote" in scene.player(1)["identifier"]

    passed = await scene.press(1, "carol", int(panel["id"]), "panel:skip")  # the second vote, by the panel
    assert passed.content == f"⏭️ Skipped by <@{scene.member('carol')}> (the vote passed, 2/2 votes)."
    await scene.wait_track(1, "second-vote")

    # A new song, a new vote: bob's earlier vote does not carry over.
    second = await scene.wait_panel("Second Vote")
    assert vote_field(second) is None
    fresh = await scene.press(1, "bob", int(second["id"]), "panel:skip")  # a vote by the panel: shown on it
    assert fresh.callback_type == 7 and vote_field(fresh.message) == "1/2 votes"
    told = await fresh.wait_followup()
    assert told["flags"] & 64 and told["content"].startswith("You voted to skip **[Second Vote]") \
        and told["content"].endswith("(1/2 votes).")

    # A voter who leaves takes the vote along: back again, bob's old vote plus carol's is no majority.
    await scene.join("bob", None)
    await fleet.discord.wait_for(lambda: vote_field(fleet.discord.message(int(second["id"]))) is None)
    await scene.join("bob", "Lounge")
    carol = await scene.cmd(1, "carol", "skip")
    assert carol.content.endswith("(1/2 votes).")
    assert "second-vote" in scene.player(1)["identifier"]

    # The requester and members with Manage Server (the DJs without DJ_ROLE) skip at once.
    by_requester = await scene.cmd(1, "alice", "skip")
    assert by_requester.content == "Skipped **Second Vote**."
    await scene.wait_track(1, "third-vote")
    await scene.join("dave", "Lounge")
    by_dj = await scene.cmd(1, "dave", "skip")
    assert by_dj.content == "Skipped **Third Vote**."
    await scene.wait_track(1, "fourth-vote")

    # Four listeners need three votes; when a listener who did not vote leaves, two of three are a majority.
    fourth = await scene.wait_panel("Fourth Vote")
    await scene.cmd(1, "bob", "skip")
    assert (await scene.cmd(1, "carol", "skip")).content.endswith("(2/3 votes).")
    await fleet.discord.wait_for(lambda: vote_field(fleet.discord.message(int(fourth["id"]))) == "2/3 votes")
    await scene.join("dave", None)
    announced = await scene.wait_message("Skipped **[Fourth Vote](<")
    assert announced["content"].endswith("**: the vote passed (2/2 votes).")
    await fleet.lavalink.wait_for(lambda: scene.player(1)["track"] is None)


async def test_search_picker_queues_the_pick_like_play_and_expires(fleet):
    scene = await fleet.scene(members=("alice", "bob"))
    await scene.join("alice", "Lounge")
    await scene.join("bob", "Lounge")
    menu = await scene.cmd(1, "alice", "search", query="harbor lights")
    assert menu.ephemeral and menu.content == "5 results for “harbor lights”: pick one to play it."
    select = menu.components[0]["components"][0]
    assert select["type"] == 3 and len(select["options"]) == 5
    labels = [o["label"] for o in select["options"]]
    assert labels[0] == "Harbor Lights (Official Audio)" and all(" · " in o["description"] for o in select["options"])

    # Only alice sees her ephemeral menu: nobody else can pick from it.
    with pytest.raises(InvalidInvocation, match="ephemeral"):
        await fleet.discord.select(scene.app(1), guild_id=scene.guild_id, user_id=scene.member("bob"),
                                   message_id=menu.message_id, custom_id=select["custom_id"], values=["0"])

    picked = await fleet.discord.select(scene.app(1), guild_id=scene.guild_id, user_id=scene.member("alice"),
                                        message_id=menu.message_id, custom_id=select["custom_id"], values=["1"])
    assert not picked.ephemeral
    assert picked.content.startswith("Now playing: **[Harbor Lights - Live]") \
        and picked.content.endswith(f"requested by <@{scene.member('alice')}>.")
    await scene.wait_panel("Harbor Lights - Live")
    await scene.wait_player(1, lambda p: p["title"] == "Harbor Lights - Live")
    assert scene.player(1)["user_data"] == {"requester_id": str(scene.member("alice"))}
    await fleet.discord.wait_for(lambda: menu.content.startswith("You picked **"))
    assert menu.components == []

    # An unused menu expires: it says so and offers nothing to pick any more.
    stale = await scene.cmd(1, "alice", "search", query="quiet harbor")
    assert stale.components
    await fleet.discord.wait_for(lambda: stale.content == "This search menu has expired. Use /search again.",
                                 timeout=SEARCH_MENU_TIMEOUT * 3)
    assert stale.components == []
    queued = await scene.cmd(1, "alice", "queue")
    assert "Quiet Harbor" not in queued.embeds[0]["description"]
    await scene.cmd(1, "alice", "stop")


async def test_stay_keeps_the_bot_in_its_channel_across_idle_alone_and_restarts(fleet):
    staying = await fleet.scene(members=("alice",))
    control = await fleet.scene(members=("bob",))
    mods = fleet.discord.create_role(staying.guild_id, "Mods", permissions=MANAGE_GUILD)
    staying.world.member_ids["erin"] = fleet.discord.add_member(staying.guild_id, "erin", roles=[mods.id]).id
    await staying.join("alice", "Lounge")
    refused = await staying_cmd(staying, "alice", "on")
    assert refused.ephemeral and refused.content == "Only members with Manage Server can turn 24/7 mode on or off."
    await staying.join("alice", None)

    await staying.join("erin", "Lounge")
    on = await staying_cmd(staying, "erin", "on")
    assert not on.ephemeral and on.content.startswith("24/7 mode is on: I'll stay in <#")
    assert staying.bot_voice_channel(1) == staying.voice("Lounge")
    await staying.join("erin", None)  # idle and alone from here on

    # The control guild, started later, idles until the watchdog leaves it: by then the 24/7 guild has been idle
    # and alone for longer than both timeouts.
    await control.join("bob", "Lounge")
    await control.cmd(1, "bob", "play", query=track_url("short-stay"))
    await control.cmd(1, "bob", "stop")
    await control.wait_message("Nothing played for a while", timeout=40)
    assert staying.bot_voice_channel(1) == staying.voice("Lounge")
    assert not [m for m in staying.messages() if "I left" in (m.get("content") or "")]

    # A redeploy: the bot comes back to its empty 24/7 channel, with nothing to play.
    await redeploy(fleet, staying)
    await fleet.bots[0].wait_for_line(r"24/7 mode: back in #Lounge after a restart", timeout=40)
    await fleet.discord.wait_for(lambda: staying.bot_voice_channel(1) == staying.voice("Lounge"), timeout=10)
    assert control.bot_voice_channel(1) is None

    # With music playing to nobody, the snapshot is restored into the empty channel, where other guilds' are not.
    await staying.join("erin", "Lounge")
    await staying.cmd(1, "erin", "play", query=track_url("all-night-long"))
    await staying.wait_player(1, lambda p: p["position"] > 0)
    await staying.join("erin", None)
    await redeploy(fleet, staying)
    await fleet.bots[0].wait_for_line(r"restored the player in #Lounge \(All Night Long at", timeout=40)
    await staying.wait_track(1, "all-night-long")

    # /stay off: the usual auto-leave again.
    await staying.join("erin", "Lounge")
    off = await staying_cmd(staying, "erin", "off")
    assert off.content == "24/7 mode is off: I'll leave after 0:10 with nothing playing or 0:05 alone, as usual."
    await staying.join("erin", None)
    await staying.wait_message("Everyone left the voice channel, so I left too.", timeout=30)
    assert staying.bot_voice_channel(1) is None


async def test_a_moderators_kick_ends_24_7_mode(fleet):
    """A kick is the moderator's decision: the bot leaves for good, 24/7 mode included, so no restart brings it back."""
    scene = await fleet.scene(members=("alice",))
    mods = fleet.discord.create_role(scene.guild_id, "Mods", permissions=MANAGE_GUILD)
    scene.world.member_ids["erin"] = fleet.discord.add_member(scene.guild_id, "erin", roles=[mods.id]).id
    await scene.join("erin", "Lounge")
    assert (await staying_cmd(scene, "erin", "on")).content.startswith("24/7 mode is on")
    await scene.cmd(1, "erin", "play", query=track_url("kicked-all-night"))
    await scene.wait_track(1, "kicked-all-night")
    stay_file = fleet.log_dir.parent / "state" / "bot-1" / "stay.json"
    assert str(scene.guild_id) in stay_file.read_text()

    await fleet.discord.disconnect_member(scene.guild_id, scene.app(1).user_id)
    kicked = await scene.wait_message("A moderator disconnected me")
    assert kicked["content"] == (f"A moderator disconnected me from <#{scene.voice('Lounge')}>, so I stopped and "
                                 "cleared the queue and turned 24/7 mode off. Use /play to bring me back.")
    await fleet.discord.wait_for(lambda: str(scene.guild_id) not in stay_file.read_text(), timeout=10)
    assert scene.bot_voice_channel(1) is None


async def redeploy(fleet, scene) -> None:
    """SIGTERM (as a deploy does) and start the bot again with the same state directory."""
    bot = fleet.bots[0]
    bot.send_signal(signal.SIGTERM)
    assert await bot.wait(timeout=20) == 0
    await fleet.discord.wait_for(lambda: scene.bot_voice_channel(1) is None)
    fleet.bots[0] = await start_bot(1, fleet.sandbox.bot_env(fleet.apps) | {
        "IDLE_TIMEOUT": "10", "ALONE_TIMEOUT": "5", "SEARCH_MENU_TIMEOUT": str(SEARCH_MENU_TIMEOUT)},
        log_dir=fleet.log_dir)


async def staying_cmd(scene, member: str, mode: str):
    return await scene.cmd(1, member, "stay", mode=mode)
