"""The emulated gateway (v10, JSON): HELLO/IDENTIFY/RESUME, heartbeats, dispatch routing by intents, op 4/8."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, Callable

from aiohttp import WSMsgType, web

from .discord_sessions import BotStats, Connection, Session
from .discord_state import (
    INTENT_GUILD_MEMBERS, INTENT_GUILD_MESSAGES, INTENT_GUILD_PRESENCES, INTENT_GUILD_VOICE_STATES, INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT, PRIVILEGED_INTENTS, STAGE, VOICE, BotApp, DiscordState, Guild, Perm, VoiceState,
)

log = logging.getLogger(__name__)

HELLO, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE, RESUME = 10, 1, 2, 3, 4, 6
RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HEARTBEAT_ACK = 7, 8, 9, 11
VOICE_ENDPOINT = "sandbox-voice.invalid:443"
ALL_INTENTS = (1 << 26) - 1

# Event -> intent that gates it (None: always delivered).
EVENT_INTENTS: dict[str, int | None] = {
    "GUILD_CREATE": INTENT_GUILDS, "GUILD_UPDATE": INTENT_GUILDS, "GUILD_DELETE": INTENT_GUILDS,
    "CHANNEL_CREATE": INTENT_GUILDS, "CHANNEL_UPDATE": INTENT_GUILDS, "CHANNEL_DELETE": INTENT_GUILDS,
    "GUILD_ROLE_CREATE": INTENT_GUILDS, "GUILD_ROLE_UPDATE": INTENT_GUILDS, "GUILD_ROLE_DELETE": INTENT_GUILDS,
    "GUILD_MEMBER_ADD": INTENT_GUILD_MEMBERS, "GUILD_MEMBER_UPDATE": INTENT_GUILD_MEMBERS,
    "GUILD_MEMBER_REMOVE": INTENT_GUILD_MEMBERS, "VOICE_STATE_UPDATE": INTENT_GUILD_VOICE_STATES,
    "MESSAGE_CREATE": INTENT_GUILD_MESSAGES, "MESSAGE_UPDATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_DELETE": INTENT_GUILD_MESSAGES, "TYPING_START": 1 << 11,
}


def _frame(op: int, d: Any = None) -> dict[str, Any]:
    return {"op": op, "d": d, "s": None, "t": None}


def _digest(*parts: object) -> str:
    return hashlib.md5(":".join(map(str, parts)).encode()).hexdigest()


def _strip_content(app: BotApp, intents: int, message: dict[str, Any]) -> dict[str, Any]:
    """Without MESSAGE_CONTENT Discord blanks other users' messages unless they mention the bot."""
    if intents & INTENT_MESSAGE_CONTENT or "author" not in message:
        return message
    if int(message["author"]["id"]) == app.user_id:
        return message
    if any(int(u["id"]) == app.user_id for u in message.get("mentions", [])):
        return message
    return {**message, "content": "", "embeds": [], "attachments": [], "components": []}


class Gateway:
    """All gateway sessions of all bots. `handle` is the aiohttp websocket handler."""

    def __init__(self, state: DiscordState, heartbeat_interval: int, notify: Callable[[], None]) -> None:
        self.state = state
        self.heartbeat_interval = heartbeat_interval
        self.notify = notify
        self.public_url = ""
        self.sessions: dict[str, Session] = {}
        self.connections: list[Connection] = []
        self.stats: dict[int, BotStats] = {}
        self.voice_ops: dict[int, list[dict[str, Any]]] = {}
        self.member_requests: list[dict[str, Any]] = []  # every op 8 payload, answered or not
        # (bot user id, guild id) -> the voice credentials Discord last issued: token, endpoint, session_id
        self.voice_servers: dict[tuple[int, int], dict[str, str]] = {}
        self._counter = 0

    def stats_for(self, user_id: int) -> BotStats:
        return self.stats.setdefault(user_id, BotStats())

    # -- delivery ------------------------------------------------------------------------------------

    def live_sessions(self, user_id: int) -> list[Session]:
        return [s for s in self.sessions.values() if s.app.user_id == user_id and not s.invalid]

    def dispatch_to_bot(self, user_id: int, event: str, data: dict[str, Any], guild_id: int | None = None) -> None:
        for session in self.live_sessions(user_id):
            if guild_id is None or session.wants_guild(guild_id):
                session.dispatch(event, data)
        self.notify()

    def dispatch_guild(self, guild_id: int, event: str, data: dict[str, Any], *, exclude: int | None = None) -> None:
        """Send to every bot in the guild (but `exclude`) whose intents allow this event."""
        guild = self.state.guilds.get(guild_id)
        if guild is None:
            return
        needed = EVENT_INTENTS.get(event)
        for session in list(self.sessions.values()):
            if session.invalid or session.app.user_id not in guild.members or not session.wants_guild(guild_id):
                continue
            if session.app.user_id == exclude:
                continue
            if needed is not None and not session.intents & needed:
                continue
            payload = data
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                payload = _strip_content(session.app, session.intents, data)
            session.dispatch(event, payload)
        self.notify()

    def dispatch_message_create(self, message: dict[str, Any]) -> None:
        """MESSAGE_CREATE carries the author's partial member in guilds."""
        guild_id = int(message["guild_id"])
        member = self.state.member(guild_id, int(message["author"]["id"]))
        data = dict(message)
        if member is not None:
            data["member"] = member.to_dict(with_user=False)
        self.dispatch_guild(guild_id, "MESSAGE_CREATE", data)

    def is_ready(self, user_id: int) -> bool:
        sessions = self.live_sessions(user_id)
        return bool(sessions) and all(
            s.conn is not None and s.ready_seq is not None and s.conn.written_seq >= s.ready_seq for s in sessions)

    # -- payloads ------------------------------------------------------------------------------------

    def guild_create(self, guild: Guild, session: Session, *, joined: bool = False) -> dict[str, Any]:
        """GUILD_CREATE as Discord shapes it for this session's intents (reference §2.6).

        After READY it carries `unavailable: false` (the guild became available); on a join it has no
        `unavailable` key, which is how discord.py tells on_guild_join from on_guild_available.
        """
        app, intents = session.app, session.intents
        large = len(guild.members) > session.large_threshold
        in_voice = {vs.user_id for vs in guild.voice_states.values()}
        if intents & INTENT_GUILD_PRESENCES and not large:
            members = list(guild.members.values())
        else:  # Discord's documented fallback: only the bot itself and users in voice channels.
            members = [m for uid, m in guild.members.items() if uid == app.user_id or uid in in_voice]
        data = guild.to_dict()
        bot_member = guild.members[app.user_id]
        data.update(
            unavailable=False, member_count=len(guild.members), large=large, joined_at=bot_member.joined_at,
            channels=[c.to_dict() for c in guild.channels.values()], members=[m.to_dict() for m in members],
            voice_states=([vs.to_dict(with_guild=False) for vs in guild.voice_states.values()]
                          if intents & INTENT_GUILD_VOICE_STATES else []),
            presences=[], threads=[], stage_instances=[], guild_scheduled_events=[], soundboard_sounds=[],
            embedded_activities=[], application_command_counts={}, lazy=True,
        )
        for channel in data["channels"]:
            channel.pop("guild_id", None)
        if joined:
            del data["unavailable"]
        return data

    def _ready(self, session: Session) -> dict[str, Any]:
        user = self.state.users[session.app.user_id].to_dict()
        user.update(verified=True, mfa_enabled=False, flags=0, email=None)
        guilds = [g for g in self.state.bot_guilds(session.app.user_id) if session.wants_guild(g.id)]
        data: dict[str, Any] = {
            "v": 10, "user": user, "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id, "session_type": "normal", "resume_gateway_url": self.public_url,
            "application": {"id": str(session.app.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "user_settings": {},
            "guild_join_requests": [], "geo_ordered_rtc_regions": ["sandbox"], "auth": {},
            "_trace": ['["sandbox-gateway",{"micros":0}]'],
        }
        if session.shard is not None:
            data["shard"] = list(session.shard)
        return data

    # -- websocket handler ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=False)
        await ws.prepare(request)
        compression = request.query.get("compress") or None
        conn = Connection(ws, request, compression if compression in ("zstd-stream", "zlib-stream") else None)
        self.connections.append(conn)
        log.info("gateway connection opened (compress=%s)", conn.compression)
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            if request.query.get("v", "10") not in ("9", "10"):
                conn.close(4012, "Invalid API version.")
            elif request.query.get("encoding", "json") != "json":
                conn.close(4002, "Error while decoding payload.")
            else:
                conn.send(_frame(HELLO, {"heartbeat_interval": self.heartbeat_interval,
                                         "_trace": ['["sandbox-gateway",{"micros":0}]']}))
            while True:
                msg = await ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    client_code = msg.data if msg.type is WSMsgType.CLOSE else None
                    self._client_closed(conn, client_code)
                    break
                if msg.type is not WSMsgType.TEXT:
                    if msg.type is WSMsgType.BINARY:
                        conn.close(4002, "Error while decoding payload.")
                    continue
                if not conn.count_send():
                    conn.close(4008, "Rate limited.")
                    continue
                try:
                    payload = json.loads(msg.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    conn.close(4002, "Error while decoding payload.")
                    continue
                self._on_op(conn, op, payload.get("d"))
        finally:
            watchdog.cancel()
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            if conn.app is not None and conn.closed_by_server is not None:
                self.stats_for(conn.app.user_id).server_closes.append(conn.closed_by_server)
            await conn.finish()
            log.info("gateway connection closed (%s, code=%s)", conn.app.name if conn.app else "anonymous",
                     conn.closed_by_server or ws.close_code)
            self.notify()
        return ws

    def _client_closed(self, conn: Connection, code: int | None) -> None:
        """Like Discord: a client closing with 1000/1001 ends its session; other codes keep it resumable."""
        if conn.closed_by_server is None and code in (1000, 1001) and conn.session is not None:
            conn.session.invalid = True
            log.info("gateway: %s closed with %s, session ended", conn.session.app.name, code)

    async def _watchdog(self, conn: Connection) -> None:
        """Close zombies: no heartbeat for 1.5 intervals → close 4000 (the session stays resumable)."""
        limit = self.heartbeat_interval / 1000 * 1.5
        while not conn.ws.closed:
            await asyncio.sleep(limit / 3)
            if time.monotonic() - conn.last_heartbeat > limit:
                log.info("gateway: no heartbeat for %.1fs, closing", limit)
                conn.close(4000, "Heartbeat timeout.")
                return

    def _on_op(self, conn: Connection, op: int, d: Any) -> None:
        if op == HEARTBEAT:
            conn.last_heartbeat = time.monotonic()
            if conn.app is not None:
                self.stats_for(conn.app.user_id).heartbeats += 1
            conn.send(_frame(HEARTBEAT_ACK))
        elif op == IDENTIFY:
            self._identify(conn, d or {})
        elif op == RESUME:
            self._resume(conn, d or {})
        elif conn.session is None:
            conn.close(4003, "Not authenticated.")
        elif op == PRESENCE:
            self.stats_for(conn.session.app.user_id).presences.append(d)
        elif op == VOICE_STATE:
            self._voice_state(conn.session, d or {})
        elif op == REQUEST_MEMBERS:
            self._request_members(conn, conn.session, d or {})
        else:
            conn.close(4001, "Unknown opcode.")

    def _identify(self, conn: Connection, d: dict[str, Any]) -> None:
        if conn.session is not None:
            conn.close(4005, "Already authenticated.")
            return
        app = self.state.app_for_token(d.get("token"))
        if app is None:
            log.info("gateway: IDENTIFY with an unknown token")
            conn.close(4004, "Authentication failed.")
            return
        conn.app = app
        stats = self.stats_for(app.user_id)
        stats.connections += 1
        stats.identifies += 1
        stats.compression.append(conn.compression)
        intents = d.get("intents")
        stats.intents = intents
        if not isinstance(intents, int) or intents < 0 or intents > ALL_INTENTS:
            conn.close(4013, "Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~app.privileged_intents:
            log.info("gateway: %s asked for privileged intents it does not have (%d)", app.name, intents)
            conn.close(4014, "Disallowed intent(s).")
            return
        shard = d.get("shard")
        if shard is not None and (len(shard) != 2 or not 0 <= shard[0] < shard[1]):
            conn.close(4010, "Invalid shard.")
            return
        shard_t = (int(shard[0]), int(shard[1])) if shard is not None else None
        for old in self.live_sessions(app.user_id):
            if old.shard == shard_t:
                old.invalid = True
        self._counter += 1
        session = Session(_digest("session", app.user_id, self._counter), app, intents, shard_t,
                          int(d.get("large_threshold") or 50))
        self.sessions[session.session_id] = session
        session.conn, conn.session = conn, session
        log.info("gateway: %s identified (intents=%d, shard=%s)", app.name, intents, shard_t)
        session.dispatch("READY", self._ready(session))
        for guild in self.state.bot_guilds(app.user_id):
            if session.wants_guild(guild.id):
                session.dispatch("GUILD_CREATE", self.guild_create(guild, session))
        session.ready_seq = session.seq
        self.notify()

    def _resume(self, conn: Connection, d: dict[str, Any]) -> None:
        app = self.state.app_for_token(d.get("token"))
        if app is None:
            conn.close(4004, "Authentication failed.")
            return
        conn.app = app
        stats = self.stats_for(app.user_id)
        stats.connections += 1
        stats.resumes += 1
        stats.compression.append(conn.compression)
        session = self.sessions.get(str(d.get("session_id")))
        seq = d.get("seq")
        missed = None
        if session is not None and session.app is app and not session.invalid and isinstance(seq, int):
            missed = session.replay_from(seq)
        if session is None or missed is None:
            log.info("gateway: %s RESUME rejected, session invalid", app.name)
            stats.invalid_sessions += 1
            conn.send(_frame(INVALID_SESSION, False))
            return
        if session.conn is not None and session.conn is not conn:
            session.conn.close(4000, "Session resumed elsewhere.")
        session.conn, conn.session = conn, session
        for payload in missed:
            conn.send(payload)
        log.info("gateway: %s resumed, replayed %d dispatches", app.name, len(missed))
        session.dispatch("RESUMED", {"_trace": ['["sandbox-gateway",{"micros":0}]']})
        self.notify()

    # -- voice and members ---------------------------------------------------------------------------

    def _voice_state(self, session: Session, d: dict[str, Any]) -> None:
        app = session.app
        self.voice_ops.setdefault(app.user_id, []).append(dict(d))
        self.notify()
        try:
            guild_id = int(d["guild_id"])
            channel_id = None if d.get("channel_id") is None else int(d["channel_id"])
        except (KeyError, TypeError, ValueError):
            log.info("gateway: malformed op 4 from %s ignored", app.name)
            return
        guild = self.state.guilds.get(guild_id)
        if guild is None or app.user_id not in guild.members:
            return
        if channel_id is None:
            self.leave_voice(guild, app.user_id)
            return
        channel = guild.channels.get(channel_id)
        if channel is None or channel.type not in (VOICE, STAGE):
            return
        perms = self.state.permissions_for(guild_id, app.user_id, channel_id)
        if perms & (Perm.VIEW_CHANNEL | Perm.CONNECT) != Perm.VIEW_CHANNEL | Perm.CONNECT:
            log.info("gateway: %s lacks CONNECT in %s; op 4 ignored like Discord does", app.name, channel.name)
            return
        current = guild.voice_states.get(app.user_id)
        already_in = current is not None and current.channel_id == channel_id
        others = [u for u in self.state.voice_members(channel_id) if u != app.user_id]
        if channel.user_limit and len(others) >= channel.user_limit and not already_in \
                and not perms & Perm.MOVE_MEMBERS:
            log.info("gateway: %s cannot join full channel %s; op 4 ignored", app.name, channel.name)
            return
        state = VoiceState(guild_id, app.user_id, channel_id, session.session_id,
                           self_mute=bool(d.get("self_mute")), self_deaf=bool(d.get("self_deaf")))
        guild.voice_states[app.user_id] = state
        self.dispatch_voice_state(guild, state)
        self.send_voice_server(session, guild_id)

    def send_voice_server(self, session: Session, guild_id: int) -> dict[str, str]:
        """A fresh voice token for this bot in this guild (VOICE_SERVER_UPDATE), remembered as issued."""
        token = _digest("voice", session.app.user_id, guild_id, self.state.ids.next())[:16]
        data = {"token": token, "guild_id": str(guild_id), "endpoint": VOICE_ENDPOINT}
        session.dispatch("VOICE_SERVER_UPDATE", data)
        self.voice_servers[(session.app.user_id, guild_id)] = {
            "token": token, "endpoint": VOICE_ENDPOINT, "session_id": session.session_id}
        self.notify()
        return data

    def dispatch_voice_state(self, guild: Guild, state: VoiceState) -> None:
        data = state.to_dict()
        data["member"] = guild.members[state.user_id].to_dict()
        self.dispatch_guild(guild.id, "VOICE_STATE_UPDATE", data)

    def leave_voice(self, guild: Guild, user_id: int) -> None:
        state = guild.voice_states.pop(user_id, None)
        self.voice_servers.pop((user_id, guild.id), None)
        if state is None:
            return
        state.channel_id = None
        self.dispatch_voice_state(guild, state)

    def _request_members(self, conn: Connection, session: Session, d: dict[str, Any]) -> None:
        query, user_ids = d.get("query"), d.get("user_ids")
        self.member_requests.append(dict(d))
        if query == "" and not user_ids and not session.intents & INTENT_GUILD_MEMBERS:
            # Discord neither answers nor closes: the whole member list needs GUILD_MEMBERS, and the
            # client's request simply never completes (discord.py's chunk_guild() then times out).
            log.info("gateway: %s asked for all members without GUILD_MEMBERS; not answered", session.app.name)
            return
        if not session.intents & INTENT_GUILD_PRESENCES:
            d = {**d, "presences": False}  # Discord: without GUILD_PRESENCES `presences` is always false
        guild_ids = d.get("guild_id")
        for gid in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self.state.guilds.get(int(gid))
            if guild is None:
                continue
            members = list(guild.members.values())
            not_found: list[str] = []
            if user_ids:
                wanted = {int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
                members = [m for m in members if m.user.id in wanted]
                not_found = [str(u) for u in wanted - {m.user.id for m in members}]
            elif query:
                q = str(query).lower()
                members = [m for m in members if m.user.username.lower().startswith(q)
                           or (m.nick or "").lower().startswith(q)]
            limit = int(d.get("limit") or 0)
            if limit:
                members = members[:limit]
            chunks = [members[i:i + 1000] for i in range(0, len(members), 1000)] or [[]]
            for index, chunk in enumerate(chunks):
                data: dict[str, Any] = {"guild_id": str(guild.id), "members": [m.to_dict() for m in chunk],
                                        "chunk_index": index, "chunk_count": len(chunks), "not_found": not_found}
                if d.get("nonce") is not None:
                    data["nonce"] = d["nonce"]
                if d.get("presences"):
                    data["presences"] = []
                session.dispatch("GUILD_MEMBERS_CHUNK", data)

    # -- faults --------------------------------------------------------------------------------------

    def connections_of(self, user_id: int) -> list[Connection]:
        return [s.conn for s in self.live_sessions(user_id) if s.conn is not None]

    def send_op(self, user_id: int, op: int, d: Any = None) -> int:
        conns = self.connections_of(user_id)
        for conn in conns:
            conn.send(_frame(op, d))
        return len(conns)

    def invalidate(self, user_id: int, resumable: bool) -> int:
        conns = self.connections_of(user_id)
        for conn in conns:
            if not resumable and conn.session is not None:
                conn.session.invalid = True
            conn.send(_frame(INVALID_SESSION, resumable))
        return len(conns)

    def close(self, user_id: int, code: int, reason: str = "") -> int:
        conns = self.connections_of(user_id)
        for conn in conns:
            if code in (4007, 4009) and conn.session is not None:
                conn.session.invalid = True
            conn.close(code, reason)
        return len(conns)

    def drop(self, user_id: int) -> int:
        conns = self.connections_of(user_id)
        for conn in conns:
            conn.abort()
        return len(conns)

    async def shutdown(self) -> None:
        for conn in list(self.connections):
            if not conn.ws.closed:
                conn.abort()
            await conn.finish()
