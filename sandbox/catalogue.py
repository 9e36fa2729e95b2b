"""Deterministic track catalogue for the emulated Lavalink node.

Everything here is a pure function of its input text: the same identifier always yields the same
tracks, with no I/O and no randomness. Conventions (see ``Catalogue.load``):

- ``ytsearch:<text>`` / ``ytmsearch:<text>`` / ``scsearch:<text>`` -> ``search`` with 5 tracks; text that is
  empty or contains ``nothing`` -> ``empty``. Registered custom tracks whose title contains the text come first.
- ``https://music.example/track/<slug>`` -> ``track``; ``/playlist/<slug>?n=K`` -> ``playlist`` (default 10,
  at most 1000); ``/stream/<slug>`` -> a live stream; ``/broken/<slug>`` -> ``error``; ``/missing/<slug>`` and
  any other path on that host -> ``empty`` (the host answered 404, which lavaplayer reports as no match).
- ``https://youtube.com/watch?v=<id>``, ``https://youtu.be/<id>`` -> ``track``; ``youtube.com/playlist?list=<id>``
  and ``watch?v=<id>&list=<id>`` (e.g. the ``RD<id>`` mixes wavelink's autoplay asks for) -> ``playlist``.
- ``?length=<ms>`` on a track/playlist/video URL overrides the length of the track(s).
- A slug, video id or search text starting with ``explode-`` fails at playback (TrackExceptionEvent, then
  TrackEndEvent ``loadFailed``); ``stuck-`` gets stuck after 1 s of track time (TrackStuckEvent).
- Any other http(s) URL -> ``error`` "Connecting to the URL failed." (severity ``suspicious``), which is what
  lavaplayer's http source reports for a host it cannot reach; plain text without a known prefix -> ``empty``.

``encoded`` is lavaplayer's binary track message (sandbox/lavalink_codec.py), so any genuine track decodes,
also one this catalogue never produced; the emulator-only behaviour is read back from the identifier, uri
or title (or from a registered custom track). ``Catalogue.upgrade()`` models a node upgrade after which
tracks encoded before it no longer decode.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import string
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.lavalink_codec import MISSING_SOURCE, TRACK_INFO_VERSION, EncodedTrack, TrackDecodeError
from sandbox.lavalink_codec import decode as decode_message
from sandbox.lavalink_codec import encode as encode_message

__all__ = ["Catalogue", "CatalogueTrack", "TrackDecodeError", "SOURCE_MANAGERS"]

log = logging.getLogger(__name__)

#: Lavalink reports a live stream's length as Java's Long.MAX_VALUE.
STREAM_LENGTH = 2**63 - 1
MUSIC_HOSTS = frozenset({"music.example", "www.music.example"})
YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"})
SEARCH_PREFIXES = {"ytsearch:": "youtube", "ytmsearch:": "youtube", "scsearch:": "soundcloud"}
BEHAVIOURS = ("normal", "explode", "stuck")
#: The node's lavaplayer source managers (what /v4/info lists; a track of another source does not decode).
SOURCE_MANAGERS = ("youtube", "soundcloud", "bandcamp", "twitch", "vimeo", "http", "local")
DEFAULT_PLAYLIST_SIZE = 10
MAX_PLAYLIST_SIZE = 1000
SEARCH_RESULTS = 5

_SEARCH_SUFFIXES = ("(Official Audio)", "- Live", "(Lyric Video)", "(Remix)", "- Acoustic Version")
_AUTHORS = (
    "The Placeholders", "Mara Quill", "Echo Harbor", "DJ Fixture", "Lena Vale", "Static Orchard",
    "Juno & The Mocks", "Corvid Lane", "Paper Satellites", "Ivo Brandt", "Night Index", "Saffron Loop",
    "Ada Kestrel", "Low Tide Choir", "Milo Fern", "Glass Parade",
)
_ADJECTIVES = (
    "Golden", "Quiet", "Electric", "Velvet", "Broken", "Midnight", "Silver", "Wandering", "Paper", "Neon",
    "Hollow", "Crimson", "Gentle", "Restless", "Distant", "Summer",
)
_NOUNS = (
    "Harbor", "Echoes", "Highway", "Lanterns", "Orchard", "Signals", "Rivers", "Satellites", "Letters", "Gardens",
    "Mirrors", "Engines", "Horizons", "Streets", "Voices", "Tides",
)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _number(*parts: str) -> int:
    return int.from_bytes(_digest(*parts)[:8], "big")


def _video_id(*parts: str) -> str:
    """An 11-character YouTube-looking id derived from ``parts``."""
    return base64.urlsafe_b64encode(_digest(*parts)).decode()[:11]


def _length_ms(*parts: str) -> int:
    """A whole-second length between 2 and 6 minutes."""
    return (120 + _number("length", *parts) % 241) * 1000


def _author(*parts: str) -> str:
    return _AUTHORS[_number("author", *parts) % len(_AUTHORS)]


def _words(*parts: str) -> str:
    n = _number("words", *parts)
    return f"{_ADJECTIVES[n % len(_ADJECTIVES)]} {_NOUNS[(n >> 8) % len(_NOUNS)]}"


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")
    return slug or "untitled"


def _title_from_slug(slug: str) -> str:
    return string.capwords(re.sub(r"[-_/]+", " ", slug)).strip() or "Untitled"


def _behaviour_of(name: str) -> str:
    lowered = name.casefold()
    for behaviour in ("explode", "stuck"):
        if lowered.startswith(behaviour + "-"):
            return behaviour
    return "normal"


@dataclass(frozen=True)
class CatalogueTrack:
    """One playable track; ``behaviour`` is emulator-only (``normal``, ``explode`` or ``stuck``)."""

    identifier: str
    title: str
    author: str
    length: int
    uri: str | None
    source_name: str
    is_stream: bool = False
    is_seekable: bool = True
    artwork_url: str | None = None
    isrc: str | None = None
    behaviour: str = "normal"
    plugin_info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    version: int = field(default=TRACK_INFO_VERSION, compare=False)  # the node's track message version

    @cached_property
    def encoded(self) -> str:
        """The track message at position 0 (what loadtracks returns)."""
        return self.encode(0)

    def encode(self, position: int = 0) -> str:
        """lavaplayer's message; like Lavalink, a playing track's message carries its current position."""
        if position == 0 and "encoded" in self.__dict__:
            return self.__dict__["encoded"]
        return encode_message(EncodedTrack(
            self.title, self.author, self.length, self.identifier, self.is_stream, self.uri, self.artwork_url,
            self.isrc, self.source_name, "mp3" if self.source_name in ("http", "local") else None,
            int(position), self.version,
        ))

    def info(self, position: int = 0) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "isSeekable": self.is_seekable,
            "author": self.author,
            "length": self.length,
            "isStream": self.is_stream,
            "position": position,
            "title": self.title,
            "uri": self.uri,
            "artworkUrl": self.artwork_url,
            "isrc": self.isrc,
            "sourceName": self.source_name,
        }

    def to_payload(self, position: int = 0, user_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Lavalink v4 Track object."""
        return {
            "encoded": self.encode(position),
            "info": self.info(position),
            "pluginInfo": dict(self.plugin_info),
            "userData": dict(user_data or {}),
        }


def load_result(load_type: str, data: Any) -> dict[str, Any]:
    return {"loadType": load_type, "data": data}


def empty_result() -> dict[str, Any]:
    return load_result("empty", {})


def error_result(message: str, severity: str, cause: str) -> dict[str, Any]:
    return load_result("error", {"message": message, "severity": severity, "cause": cause})


class Catalogue:
    """Resolves loadtracks identifiers to Lavalink v4 load results, deterministically."""

    def __init__(self) -> None:
        self._custom: dict[str, CatalogueTrack] = {}  # keyed by uri and by identifier
        self.version = TRACK_INFO_VERSION  # bumped by upgrade()

    # -- encoded tracks -------------------------------------------------------------------------------------

    def upgrade(self) -> int:
        """A node upgrade: from now on tracks are encoded with a newer message version and tracks encoded
        before are rejected as lavaplayer rejects a track whose version or source it does not know.

        (Real cases: a source manager replaced by a plugin, a lavaplayer fork that changed its source data.)
        Returns the new version.
        """
        self.version += 1
        log.info("Emulated Lavalink upgraded: track message version %s; older encodings no longer decode",
                 self.version)
        return self.version

    def decode(self, encoded: str) -> tuple[CatalogueTrack, int]:
        """The track in a lavaplayer message and the position it carries; raises :class:`TrackDecodeError`."""
        if not isinstance(encoded, str):
            raise TrackDecodeError("")
        raw = decode_message(encoded, frozenset(SOURCE_MANAGERS))
        if raw.version < self.version:
            raise TrackDecodeError(MISSING_SOURCE)
        custom = self._custom.get(raw.uri or "") or self._custom.get(raw.identifier)
        track = CatalogueTrack(
            identifier=raw.identifier, title=raw.title, author=raw.author, length=raw.length, uri=raw.uri,
            source_name=raw.source_name, is_stream=raw.is_stream,
            is_seekable=custom.is_seekable if custom else not raw.is_stream,
            artwork_url=raw.artwork_url, isrc=raw.isrc,
            behaviour=custom.behaviour if custom else _behaviour_of_info(raw),
            version=self.version,
        )
        return track, raw.position

    def _payload(self, track: CatalogueTrack) -> dict[str, Any]:
        if track.version != self.version:
            track = replace(track, version=self.version)
        return track.to_payload()

    def add_track(
        self,
        title: str,
        *,
        author: str = "Unknown Artist",
        length: int = 180_000,
        identifier: str | None = None,
        uri: str | None = None,
        source_name: str = "http",
        is_stream: bool = False,
        is_seekable: bool | None = None,
        artwork_url: str | None = None,
        isrc: str | None = None,
        behaviour: str = "normal",
    ) -> CatalogueTrack:
        """Register a custom track, loadable by its uri or identifier and found by searches on its title.

        Defaults: identifier = slug of the title, uri = ``https://music.example/track/<identifier>``.
        """
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}")
        ident = identifier or slugify(title)
        track = CatalogueTrack(
            identifier=ident,
            title=title,
            author=author,
            length=STREAM_LENGTH if is_stream else int(length),
            uri=uri or f"https://music.example/track/{ident}",
            source_name=source_name,
            is_stream=is_stream,
            is_seekable=(not is_stream) if is_seekable is None else is_seekable,
            artwork_url=artwork_url,
            isrc=isrc,
            behaviour=behaviour,
        )
        self._custom[ident] = track
        if track.uri:
            self._custom[track.uri] = track
        return track

    @property
    def custom_tracks(self) -> list[CatalogueTrack]:
        return list({id(t): t for t in self._custom.values()}.values())

    def load(self, identifier: str) -> dict[str, Any]:
        """The loadtracks result (``{"loadType": ..., "data": ...}``) for ``identifier``."""
        ident = identifier.strip()
        if ident in self._custom:
            return load_result("track", self._payload(self._custom[ident]))
        for prefix, source in SEARCH_PREFIXES.items():
            if ident.casefold().startswith(prefix):
                return self._search(prefix, source, ident[len(prefix):])
        if re.match(r"^https?://", ident, re.IGNORECASE):
            return self._load_url(ident)
        return empty_result()

    def track_for(self, identifier: str) -> CatalogueTrack | None:
        """Convenience for tests: the single track ``identifier`` loads to, if it is a track."""
        result = self.load(identifier)
        if result["loadType"] == "track":
            return self.decode(result["data"]["encoded"])[0]
        return None

    # -- searches -------------------------------------------------------------------------------------------

    def _search(self, prefix: str, source: str, text: str) -> dict[str, Any]:
        norm = " ".join(text.split())
        if not norm or "nothing" in norm.casefold():
            return empty_result()
        folded = norm.casefold()
        found = [t for t in self.custom_tracks if folded in t.title.casefold()]
        display = string.capwords(norm)
        behaviour = _behaviour_of(norm)
        base = _number("search-author", prefix, folded)
        for i, suffix in enumerate(_SEARCH_SUFFIXES):
            if len(found) >= SEARCH_RESULTS:
                break
            author = _AUTHORS[(base + i * 5) % len(_AUTHORS)]  # step 5 is coprime with 16: distinct
            found.append(self._search_track(prefix, source, folded, i, f"{display} {suffix}", author, behaviour))
        return load_result("search", [self._payload(t) for t in found[:SEARCH_RESULTS]])

    @staticmethod
    def _search_track(
        prefix: str, source: str, folded: str, index: int, title: str, author: str, behaviour: str
    ) -> CatalogueTrack:
        key = (prefix, folded, str(index))
        if source == "soundcloud":
            ident = str(100_000_000 + _number("sc", *key) % 900_000_000)
            uri = f"https://soundcloud.com/{slugify(author)}/{slugify(title)}"
            return CatalogueTrack(ident, title, author, _length_ms(*key), uri, "soundcloud", behaviour=behaviour)
        video = _video_id("yt", *key)
        host = "music.youtube.com" if prefix == "ytmsearch:" else "www.youtube.com"
        return CatalogueTrack(
            video, title, author, _length_ms(*key), f"https://{host}/watch?v={video}", "youtube",
            artwork_url=f"https://i.ytimg.com/vi/{video}/mqdefault.jpg", behaviour=behaviour,
        )

    # -- URLs ------------------------------------------------------------------------------------------------

    def _load_url(self, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        host = (parts.hostname or "").casefold()
        query = parse_qs(parts.query)
        length = _positive_int(query.get("length"))
        if host in MUSIC_HOSTS:
            return self._load_music_example(url, parts.path, query, length)
        if host in YOUTUBE_HOSTS or host == "youtu.be":
            return self._load_youtube(host, parts.path, query, length)
        cause = f"java.net.UnknownHostException: {host or url}: Name or service not known"
        return error_result("Connecting to the URL failed.", "suspicious", cause)

    def _load_music_example(
        self, url: str, path: str, query: dict[str, list[str]], length: int | None
    ) -> dict[str, Any]:
        kind, _, slug = path.strip("/").partition("/")
        if not slug:
            return empty_result()
        if kind == "track":
            return load_result("track", self._payload(self.music_track(slug, length=length, uri=url)))
        if kind == "playlist":
            return self._music_playlist(slug, query, length)
        if kind == "stream":
            name = _title_from_slug(slug)
            track = CatalogueTrack(
                url, f"{name} (Live)", _author("stream", slug), STREAM_LENGTH, url, "http",
                is_stream=True, is_seekable=False, behaviour=_behaviour_of(slug),
            )
            return load_result("track", self._payload(track))
        if kind == "broken":
            message = f"Track '{slug}' is unavailable."
            cause = f"com.sedmelluq.discord.lavaplayer.tools.FriendlyException: {message}"
            return error_result(message, "common", cause)
        return empty_result()  # /missing/... and unknown paths: the host answered 404

    def music_track(self, slug: str, *, length: int | None = None, uri: str | None = None) -> CatalogueTrack:
        """The generated track behind ``https://music.example/track/<slug>``."""
        uri = uri or f"https://music.example/track/{slug}" + (f"?length={length}" if length else "")
        if uri in self._custom:
            return self._custom[uri]
        return CatalogueTrack(
            uri, _title_from_slug(slug), _author("track", slug), length or _length_ms("track", slug), uri, "http",
            behaviour=_behaviour_of(slug),
        )

    def _music_playlist(self, slug: str, query: dict[str, list[str]], length: int | None) -> dict[str, Any]:
        n = _non_negative_int(query.get("n"))
        count = DEFAULT_PLAYLIST_SIZE if n is None else min(n, MAX_PLAYLIST_SIZE)
        tracks = [self.music_track(f"{slug}-{i}", length=length) for i in range(1, count + 1)]
        data = {
            "info": {"name": _title_from_slug(slug), "selectedTrack": -1},
            "pluginInfo": {},
            "tracks": [self._payload(t) for t in tracks],
        }
        return load_result("playlist", data)

    def _load_youtube(self, host: str, path: str, query: dict[str, list[str]], length: int | None) -> dict[str, Any]:
        if host == "youtu.be":
            video = path.strip("/").split("/")[0]
        elif path.rstrip("/") == "/watch" and query.get("list"):
            # A watch URL inside a list loads the list (lavaplayer); RD<id> lists are YouTube's "mix" of related
            # songs, which is what wavelink's autoplay asks for.
            return self._youtube_playlist(query["list"][0], query, length)
        elif path.rstrip("/") == "/watch":
            video = (query.get("v") or [""])[0]
        elif path.startswith("/shorts/"):
            video = path[len("/shorts/"):].strip("/")
        elif path.rstrip("/") == "/playlist" and query.get("list"):
            return self._youtube_playlist(query["list"][0], query, length)
        else:
            return empty_result()
        if not video:
            return empty_result()
        return load_result("track", self._payload(self.youtube_track(video, length=length)))

    def youtube_track(self, video: str, *, length: int | None = None) -> CatalogueTrack:
        """The generated track behind ``https://www.youtube.com/watch?v=<video>``."""
        uri = f"https://www.youtube.com/watch?v={video}"
        if uri in self._custom:
            return self._custom[uri]
        return CatalogueTrack(
            video, _words("yt", video), _author("yt", video), length or _length_ms("yt", video), uri, "youtube",
            artwork_url=f"https://i.ytimg.com/vi/{video}/mqdefault.jpg", behaviour=_behaviour_of(video),
        )

    def _youtube_playlist(self, list_id: str, query: dict[str, list[str]], length: int | None) -> dict[str, Any]:
        n = _non_negative_int(query.get("n"))
        count = DEFAULT_PLAYLIST_SIZE if n is None else min(n, MAX_PLAYLIST_SIZE)
        tracks = [self.youtube_track(_video_id("ytpl", list_id, str(i)), length=length) for i in range(count)]
        data = {
            "info": {"name": _words("ytpl", list_id) + " Mix", "selectedTrack": -1},
            "pluginInfo": {},
            "tracks": [self._payload(t) for t in tracks],
        }
        return load_result("playlist", data)


def _behaviour_of_info(raw: EncodedTrack) -> str:
    """The emulator-only behaviour of a decoded track: from its identifier, the last segment of its uri
    (a music.example slug) or its title (search results are titled after the search text)."""
    names = [raw.identifier, raw.title]
    if raw.uri:
        names.append(urlsplit(raw.uri).path.rstrip("/").rpartition("/")[2])
    for name in names:
        behaviour = _behaviour_of(name)
        if behaviour != "normal":
            return behaviour
    return "normal"


def _non_negative_int(values: list[str] | None) -> int | None:
    if not values:
        return None
    try:
        value = int(values[0])
    except ValueError:
        return None
    return value if value >= 0 else None


def _positive_int(values: list[str] | None) -> int | None:
    value = _non_negative_int(values)
    return value if value else None
