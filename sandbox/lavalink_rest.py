"""REST handlers of the emulated Lavalink v4 node: loadtracks, decode, info/stats/version, sessions, players.

Validation and error answers mirror Lavalink 4.0.x's handlers (PlayerRestHandler, AudioLoaderRestHandler):
errors use Lavalink's body ``{timestamp, status, error, message, path}`` (plus ``trace`` with ``?trace=true``).
Encoded tracks are decoded as lavaplayer does (sandbox/lavalink_codec.py); a track that does not decode is
what Lavalink's util.kt decodeTrack() throws for it (IllegalState/IllegalArgument/EOF exceptions), which no
handler catches, so Spring answers 500 with the exception's message, for /v4/decodetrack(s) and for a PATCH
playing it alike. A PATCH playing an ``identifier`` that fails to load is 400 with lavaplayer's message.
Authentication, fault injection and request recording live in the server's middleware (sandbox/lavalink.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from sandbox.catalogue import SOURCE_MANAGERS, Catalogue, CatalogueTrack, TrackDecodeError
from sandbox.lavalink_filters import FILTER_NAMES, FilterError, parse_filters
from sandbox.lavalink_lyrics import PLUGIN_INFO, LyricsPlugin
from sandbox.lavalink_players import Player, unix_ms
from sandbox.lavalink_sessions import NodeState, Session

log = logging.getLogger(__name__)

LAVALINK_VERSION = "4.0.8"
BAD_BODY = "Failed to read request"
#: What Spring answers for an exception no handler catches (e.g. a track that does not decode).
UNCAUGHT_STATUS = 500
#: Spring Boot's message for an exception without one (Java's EOFException from a truncated track).
NO_MESSAGE = "No message available"
_MISSING: Any = object()


class ApiError(Exception):
    """An error answer in Lavalink's shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json")


def error_response(status: int, message: str, request: web.Request) -> web.Response:
    body: dict[str, Any] = {
        "timestamp": unix_ms(),
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "path": request.path,
    }
    if request.query.get("trace", "").lower() == "true":
        body["trace"] = f"org.springframework.web.server.ResponseStatusException: {status} \"{message}\"\n\tat lavalink"
    return json_response(body, status)


def info_payload(plugins: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "version": {"semver": LAVALINK_VERSION, "major": 4, "minor": 0, "patch": 8, "preRelease": None,
                    "build": None},
        "buildTime": 1_718_000_000_000,
        "git": {"branch": "main", "commit": "0000000", "commitTime": 1_718_000_000_000},
        "jvm": "17.0.11",
        "lavaplayer": "2.2.1",
        "sourceManagers": list(SOURCE_MANAGERS),
        "filters": list(FILTER_NAMES),
        "plugins": list(plugins or []),
    }


@dataclass
class PlayerUpdate:
    """A parsed PATCH body; ``_MISSING`` marks omitted fields (Lavalink's Omissible)."""

    encoded: Any = _MISSING
    identifier: Any = _MISSING
    user_data: Any = _MISSING
    position: Any = _MISSING
    end_time: Any = _MISSING
    volume: Any = _MISSING
    paused: Any = _MISSING
    filters: Any = _MISSING
    voice: Any = _MISSING

    @property
    def has_track(self) -> bool:
        return self.encoded is not _MISSING or self.identifier is not _MISSING


def _typed(body: dict[str, Any], key: str, kinds: tuple[type, ...], *, nullable: bool = False) -> Any:
    if key not in body:
        return _MISSING
    value = body[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise ApiError(400, BAD_BODY)
    if not isinstance(value, kinds):
        raise ApiError(400, BAD_BODY)
    return value


def parse_player_update(body: Any) -> PlayerUpdate:
    if not isinstance(body, dict):
        raise ApiError(400, BAD_BODY)
    update = PlayerUpdate(
        position=_typed(body, "position", (int,)),
        end_time=_typed(body, "endTime", (int,), nullable=True),
        volume=_typed(body, "volume", (int,)),
        paused=_typed(body, "paused", (bool,)),
        filters=_typed(body, "filters", (dict,)),
    )
    if update.filters is not _MISSING:
        try:
            update.filters = parse_filters(update.filters)
        except FilterError:
            raise ApiError(400, BAD_BODY) from None
    voice = _typed(body, "voice", (dict,))
    if voice is not _MISSING:
        fields = {k: voice.get(k) for k in ("token", "endpoint", "sessionId")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise ApiError(400, BAD_BODY)
        update.voice = fields
    track = _typed(body, "track", (dict,))
    deprecated_encoded = _typed(body, "encodedTrack", (str,), nullable=True)
    deprecated_identifier = _typed(body, "identifier", (str,))
    if track is not _MISSING:
        if deprecated_encoded is not _MISSING or deprecated_identifier is not _MISSING:
            raise ApiError(400, "Cannot specify both track and encodedTrack/identifier")
        update.encoded = _typed(track, "encoded", (str,), nullable=True)
        update.identifier = _typed(track, "identifier", (str,))
        update.user_data = _typed(track, "userData", (dict,))
    else:
        update.encoded, update.identifier = deprecated_encoded, deprecated_identifier
    if update.encoded is not _MISSING and update.identifier is not _MISSING:
        raise ApiError(400, "Cannot specify both encodedTrack and identifier")
    if update.voice is not _MISSING and not all(update.voice.values()):
        v = update.voice
        raise ApiError(400, f"Partial Lavalink voice state: VoiceState(token={v['token']}, "
                            f"endpoint={v['endpoint']}, sessionId={v['sessionId']})")
    if update.end_time not in (_MISSING, None) and update.end_time <= 0:
        raise ApiError(400, "End time must be greater than 0")
    return update


def _decode(catalogue: Catalogue, encoded: str) -> tuple[CatalogueTrack, int]:
    try:
        return catalogue.decode(encoded)
    except TrackDecodeError as exc:
        log.error("Failed to decode track: %s", str(exc) or "EOFException")
        raise ApiError(UNCAUGHT_STATUS, str(exc) or NO_MESSAGE) from None


def _decoded_payload(catalogue: Catalogue, encoded: str) -> dict[str, Any]:
    """Lavalink's decodeTrack(...).toTrack(encoded): the given string, the info with its position."""
    track, position = _decode(catalogue, encoded)
    return {**track.to_payload(position), "encoded": encoded}


def _guild_id(request: web.Request) -> int:
    raw = request.match_info["guild_id"]
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Failed to convert value of type 'java.lang.String' to required type 'long'; "
                            f"For input string: \"{raw}\"") from None


def _no_replace(request: web.Request) -> bool:
    return _bool_param(request, "noReplace")


def _bool_param(request: web.Request, name: str) -> bool:
    """An optional boolean query parameter, read as Spring converts it (absent -> false)."""
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ApiError(400, f"Failed to convert value of type 'java.lang.String' to required type 'boolean'; "
                        f"Invalid boolean value [{raw}]")


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        raise ApiError(400, BAD_BODY) from None


class RestApi:
    """Route handlers bound to one node state and catalogue."""

    def __init__(self, node: NodeState, catalogue: Catalogue, lyrics: LyricsPlugin | None = None) -> None:
        self.node = node
        self.catalogue = catalogue
        self.lyrics = lyrics or LyricsPlugin(catalogue)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/version", self.version)
        app.router.add_get("/v4/info", self.info)
        app.router.add_get("/v4/stats", self.stats)
        app.router.add_get("/v4/loadtracks", self.load_tracks)
        app.router.add_get("/v4/decodetrack", self.decode_track)
        app.router.add_post("/v4/decodetracks", self.decode_tracks)
        app.router.add_patch("/v4/sessions/{session_id}", self.patch_session)
        app.router.add_get("/v4/sessions/{session_id}/players", self.get_players)
        app.router.add_get("/v4/sessions/{session_id}/players/{guild_id}", self.get_player)
        app.router.add_patch("/v4/sessions/{session_id}/players/{guild_id}", self.patch_player)
        app.router.add_delete("/v4/sessions/{session_id}/players/{guild_id}", self.delete_player)
        # LavaLyrics (sandbox/lavalink_lyrics.py): routed always, answered as "no such endpoint" without the plugin
        app.router.add_get("/v4/sessions/{session_id}/players/{guild_id}/track/lyrics", self.current_lyrics)
        app.router.add_get("/v4/lyrics", self.track_lyrics)

    def _session(self, request: web.Request) -> Session:
        session = self.node.live_session(request.match_info["session_id"])
        if session is None:
            raise ApiError(404, "Session not found")
        return session

    async def version(self, request: web.Request) -> web.Response:
        return web.Response(text=LAVALINK_VERSION, content_type="text/plain")

    async def info(self, request: web.Request) -> web.Response:
        return json_response(info_payload([dict(PLUGIN_INFO)] if self.lyrics.installed else []))

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.node.stats(rest=True))

    async def load_tracks(self, request: web.Request) -> web.Response:
        identifier = request.query.get("identifier")
        if identifier is None:
            raise ApiError(400, "Required request parameter 'identifier' for method parameter type String is "
                                "not present")
        log.info('Got request to load for identifier "%s"', identifier)
        return json_response(self.catalogue.load(identifier))

    async def decode_track(self, request: web.Request) -> web.Response:
        encoded = request.query.get("encodedTrack") or request.query.get("track")
        if not encoded:
            raise ApiError(400, "No track to decode provided")
        return json_response(_decoded_payload(self.catalogue, encoded))

    async def decode_tracks(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
            raise ApiError(400, BAD_BODY)
        if not body:
            raise ApiError(400, "No tracks to decode provided")
        return json_response([_decoded_payload(self.catalogue, item) for item in body])

    async def patch_session(self, request: web.Request) -> web.Response:
        session = self._session(request)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, BAD_BODY)
        resuming = _typed(body, "resuming", (bool,))
        timeout = _typed(body, "timeout", (int,))
        if resuming is not _MISSING:
            session.resuming = resuming
        if timeout is not _MISSING:
            session.timeout = timeout
        return json_response({"resuming": session.resuming, "timeout": session.timeout})

    async def get_players(self, request: web.Request) -> web.Response:
        session = self._session(request)
        return json_response([p.to_response() for p in session.players.values()])

    async def get_player(self, request: web.Request) -> web.Response:
        session = self._session(request)
        player = session.players.get(_guild_id(request))
        if player is None:
            raise ApiError(404, "Player not found")
        return json_response(player.to_response())

    async def delete_player(self, request: web.Request) -> web.Response:
        session = self._session(request)
        session.destroy_player(_guild_id(request))
        return web.Response(status=204)

    def _lyrics_plugin(self, request: web.Request) -> LyricsPlugin:
        """The plugin, or Spring's answer for a path no controller maps (Lavalink without LavaLyrics)."""
        if not self.lyrics.installed:
            raise ApiError(404, f"No endpoint {request.method} {request.path}.")
        return self.lyrics

    async def current_lyrics(self, request: web.Request) -> web.Response:
        plugin = self._lyrics_plugin(request)
        _bool_param(request, "skipTrackSource")
        session = self._session(request)
        player = session.players.get(_guild_id(request))
        if player is None:
            raise ApiError(404, "Player not found")
        if player.track is None:
            raise ApiError(404, "No track playing")
        return plugin.answer(player.track)

    async def track_lyrics(self, request: web.Request) -> web.Response:
        plugin = self._lyrics_plugin(request)
        encoded = request.query.get("track")
        if encoded is None:
            raise ApiError(400, "Required request parameter 'track' for method parameter type String is not present")
        _bool_param(request, "skipTrackSource")
        track, _ = _decode(self.catalogue, encoded)
        return plugin.answer(track)

    async def patch_player(self, request: web.Request) -> web.Response:
        session = self._session(request)
        guild_id = _guild_id(request)
        no_replace = _no_replace(request)
        update = parse_player_update(await _json_body(request))
        player = session.player(guild_id)
        self._apply(player, update, no_replace)
        return json_response(player.to_response())

    def _apply(self, player: Player, update: PlayerUpdate, no_replace: bool) -> None:
        """Apply a PATCH in the order Lavalink's PlayerRestHandler does."""
        if update.voice is not _MISSING:
            player.set_voice(update.voice)
        track_request = update.has_track
        if update.paused is not _MISSING and not track_request:
            player.set_paused(update.paused)
        if update.user_data is not _MISSING and not track_request and player.track is not None:
            player.user_data = dict(update.user_data)
        if update.volume is not _MISSING:
            player.set_volume(update.volume)
        if update.position is not _MISSING and not track_request:
            player.seek(update.position)
        if update.end_time is not _MISSING and not track_request:
            player.set_end_time(update.end_time)
        if update.filters is not _MISSING:
            player.set_filters(update.filters)
        if not track_request:
            return
        if no_replace and player.track is not None:
            log.info("Skipping play request because of noReplace")
            return
        paused = update.paused if update.paused is not _MISSING else False
        start = 0  # lavaplayer starts a decoded track at the position its message carries
        if update.encoded is not _MISSING:
            track, start = (None, 0) if update.encoded is None else _decode(self.catalogue, update.encoded)
        else:
            track = self._load_for_play(update.identifier)
        if track is None:
            player.set_paused(paused)
            player.stop()
            return
        player.play(
            track,
            position=start if update.position is _MISSING else update.position,
            end_time=None if update.end_time is _MISSING else update.end_time,
            paused=paused,
            user_data=None if update.user_data is _MISSING else update.user_data,
        )

    def _load_for_play(self, identifier: str) -> CatalogueTrack:
        result = self.catalogue.load(identifier)
        load_type = result["loadType"]
        if load_type == "track":
            return self.catalogue.decode(result["data"]["encoded"])[0]
        if load_type in ("playlist", "search"):
            raise ApiError(400, "Cannot play a playlist or search result")
        if load_type == "empty":
            raise ApiError(400, "No matches found for identifier")
        # PlayerRestHandler turns the loader's FriendlyException into a 400 with its message.
        raise ApiError(400, result["data"]["message"])
