"""lavaplayer's encoded track format (sandbox/lavalink_codec.py), checked against tracks a real node produced."""

from __future__ import annotations

import base64
import struct

import pytest

from sandbox.catalogue import SOURCE_MANAGERS, Catalogue
from sandbox.lavalink_codec import MISSING_SOURCE, EncodedTrack, TrackDecodeError, decode, encode, write_utf

SOURCES = frozenset(SOURCE_MANAGERS)

# From a real Lavalink 4 /v4/loadtracks answer (Walkyst/lavaplayer-fork issue #78), with its info.
HARUHI = ("QAABFAMAe0dvZCBrbm93cy4uLiAnJ1RoZSBNZWxhbmNob2x5IG9mIEhhcnVoaSBTdXp1bWl5YScnIOOAkOa2vOWuruODj+ODq+OD"
          "kuOBruaGgumsseOAkUthZG9rYXdh5YWs6KqNTUFE44CQ776N776e772w7729IOa8lOWlj+OAkQALU09TIEJyaWdhZGUAAAAAAARJ"
          "qAALV1dCMDFJdU12ekEAAQAraHR0cHM6Ly93d3cueW91dHViZS5jb20vd2F0Y2g/dj1XV0IwMUl1TXZ6QQEAMGh0dHBzOi8vaS55"
          "dGltZy5jb20vdmkvV1dCMDFJdU12ekEvbXFkZWZhdWx0LmpwZwAAB3lvdXR1YmUAAAAAAAAAAA==")
HARUHI_INFO = {
    "identifier": "WWB01IuMvzA", "isSeekable": True, "author": "SOS Brigade", "length": 281000, "isStream": False,
    "position": 0,
    "title": "God knows... ''The Melancholy of Haruhi Suzumiya'' \u3010\u6dbc\u5bae\u30cf\u30eb\u30d2\u306e\u6182"
             "\u9b31\u3011Kadokawa\u516c\u8a8dMAD\u3010\uff8d\uff9e\uff70\uff7d \u6f14\u594f\u3011",
    "uri": "https://www.youtube.com/watch?v=WWB01IuMvzA", "sourceName": "youtube",
    "artworkUrl": "https://i.ytimg.com/vi/WWB01IuMvzA/mqdefault.jpg", "isrc": None,
}
# A version-2 message (no artworkUrl/isrc) from the @lavalink/encoding README, with its documented fields.
CHICKEN_SOUP_V2 = ("QAAAkwIANFNrcmlsbGV4ICYgSGFic3RyYWt0IC0gQ2hpY2tlbiBTb3VwIFtPZmZpY2lhbCBBdWRpb10ABU9XU0xBAAAAAAAD"
                   "LIAACzIyTVdyV1BWX1FNAAEAK2h0dHBzOi8vd3d3LnlvdXR1YmUuY29tL3dhdGNoP3Y9MjJNV3JXUFZfUU0AB3lvdXR1YmUA"
                   "AAAAAAAAAA==")
# Lavalink4NET's documentation example (a version-3 youtube track).
RICK = ("QAAA2QMAPFJpY2sgQXN0bGV5IC0gTmV2ZXIgR29ubmEgR2l2ZSBZb3UgVXAgKE9mZmljaWFsIE11c2ljIFZpZGVvKQALUmljayBB"
        "c3RsZXkAAAAAAANACAALZFF3NHc5V2dYY1EAAQAraHR0cHM6Ly93d3cueW91dHViZS5jb20vd2F0Y2g/dj1kUXc0dzlXZ1hjUQEA"
        "NGh0dHBzOi8vaS55dGltZy5jb20vdmkvZFF3NHc5V2dYY1EvbWF4cmVzZGVmYXVsdC5qcGcAAAd5b3V0dWJlAAAAAAAAAAA=")


def test_real_v3_tracks_decode_and_re_encode_byte_for_byte() -> None:
    haruhi = decode(HARUHI, SOURCES)
    assert (haruhi.title, haruhi.author, haruhi.length) == (HARUHI_INFO["title"], "SOS Brigade", 281000)
    assert (haruhi.identifier, haruhi.uri, haruhi.artwork_url) == (
        "WWB01IuMvzA", HARUHI_INFO["uri"], HARUHI_INFO["artworkUrl"])
    assert (haruhi.isrc, haruhi.source_name, haruhi.position, haruhi.version) == (None, "youtube", 0, 3)
    assert encode(haruhi) == HARUHI
    rick = decode(RICK, SOURCES)
    assert rick.title == "Rick Astley - Never Gonna Give You Up (Official Music Video)" and rick.length == 213000
    assert encode(rick) == RICK


def test_the_catalogue_encodes_a_track_exactly_as_lavaplayer() -> None:
    track, _ = Catalogue().decode(HARUHI)
    assert track.info() == HARUHI_INFO
    assert track.encoded == HARUHI
    assert track.behaviour == "normal"


def test_version_2_message_has_no_artwork_or_isrc() -> None:
    track = decode(CHICKEN_SOUP_V2, SOURCES)
    assert track.version == 2
    assert (track.title, track.author, track.length) == (
        "Skrillex & Habstrakt - Chicken Soup [Official Audio]", "OWSLA", 208000)
    assert track.uri == "https://www.youtube.com/watch?v=22MWrWPV_QM" and track.artwork_url is None


def test_http_source_writes_its_container_probe_and_position_is_last() -> None:
    track = EncodedTrack("T", "A", 5000, "https://x.example/a.mp3", False, "https://x.example/a.mp3", None, None,
                         "http", "mp3", position=1234)
    raw = base64.b64decode(encode(track))
    header, = struct.unpack(">I", raw[:4])
    assert header >> 30 == 1 and header & 0x3FFFFFFF == len(raw) - 4
    assert raw[4] == 3
    assert raw.endswith(write_utf("http") + write_utf("mp3") + struct.pack(">q", 1234))
    assert decode(encode(track), SOURCES) == track


def test_modified_utf8() -> None:
    assert write_utf("a\x00b") == b"\x00\x04a\xc0\x80b"  # NUL takes two bytes
    assert write_utf("\U0001F3B5") == b"\x00\x06\xed\xa0\xbc\xed\xbe\xb5"  # a surrogate pair, 3 bytes each
    track = EncodedTrack("\U0001F3B5 x\x00y", "é", 1, "id", False, None, None, None, "youtube")
    assert decode(encode(track), SOURCES) == track


@pytest.mark.parametrize("garbage, message", [
    ("not-a-track", "Illegal base64 character 2d"),
    ("QAAA AAA", "Illegal base64 character 20"),  # an unescaped + in a query string arrives as a space
    ("QAAAa", "Last unit does not have enough valid bits"),
    ("QAAApwMAC0V4cGxv", ""),  # truncated: Java's EOFException has no message
    (base64.b64encode(b"\x40\x00\x00\x05\x03\x00\x01\xff\x00").decode(), "malformed input around byte 0"),
])
def test_garbage_fails_like_java(garbage: str, message: str) -> None:
    with pytest.raises(TrackDecodeError) as caught:
        decode(garbage, SOURCES)
    assert str(caught.value) == message


def test_unknown_source_or_probe_is_lavalinks_missing_source_error() -> None:
    track = EncodedTrack("T", "A", 1, "id", False, None, None, None, "spotify")
    with pytest.raises(TrackDecodeError, match=MISSING_SOURCE):
        decode(encode(track), SOURCES)
    http = EncodedTrack("T", "A", 1, "u", False, "u", None, None, "http", "midi")
    with pytest.raises(TrackDecodeError, match=MISSING_SOURCE):
        decode(encode(http), SOURCES)


def test_upgrade_rejects_older_encodings_and_new_loads_work() -> None:
    catalogue = Catalogue()
    old = catalogue.load("https://music.example/track/song")["data"]["encoded"]
    catalogue.upgrade()
    with pytest.raises(TrackDecodeError, match=MISSING_SOURCE):
        catalogue.decode(old)
    with pytest.raises(TrackDecodeError, match=MISSING_SOURCE):
        catalogue.decode(HARUHI)  # any track encoded before the upgrade
    new = catalogue.load("https://music.example/track/song")["data"]
    assert new["encoded"] != old
    track, _ = catalogue.decode(new["encoded"])
    assert track.to_payload() == new
