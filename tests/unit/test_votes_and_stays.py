"""The vote-skip arithmetic and the 24/7 record on disk."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from utils.stay_store import Stay, StayStore
from utils.votes import cast, tally, votes_needed


@pytest.mark.parametrize(("listeners", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (10, 6)])
def test_more_than_half_of_the_listeners_skip(listeners, needed):
    assert votes_needed(listeners) == needed


class FakePlayer:
    def __init__(self, *member_ids: int) -> None:
        self.skip_votes: set[int] = set()
        self.members = [SimpleNamespace(id=i) for i in member_ids]

    def listeners(self):
        return self.members


def test_a_vote_counts_once_and_only_while_the_voter_listens():
    player = FakePlayer(1, 2, 3)
    count, new = cast(player, 2)
    assert (count.votes, count.needed, new, count.passed, str(count)) == (1, 2, True, False, "1/2 votes")
    count, new = cast(player, 2)
    assert (count.votes, new) == (1, False)
    player.members = player.members[:1] + player.members[2:]  # member 2 left, unseen
    assert (tally(player).votes, tally(player).needed) == (0, 2)
    assert cast(player, 3)[0].votes == 1 and not cast(player, 3)[0].passed
    assert cast(player, 1)[0].passed


def test_stays_round_trip_and_survive_a_new_store(tmp_path):
    store = StayStore(tmp_path / "bot-1")
    assert store.load() == {}
    store.guilds[5] = Stay(50, 51)
    store.guilds[6] = Stay(60)
    store.write(store.encode())
    again = StayStore(tmp_path / "bot-1")
    assert again.load() == {5: Stay(50, 51), 6: Stay(60, None)}
    assert [p.name for p in (tmp_path / "bot-1").iterdir()] == ["stay.json"]  # no temporary file left behind


@pytest.mark.parametrize("text", ['{"version": 99, "guilds": {}}', "{not json", '{"version": 1, "guilds": {"x": {}}}',
                                  '{"version": 1, "guilds": {"5": {"channel_id": "soon"}}}', "[]"])
def test_an_unreadable_record_is_set_aside_and_starts_empty(tmp_path, text, caplog):
    (tmp_path / "stay.json").write_text(text)
    store = StayStore(tmp_path)
    assert store.load() == {}
    assert (tmp_path / "stay.json.bad").read_text() == text and not (tmp_path / "stay.json").exists()
    assert "ignoring unreadable 24/7 record" in caplog.text


class FakeResponse:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []

    async def send_message(self, content: str, *, ephemeral: bool = False) -> None:
        self.sent.append((content, ephemeral))


def fake_interaction(user_id: int) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(id=user_id), response=FakeResponse(), guild_id=1)


async def test_only_the_searcher_can_pick_from_the_search_menu():
    """Discord shows the ephemeral menu to its member alone; a forged or replayed pick by anyone else is refused
    by the view as well, with an answer rather than silence."""
    import wavelink

    from commands.search import SearchMenu

    track = wavelink.Playable({"encoded": "x", "info": {
        "identifier": "a", "isSeekable": True, "author": "Someone", "length": 200_000, "isStream": False,
        "position": 0, "title": "A Song", "uri": None, "artworkUrl": None, "isrc": None, "sourceName": "http"},
        "pluginInfo": {}, "userData": {}})
    menu = SearchMenu(playback=None, origin=fake_interaction(7), tracks=[track], timeout=60)  # type: ignore[arg-type]
    assert menu.select.options[0].label == "A Song" and menu.select.options[0].description == "Someone · 3:20"
    owner, stranger = fake_interaction(7), fake_interaction(8)
    assert await menu.interaction_check(owner) is True and owner.response.sent == []
    assert await menu.interaction_check(stranger) is False
    assert stranger.response.sent == [("This menu belongs to the member who searched. Use /search to get your own.",
                                       True)]
