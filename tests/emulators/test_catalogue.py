"""The emulated Lavalink's deterministic catalogue (pure, no I/O)."""

from __future__ import annotations

import pytest
import wavelink

from sandbox.catalogue import (
    MAX_PLAYLIST_SIZE,
    STREAM_LENGTH,
    Catalogue,
    TrackDecodeError,
)

TRACK_INFO_KEYS = {"identifier", "isSeekable", "author", "length", "isStream", "position", "title", "uri",
                   "artworkUrl", "isrc", "sourceName"}


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue()


@pytest.mark.parametrize("prefix, source", [("ytsearch:", "youtube"), ("ytmsearch:", "youtube"),
                                            ("scsearch:", "soundcloud")])
def test_search_returns_five_distinct_tracks(catalogue: Catalogue, prefix: str, source: str) -> None:
    result = catalogue.load(f"{prefix}never gonna give")
    assert result["loadType"] == "search"
    tracks = result["data"]
    assert len(tracks) == 5
    assert tracks[0]["info"]["title"] == "Never Gonna Give (Official Audio)"
    assert tracks[1]["info"]["title"] == "Never Gonna Give - Live"
    assert len({t["info"]["author"] for t in tracks}) == 5
    assert len({t["encoded"] for t in tracks}) == 5
    for track in tracks:
        assert set(track["info"]) == TRACK_INFO_KEYS
        assert track["info"]["sourceName"] == source
        assert 120_000 <= track["info"]["length"] <= 360_000
        assert track["pluginInfo"] == {} and track["userData"] == {}
        wavelink.Playable(track)  # the client can parse it


def test_search_is_deterministic_and_text_sensitive(catalogue: Catalogue) -> None:
    assert Catalogue().load("ytsearch:lofi beats") == catalogue.load("ytsearch:lofi beats")
    assert catalogue.load("ytsearch:lofi beats") != catalogue.load("ytsearch:lofi beat")
    assert catalogue.load("ytsearch:lofi beats") != catalogue.load("scsearch:lofi beats")


@pytest.mark.parametrize("identifier", ["ytsearch:", "ytsearch:   ", "scsearch:absolutely nothing here",
                                        "plain words without prefix", "spsearch:song"])
def test_empty_results(catalogue: Catalogue, identifier: str) -> None:
    assert catalogue.load(identifier) == {"loadType": "empty", "data": {}}


def test_track_url_with_length_override(catalogue: Catalogue) -> None:
    result = catalogue.load("https://music.example/track/short-song?length=3000")
    assert result["loadType"] == "track"
    info = result["data"]["info"]
    assert info["title"] == "Short Song"
    assert info["length"] == 3000
    assert info["uri"] == "https://music.example/track/short-song?length=3000"
    assert info["isSeekable"] is True and info["isStream"] is False
    assert catalogue.load("https://music.example/track/short-song")["data"]["info"]["title"] == "Short Song"


def test_playlist_default_and_sized(catalogue: Catalogue) -> None:
    result = catalogue.load("https://music.example/playlist/road-trip")
    assert result["loadType"] == "playlist"
    data = result["data"]
    assert data["info"] == {"name": "Road Trip", "selectedTrack": -1}
    assert data["pluginInfo"] == {}
    assert len(data["tracks"]) == 10
    playlist = wavelink.Playlist(data)
    assert playlist.name == "Road Trip" and len(playlist) == 10
    assert len(catalogue.load("https://music.example/playlist/road-trip?n=3")["data"]["tracks"]) == 3
    big = catalogue.load("https://music.example/playlist/huge?n=5000&length=2000")["data"]["tracks"]
    assert len(big) == MAX_PLAYLIST_SIZE
    assert {t["info"]["length"] for t in big} == {2000}


def test_stream(catalogue: Catalogue) -> None:
    info = catalogue.load("https://music.example/stream/radio-one")["data"]["info"]
    assert info["isStream"] is True and info["isSeekable"] is False
    assert info["length"] == STREAM_LENGTH


def test_broken_and_missing(catalogue: Catalogue) -> None:
    broken = catalogue.load("https://music.example/broken/bad-file")
    assert broken["loadType"] == "error"
    assert broken["data"]["severity"] == "common"
    assert set(broken["data"]) == {"message", "severity", "cause"}
    assert catalogue.load("https://music.example/missing/gone")["loadType"] == "empty"
    assert catalogue.load("https://music.example/whatever/else")["loadType"] == "empty"


def test_unknown_host_is_a_connection_error(catalogue: Catalogue) -> None:
    result = catalogue.load("https://elsewhere.example.org/song.mp3")
    assert result["loadType"] == "error"
    assert result["data"]["message"] == "Connecting to the URL failed."
    assert result["data"]["severity"] == "suspicious"
    assert "UnknownHostException" in result["data"]["cause"]


@pytest.mark.parametrize("url", ["https://youtube.com/watch?v=abcDEF12345",
                                 "https://www.youtube.com/watch?v=abcDEF12345", "https://youtu.be/abcDEF12345"])
def test_youtube_urls_resolve_to_the_same_track(catalogue: Catalogue, url: str) -> None:
    data = catalogue.load(url)["data"]
    assert data["info"]["identifier"] == "abcDEF12345"
    assert data["info"]["sourceName"] == "youtube"
    assert data == catalogue.load("https://youtu.be/abcDEF12345")["data"]


def test_behaviours_by_slug(catalogue: Catalogue) -> None:
    assert catalogue.track_for("https://music.example/track/explode-now").behaviour == "explode"
    assert catalogue.track_for("https://music.example/track/stuck-here").behaviour == "stuck"
    assert catalogue.track_for("https://music.example/track/fine").behaviour == "normal"


def test_encoded_round_trip_without_state(catalogue: Catalogue) -> None:
    data = catalogue.load("https://music.example/track/explode-now?length=4000")["data"]
    track, position = Catalogue().decode(data["encoded"])  # another node: the message is self-contained
    assert data["encoded"].startswith("QAAA")
    assert track.to_payload() == data and position == 0
    assert track.behaviour == "explode"


@pytest.mark.parametrize("garbage", ["", "hello", "QAAA!!!!", "QAAAe30", "QAAAW10", "QAAApwMAC0V4cGxv"])
def test_decode_rejects_garbage(catalogue: Catalogue, garbage: str) -> None:
    with pytest.raises(TrackDecodeError):
        catalogue.decode(garbage)


def test_custom_tracks(catalogue: Catalogue) -> None:
    custom = catalogue.add_track("My Custom Song", author="Tester", length=2500)
    assert custom.uri == "https://music.example/track/my-custom-song"
    assert catalogue.load(custom.uri)["data"]["info"]["author"] == "Tester"
    assert catalogue.load("my-custom-song")["data"]["info"]["length"] == 2500
    search = catalogue.load("ytsearch:custom song")["data"]
    assert search[0]["info"]["title"] == "My Custom Song"
    assert len(search) == 5
    with pytest.raises(ValueError):
        catalogue.add_track("Bad", behaviour="weird")
