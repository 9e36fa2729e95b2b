"""REST v10 of the emulated Discord: the request pipeline (auth, faults, rate limits, recording) and routes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from .discord_commands import CommandStore, CommandValidationError
from .discord_gateway import Gateway
from .discord_http import (
    MISSING_ACCESS, MISSING_PERMISSIONS, ApiError, Call, NotEmulated, Router, Upload, check_message_body,
    empty_response, json_response, require_not_empty, unknown,
)
from .discord_ratelimit import (
    FaultRule, Faults, RateLimiter, bucket_hash, rate_headers, too_many_body, too_many_headers,
)
from .discord_state import STAGE, VOICE, BotApp, DiscordState, Perm, mask_token
from .discord_voice import VoiceModerator
from .discord_webhooks import InteractionRoutes

log = logging.getLogger(__name__)

API_PREFIXES = ("/api/v10", "/api/v9")


@dataclass
class RecordedRequest:
    """One REST request as the emulator saw it (tokens masked)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int
    app: int | None
    at: float = field(default_factory=time.monotonic)


class Unimplemented(NamedTuple):
    """A request the sandbox answered 501 because it does not emulate it (tokens masked)."""

    method: str
    path: str
    reason: str


class RestApi:
    """Owns the router and the pipeline every request goes through."""

    def __init__(self, state: DiscordState, gateway: Gateway, commands: CommandStore, interactions: InteractionRoutes,
                 limiter: RateLimiter, faults: Faults, voice: VoiceModerator) -> None:
        self.state = state
        self.voice = voice
        self.gateway = gateway
        self.commands = commands
        self.limiter = limiter
        self.faults = faults
        self.requests: list[RecordedRequest] = []
        self.unimplemented: list[Unimplemented] = []
        self.router = Router()
        self._add_routes()
        interactions.register(self.router)

    # -- pipeline ------------------------------------------------------------------------------------

    def mask(self, text: str) -> str:
        for token in self.state.apps_by_token:
            text = mask_token(text, token)
        return text

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.path
        prefix = next((p for p in API_PREFIXES if raw_path.startswith(p)), "")
        path, method = raw_path[len(prefix):] or "/", request.method
        masked = self.mask(path)
        query = {k: self.mask(v) for k, v in request.query.items()}
        route, params, path_known = self.router.match(method, path) if prefix else (None, {}, False)
        app = self.state.app_for_token(_bearer(request))
        body: Any = None
        headers: dict[str, str] = {}
        try:
            if route is None:
                # A path known for other methods may still be a real route (e.g. DELETE of a member):
                # the sandbox cannot tell Discord's 405 from a gap of its own, so both are gaps.
                raise NotEmulated("route (only other methods of this path are)" if path_known else "route")
            if route.auth and app is None:
                raise ApiError(401, 0, "401: Unauthorized")
            delay = self.faults.latency(method, path)
            if delay:
                await asyncio.sleep(delay)
            fault = self.faults.take(method, path)
            if fault is not None:
                response = self._fault_response(fault, route.template, method)
                self._record(method, masked, query, None, response.status, app)
                return response
            who: Any = app.user_id if route.auth and app else route.major(params)
            if route.auth and app is not None:
                wait = self.limiter.hit_global(app.user_id)
                if wait:
                    raise _RateLimited(wait, True, {})
            verdict = self.limiter.hit(who, method, route.template, route.major(params))
            headers = verdict.headers
            if verdict.limited:
                raise _RateLimited(verdict.retry_after, False, headers)
            body, uploads = await _read_body(request)
            call = Call(request, method, path, route.template, params, dict(request.query), body, app, uploads)
            status, result = await route.handler(call)
        except _RateLimited as rl:
            log.info("429 %s %s (retry_after=%.3f, global=%s)", method, masked, rl.retry_after, rl.global_)
            response = json_response(429, too_many_body(rl.retry_after, rl.global_),
                                     {**rl.headers, **too_many_headers(rl.retry_after, rl.global_)})
            self._record(method, masked, query, body, 429, app)
            return response
        except NotEmulated as err:
            log.warning("%s %s -> 501 %s", method, masked, err.message)
            self.unimplemented.append(Unimplemented(method, masked, err.message))
            self._record(method, masked, query, body, err.status, app)
            return json_response(err.status, err.body(), headers)
        except ApiError as err:
            if err.status >= 400 and err.status not in (404, 405):
                log.info("%s %s -> %d %s", method, masked, err.status, err.message)
            self._record(method, masked, query, body, err.status, app)
            return json_response(err.status, err.body(), headers)
        self._record(method, masked, query, body, status, app)
        if status == 204:
            return empty_response(headers)
        return json_response(status, result, headers)

    def _fault_response(self, fault: FaultRule, template: str, method: str) -> web.Response:
        if fault.status == 429:
            headers = {**rate_headers(1, 0, fault.retry_after, bucket_hash(method, template)),
                       **too_many_headers(fault.retry_after, fault.global_)}
            return json_response(429, too_many_body(fault.retry_after, fault.global_), headers)
        # Real 5xx from Discord's edge are HTML, not JSON.
        return web.Response(status=fault.status, body=f"<html><body>{fault.status} error</body></html>".encode(),
                            headers={"Content-Type": "text/html"})

    def _record(self, method: str, path: str, query: dict[str, str], body: Any, status: int,
                app: BotApp | None) -> None:
        self.requests.append(RecordedRequest(method, path, query, body, status, app.application_id if app else None))
        log.debug("%s %s -> %d", method, path, status)
        self.gateway.notify()

    # -- routes --------------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        r = self.router
        r.add("GET", "/users/@me", self.get_me)
        r.add("GET", "/users/{user_id}", self.get_user)
        r.add("GET", "/oauth2/applications/@me", self.get_application)
        r.add("GET", "/applications/@me", self.get_application)
        r.add("GET", "/gateway", self.get_gateway, auth=False)
        r.add("GET", "/gateway/bot", self.get_gateway_bot)
        for scope in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            r.add("GET", scope + "/commands", self.list_commands)
            r.add("PUT", scope + "/commands", self.overwrite_commands)
            r.add("POST", scope + "/commands", self.upsert_command)
            r.add("GET", scope + "/commands/{command_id}", self.get_command)
            r.add("DELETE", scope + "/commands/{command_id}", self.delete_command)
        r.add("GET", "/channels/{channel_id}", self.get_channel)
        r.add("GET", "/channels/{channel_id}/messages", self.list_messages)
        r.add("POST", "/channels/{channel_id}/messages", self.create_message)
        r.add("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r.add("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        r.add("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        r.add("POST", "/channels/{channel_id}/typing", self.typing)
        r.add("GET", "/guilds/{guild_id}", self.get_guild)
        r.add("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r.add("GET", "/guilds/{guild_id}/roles", self.get_roles)
        r.add("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        r.add("PATCH", "/guilds/{guild_id}/members/{user_id}", self.edit_member)

    async def get_me(self, call: Call) -> tuple[int, Any]:
        user = self.state.users[call.app.user_id].to_dict()  # type: ignore[union-attr]
        user.update(verified=True, mfa_enabled=False, flags=0, locale="en-US", email=None, banner=None,
                    accent_color=None, premium_type=0)
        return 200, user

    async def get_user(self, call: Call) -> tuple[int, Any]:
        user = self.state.users.get(call.int_param("user_id"))
        if user is None:
            raise unknown("User", 10013)
        return 200, user.to_dict()

    async def get_application(self, call: Call) -> tuple[int, Any]:
        app = call.app
        assert app is not None
        owner = self.state.users[app.owner_id].to_dict()
        return 200, {
            "id": str(app.application_id), "name": app.name, "icon": None, "description": "", "summary": "",
            "type": None, "bot_public": True, "bot_require_code_grant": False, "owner": owner, "team": None,
            "verify_key": f"{app.application_id:064x}"[-64:], "flags": _app_flags(app.privileged_intents),
            "hook": True, "is_monetized": False, "interactions_endpoint_url": None, "tags": [],
            "bot": self.state.users[app.user_id].to_dict(), "redirect_uris": [], "rpc_origins": [],
            "integration_types_config": {"0": {}}, "approximate_guild_count": len(self.state.bot_guilds(app.user_id)),
        }

    async def get_gateway(self, call: Call) -> tuple[int, Any]:
        return 200, {"url": self.gateway.public_url.rstrip("/")}

    async def get_gateway_bot(self, call: Call) -> tuple[int, Any]:
        return 200, {"url": self.gateway.public_url.rstrip("/"), "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}

    # commands

    def _scope(self, call: Call) -> tuple[int, int | None]:
        app_id = call.int_param("application_id")
        if call.app is None or app_id != call.app.application_id:
            raise ApiError(403, 50001, "Missing Access")
        guild_id = call.int_param("guild_id") if "guild_id" in call.params else None
        if guild_id is not None:
            if guild_id not in self.state.guilds:
                raise unknown("Guild", 10004)
            if call.app.user_id not in self.state.guilds[guild_id].members:
                raise ApiError(*MISSING_ACCESS)
        return app_id, guild_id

    async def list_commands(self, call: Call) -> tuple[int, Any]:
        return 200, self.commands.list(*self._scope(call))

    async def overwrite_commands(self, call: Call) -> tuple[int, Any]:
        try:
            return 200, self.commands.bulk_overwrite(*self._scope(call), call.body)
        except CommandValidationError as err:
            raise ApiError(400, 50035, "Invalid Form Body", err.errors) from None

    async def upsert_command(self, call: Call) -> tuple[int, Any]:
        try:
            command, created = self.commands.upsert(*self._scope(call), call.body)
        except CommandValidationError as err:
            raise ApiError(400, 50035, "Invalid Form Body", err.errors) from None
        return (201 if created else 200), command

    async def get_command(self, call: Call) -> tuple[int, Any]:
        command = self.commands.get(*self._scope(call), call.int_param("command_id"))
        if command is None:
            raise unknown("application command", 10063)
        return 200, command

    async def delete_command(self, call: Call) -> tuple[int, Any]:
        if not self.commands.delete(*self._scope(call), call.int_param("command_id")):
            raise unknown("application command", 10063)
        return 204, None

    # channels and messages

    def _channel(self, call: Call, needed: int = Perm.VIEW_CHANNEL) -> Any:
        channel = self.state.channels.get(call.int_param("channel_id"))
        if channel is None:
            raise unknown("Channel", 10003)
        assert call.app is not None
        if call.app.user_id not in self.state.guilds[channel.guild_id].members:
            raise ApiError(*MISSING_ACCESS)
        perms = self.state.permissions_for(channel.guild_id, call.app.user_id, channel.id)
        if not perms & Perm.VIEW_CHANNEL:
            raise ApiError(*MISSING_ACCESS)
        if perms & needed != needed:
            raise ApiError(*MISSING_PERMISSIONS)
        return channel

    def _message(self, call: Call, channel_id: int) -> dict[str, Any]:
        message = self.state.messages.get(call.int_param("message_id"))
        if message is None or int(message["channel_id"]) != channel_id:
            raise unknown("Message", 10008)
        return message

    async def get_channel(self, call: Call) -> tuple[int, Any]:
        return 200, self._channel(call).to_dict()

    async def list_messages(self, call: Call) -> tuple[int, Any]:
        channel = self._channel(call, Perm.VIEW_CHANNEL | Perm.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(call.query.get("limit", 50))))
        messages = list(reversed(self.state.visible_messages(channel.id)))
        if "before" in call.query:
            messages = [m for m in messages if int(m["id"]) < int(call.query["before"])]
        if "after" in call.query:
            messages = [m for m in messages if int(m["id"]) > int(call.query["after"])]
        return 200, messages[:limit]

    async def create_message(self, call: Call) -> tuple[int, Any]:
        channel = self._channel(call, Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES)
        body = check_message_body(call.body, call.uploads, self.state.ids.next, channel.id)
        require_not_empty(body)
        author = self.state.users[call.app.user_id]  # type: ignore[union-attr]
        extra = {}
        if body.get("message_reference"):
            extra["message_reference"] = body["message_reference"]
        message = self.state.build_message(channel.id, author, body, type_=19 if extra else 0, extra=extra)
        message["flags"] &= 4 | 4096  # only SUPPRESS_EMBEDS / SUPPRESS_NOTIFICATIONS may be set by bots
        self.state.store_message(message)
        self.gateway.dispatch_message_create(message)
        return 200, message

    async def get_message(self, call: Call) -> tuple[int, Any]:
        channel = self._channel(call, Perm.VIEW_CHANNEL | Perm.READ_MESSAGE_HISTORY)
        message = self._message(call, channel.id)
        if message["flags"] & 64:
            raise unknown("Message", 10008)
        return 200, message

    async def edit_message(self, call: Call) -> tuple[int, Any]:
        channel = self._channel(call)
        message = self._message(call, channel.id)
        if int(message["author"]["id"]) != call.app.user_id or message.get("webhook_id"):  # type: ignore[union-attr]
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        body = check_message_body(call.body, call.uploads, self.state.ids.next, channel.id)
        message = self.state.edit_message(int(message["id"]), body)
        self.gateway.dispatch_guild(channel.guild_id, "MESSAGE_UPDATE", message)
        return 200, message

    async def delete_message(self, call: Call) -> tuple[int, Any]:
        channel = self._channel(call)
        message = self._message(call, channel.id)
        own = int(message["author"]["id"]) == call.app.user_id  # type: ignore[union-attr]
        if not own and not self.state.has(channel.guild_id, call.app.user_id, channel.id,  # type: ignore[union-attr]
                                          Perm.MANAGE_MESSAGES):
            raise ApiError(*MISSING_PERMISSIONS)
        self.state.delete_message(int(message["id"]))
        self.gateway.dispatch_guild(channel.guild_id, "MESSAGE_DELETE", {
            "id": message["id"], "channel_id": message["channel_id"], "guild_id": message["guild_id"]})
        return 204, None

    async def typing(self, call: Call) -> tuple[int, Any]:
        self._channel(call, Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES)
        return 204, None

    # guilds

    def _guild(self, call: Call) -> Any:
        guild = self.state.guilds.get(call.int_param("guild_id"))
        if guild is None:
            raise unknown("Guild", 10004)
        if call.app is None or call.app.user_id not in guild.members:
            raise ApiError(*MISSING_ACCESS)
        return guild

    async def get_guild(self, call: Call) -> tuple[int, Any]:
        guild = self._guild(call)
        data = guild.to_dict()
        if call.query.get("with_counts") in ("true", "True", "1"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return 200, data

    async def get_guild_channels(self, call: Call) -> tuple[int, Any]:
        return 200, [c.to_dict() for c in self._guild(call).channels.values()]

    async def get_roles(self, call: Call) -> tuple[int, Any]:
        return 200, [r.to_dict() for r in self._guild(call).roles.values()]

    async def get_member(self, call: Call) -> tuple[int, Any]:
        member = self._guild(call).members.get(call.int_param("user_id"))
        if member is None:
            raise unknown("Member", 10007)
        return 200, member.to_dict()


    async def edit_member(self, call: Call) -> tuple[int, Any]:
        """Only `channel_id` (move to a voice channel, or null: disconnect) is emulated."""
        guild = self._guild(call)
        user_id = call.int_param("user_id")
        member = guild.members.get(user_id)
        if member is None:
            raise unknown("Member", 10007)
        body = call.body if isinstance(call.body, dict) else {}
        others = sorted(set(body) - {"channel_id"})
        if others:
            raise NotEmulated(f"member field(s) {', '.join(others)} of PATCH /guilds/{{id}}/members/{{id}}")
        if "channel_id" in body:
            self._move_member(call, guild, user_id, body["channel_id"])
        return 200, member.to_dict()

    def _move_member(self, call: Call, guild: Any, user_id: int, raw_channel: Any) -> None:
        assert call.app is not None
        me = call.app.user_id
        current = guild.voice_states.get(user_id)
        if current is None:
            raise ApiError(400, 40032, "Target user is not connected to voice.")
        if not self.state.has(guild.id, me, current.channel_id, Perm.MOVE_MEMBERS):
            raise ApiError(*MISSING_PERMISSIONS)
        target = None
        if raw_channel is not None:
            try:
                target = int(raw_channel)
            except (TypeError, ValueError):
                raise ApiError(400, 50035, "Invalid Form Body", {"channel_id": {"_errors": [
                    {"code": "NUMBER_TYPE_COERCE", "message": f"Value \"{raw_channel}\" is not snowflake."}]}})
            channel = guild.channels.get(target)
            if channel is None or channel.type not in (VOICE, STAGE):
                raise ApiError(400, 50035, "Invalid Form Body", {"channel_id": {"_errors": [
                    {"code": "CHANNEL_TYPE_INVALID", "message": "Channel is not a voice channel."}]}})
            # Moving someone needs MOVE_MEMBERS and the right to connect to the target channel.
            if not self.state.has(guild.id, me, target, Perm.VIEW_CHANNEL | Perm.CONNECT | Perm.MOVE_MEMBERS):
                raise ApiError(*MISSING_PERMISSIONS)
        self.voice.move(guild.id, user_id, target, by=me)


class _RateLimited(Exception):
    def __init__(self, retry_after: float, global_: bool, headers: dict[str, str]) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after
        self.global_ = global_
        self.headers = headers


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    return value[4:] if value.startswith("Bot ") else None


def _app_flags(privileged: int) -> int:
    """Application flags announcing which privileged intents are enabled (the *_LIMITED variants)."""
    flags = 0
    if privileged & (1 << 8):
        flags |= 1 << 13
    if privileged & (1 << 1):
        flags |= 1 << 15
    if privileged & (1 << 15):
        flags |= 1 << 19
    return flags


async def _read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    """The JSON body (or multipart `payload_json`) and any uploaded `files[n]` parts."""
    if not request.can_read_body:
        return None, []
    if request.content_type == "multipart/form-data":
        payload: Any = {}
        uploads: list[Upload] = []
        reader = await request.multipart()
        async for part in reader:
            name = part.name or ""  # type: ignore[union-attr]
            if name == "payload_json":
                try:
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                except ValueError:
                    raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            elif name.startswith("files["):
                data = await part.read()  # type: ignore[union-attr]
                uploads.append(Upload(name[6:-1], part.filename or "file",  # type: ignore[union-attr]
                                      len(data), part.headers.get("Content-Type", "application/octet-stream")))
        return payload, uploads
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
