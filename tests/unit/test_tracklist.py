"""Queue logic on top of wavelink.Queue: positions, moves, loop modes, shuffle, history."""

from __future__ import annotations

import random

import pytest
import wavelink

from utils.errors import BadInput
from utils.player import REQUESTER_KEY, requester_id, tag_requester
from utils.tracklist import LoopMode, move, remaining_ms, remove_at, room_left, skip_to


def track(name: str, length: int = 60_000, stream: bool = False) -> wavelink.Playable:
    return wavelink.Playable({
        "encoded": f"enc-{name}",
        "info": {"identifier": name, "isSeekable": not stream, "author": "artist", "length": length,
                 "isStream": stream, "position": 0, "title": name.title(), "uri": f"https://music.example/track/{name}",
                 "artworkUrl": None, "isrc": None, "sourceName": "youtube"},
        "pluginInfo": {}, "userData": {},
    })


def queue_of(*names: str) -> wavelink.Queue:
    queue = wavelink.Queue()
    queue.put([track(n) for n in names])
    return queue


def titles(queue: wavelink.Queue) -> list[str]:
    return [t.identifier for t in queue]


def test_remove_uses_one_based_positions():
    queue = queue_of("a", "b", "c")
    assert remove_at(queue, 2).identifier == "b"
    assert titles(queue) == ["a", "c"]


@pytest.mark.parametrize("position", [0, 4, -1, 10**6])
def test_remove_out_of_range_says_what_is_valid(position):
    queue = queue_of("a", "b", "c")
    with pytest.raises(BadInput, match="from 1 to 3"):
        remove_at(queue, position)
    assert titles(queue) == ["a", "b", "c"]


def test_remove_from_empty_queue():
    with pytest.raises(BadInput, match="The queue is empty"):
        remove_at(wavelink.Queue(), 1)


@pytest.mark.parametrize(("src", "dst", "expected"), [
    (1, 3, ["b", "c", "a", "d"]),
    (4, 1, ["d", "a", "b", "c"]),
    (2, 2, ["a", "b", "c", "d"]),
    (3, 4, ["a", "b", "d", "c"]),
])
def test_move(src, dst, expected):
    queue = queue_of("a", "b", "c", "d")
    move(queue, src, dst)
    assert titles(queue) == expected


@pytest.mark.parametrize(("src", "dst"), [(0, 1), (5, 1), (1, 5), (1, 0)])
def test_move_out_of_bounds_changes_nothing(src, dst):
    queue = queue_of("a", "b", "c", "d")
    with pytest.raises(BadInput):
        move(queue, src, dst)
    assert titles(queue) == ["a", "b", "c", "d"]


def test_skip_to_drops_the_tracks_before():
    queue = queue_of("a", "b", "c", "d")
    assert skip_to(queue, 3) == 2
    assert titles(queue) == ["c", "d"]


def test_shuffle_keeps_every_track():
    random.seed(4)
    names = [f"t{i}" for i in range(50)]
    queue = queue_of(*names)
    queue.shuffle()
    assert sorted(titles(queue)) == sorted(names) and titles(queue) != names


def test_loop_track_repeats_the_loaded_track():
    queue = queue_of("a", "b")
    queue.mode = LoopMode.track.queue_mode
    first = queue.get()
    assert queue.get() is first and titles(queue) == ["b"]


def test_loop_queue_refills_from_history():
    queue = queue_of("a", "b")
    queue.mode = LoopMode.queue.queue_mode
    played = []
    for _ in range(5):
        item = queue.get()
        queue.history.put(item)  # what Player.play() does
        played.append(item.identifier)
    assert played == ["a", "b", "a", "b", "a"]


def test_loop_mode_round_trip_and_cycle():
    for mode in LoopMode:
        assert LoopMode.from_queue_mode(mode.queue_mode) is mode
    assert [LoopMode.off.next(), LoopMode.track.next(), LoopMode.queue.next()] == [
        LoopMode.track, LoopMode.queue, LoopMode.off]


def test_room_left_and_limit():
    queue = queue_of("a", "b", "c")
    assert room_left(queue, 5) == 2 and room_left(queue, 3) == 0 and room_left(queue, 1) == 0


def test_remaining_time_counts_the_rest_of_the_current_track():
    queue = wavelink.Queue()
    queue.put([track("a", 30_000), track("b", 45_000)])
    assert remaining_ms(queue, track("now", 60_000), 20_000) == 40_000 + 75_000
    queue.put(track("live", 0, stream=True))
    assert remaining_ms(queue, track("now", 60_000), 0) is None


def test_requester_is_kept_in_track_extras():
    t = track("a")
    assert requester_id(t) is None
    tag_requester(t, 1234)
    assert requester_id(t) == 1234 and dict(t.extras)[REQUESTER_KEY] == "1234"
    assert requester_id(None) is None
