from __future__ import annotations

import json
import time

import pytest

from utils.snapshots import FORMAT_VERSION, GuildSnapshot, SnapshotError, SnapshotStore, TrackPayload


def track(name: str) -> dict:
    return {"encoded": f"enc-{name}", "info": {"identifier": name, "title": name.title()}, "pluginInfo": {},
            "userData": {"requester_id": "7"}}


def snapshot(guild_id: int = 42, **kwargs) -> GuildSnapshot:
    fields = {"voice_channel_id": 5, "current": track("now"), "position": 83_000, "queue": [track("a"), track("b")],
              "history": [track("old")], "volume": 35, "loop": "queue", **kwargs}
    return GuildSnapshot(guild_id=guild_id, **fields)


def test_round_trip_through_the_store(tmp_path):
    store = SnapshotStore(tmp_path / "bot-1")
    original = snapshot()
    store.save(original)
    (loaded,) = store.load_all()
    assert loaded == original
    assert store.path(42).name == "guild-42.json"
    assert not list((tmp_path / "bot-1").glob("*.tmp"))  # the temporary file was renamed, not left


def test_save_replaces_atomically_and_delete_removes(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(snapshot(position=1))
    store.save(snapshot(position=2))
    assert [s.position for s in store.load_all()] == [2]
    assert store.delete(42) and not store.delete(42)
    assert store.load_all() == []


@pytest.mark.parametrize("content", [
    b'{"version": 1, "guild_id": ',                    # truncated
    b"\xff\xfe not json",                               # not even text
    json.dumps({"version": 0, "guild_id": 42}).encode(),  # older format
    json.dumps({**snapshot().to_json(), "loop": "sideways"}).encode(),
    json.dumps({**snapshot().to_json(), "queue": [{"no": "track"}]}).encode(),
    json.dumps({**snapshot().to_json(), "guild_id": "42"}).encode(),
    json.dumps({**snapshot().to_json(), "guild_id": 43}).encode(),  # file name and content disagree
    b"[]",
])
def test_bad_files_are_set_aside_with_one_log_line(tmp_path, caplog, content):
    store = SnapshotStore(tmp_path)
    store.save(snapshot(guild_id=1))
    (tmp_path / "guild-42.json").write_bytes(content)
    with caplog.at_level("WARNING"):
        loaded = store.load_all()
    assert [s.guild_id for s in loaded] == [1]
    assert len([r for r in caplog.records if "guild-42.json" in r.getMessage()]) == 1
    assert (tmp_path / "guild-42.bad").exists() and not (tmp_path / "guild-42.json").exists()


def test_missing_directory_means_no_snapshots(tmp_path):
    assert SnapshotStore(tmp_path / "nothing-here").load_all() == []


def test_from_json_clamps_and_validates():
    data = {**snapshot().to_json(), "position": -5, "volume": 5000}
    parsed = GuildSnapshot.from_json(data)
    assert parsed.position == 0 and parsed.volume == 1000 and parsed.version == FORMAT_VERSION
    with pytest.raises(SnapshotError):
        GuildSnapshot.from_json({**data, "saved_at": "yesterday"})


def test_age(monkeypatch):
    s = snapshot()
    assert 0 <= s.age() < 5
    assert s.age(now=s.saved_at + 100) == pytest.approx(100)


# ---- the position a restore resumes at ---------------------------------------------------------------------

def timed(length: int = 600_000, stream: bool = False, **kwargs) -> GuildSnapshot:
    current = {**track("now"), "info": {"identifier": "now", "length": length, "isStream": stream}}
    return snapshot(current=current, saved_at=1_000.0, **kwargs)


def test_position_of_a_playing_track_moves_on_with_the_clock():
    s = timed(position=83_000)
    assert s.position_at(now=1_000.0) == 83_000
    assert s.position_at(now=1_012.5) == 95_500


def test_position_of_a_paused_track_stays():
    assert timed(position=83_000, paused=True).position_at(now=1_600.0) == 83_000


def test_position_is_capped_at_the_track_length():
    assert timed(length=90_000, position=83_000).position_at(now=1_060.0) == 90_000


def test_after_a_clean_shutdown_the_song_resumes_where_it_stopped():
    assert timed(position=83_000, stopped=True).position_at(now=1_060.0) == 83_000


def test_streams_and_idle_players_resume_at_zero():
    assert timed(stream=True, position=83_000).position_at(now=1_060.0) == 0
    assert snapshot(current=None, position=0).position_at() == 0


def test_a_clock_that_went_back_does_not_rewind():
    assert timed(position=83_000).position_at(now=990.0) == 83_000


def test_age_counts_from_the_heartbeat_when_it_is_later(tmp_path):
    s = snapshot(saved_at=1_000.0)
    assert s.age(now=2_000.0) == 1_000.0
    assert s.age(now=2_000.0, alive=1_990.0) == 10.0
    assert s.age(now=2_000.0, alive=500.0) == 1_000.0  # an older heartbeat does not make it younger


def test_heartbeat_file(tmp_path):
    store = SnapshotStore(tmp_path / "bot-1")
    store.heartbeat()  # no directory, no snapshot: nothing to vouch for
    assert store.last_alive() is None and not store.directory.exists()
    store.save(snapshot())
    store.heartbeat()
    assert store.last_alive() == pytest.approx(time.time(), abs=5)
    assert [s.guild_id for s in store.load_all()] == [42]  # the heartbeat is not a snapshot


# ---- encoding: tracks once, then joined ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"current": None}, {"queue": [], "history": []},
                                    {"queue": [TrackPayload(track("x")), track("y")]}])
def test_encode_is_the_snapshot_as_json(kwargs):
    s = snapshot(**kwargs)
    assert json.loads(SnapshotStore.encode(s)) == json.loads(json.dumps(s.to_json()))
    assert GuildSnapshot.from_json(json.loads(SnapshotStore.encode(s))) == s


def test_a_track_payload_is_encoded_once_and_its_text_reused():
    payload = TrackPayload(track("a"))
    SnapshotStore.encode(snapshot(queue=[payload]))
    assert json.loads(payload.json_text) == track("a")
    payload.json_text = '{"encoded":"enc-cached","info":{}}'  # what the next encode uses, without re-encoding
    assert json.loads(SnapshotStore.encode(snapshot(queue=[payload])))["queue"] == [
        {"encoded": "enc-cached", "info": {}}]


def test_sound_effects_round_trip_and_move_the_restored_position(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(snapshot(filters={"preset": "vaporwave", "speed": 1.5}, saved_at=1000.0))
    (loaded,) = store.load_all()
    assert loaded.filters == {"preset": "vaporwave", "speed": 1.5}
    assert loaded.effects.rate == pytest.approx(1.2)  # speed 1.5 x vaporwave's rate 0.8
    assert loaded.position_at(now=1010.0) == 83_000 + 12_000


@pytest.mark.parametrize(("filters", "kept"), [
    (None, None),                                      # written before /filter existed: no key at all
    ({"preset": "nightcore", "speed": 1.0}, {"preset": "nightcore", "speed": 1.0}),
    ({"preset": "off", "speed": 1.0}, None),           # nothing active
    ({"preset": "echo-chamber", "speed": 1.0}, None),  # a newer version's preset: dropped, the rest restores
    ({"preset": "soft", "speed": 9}, None),
    ("loud", None),
])
def test_old_and_unknown_sound_effects_still_load(tmp_path, filters, kept):
    data = snapshot().to_json()
    if filters is None:
        del data["filters"]
    else:
        data["filters"] = filters
    loaded = GuildSnapshot.from_json(json.loads(json.dumps(data)))
    assert loaded.filters == kept and loaded.current == track("now")
