"""`DiscordEmulator`: one aiohttp server speaking Discord's REST v10 and gateway, plus a control API."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from aiohttp import web

from .discord_commands import CommandStore
from .discord_gateway import RECONNECT, Gateway
from .discord_interactions import (
    APPLICATION_COMMAND, AUTOCOMPLETE, MESSAGE_COMPONENT, MODAL_SUBMIT, STRING_SELECT, CommandNotAvailable,
    CommandNotRegistered, InteractionRecord, InteractionResult, InteractionTimeout, build_command_data,
    build_interaction, check_component_use,
)
from .discord_options import InvalidInvocation
from .discord_ratelimit import Faults, RateLimiter
from .discord_rest import RecordedRequest, RestApi, Unimplemented
from .discord_state import (
    CATEGORY, STAGE, TEXT, VOICE, BotApp, Channel, DiscordState, Guild, Overwrite, Perm, Role, User,
)
from .discord_voice import VoiceModeration, VoiceModerator
from .discord_webhooks import InteractionRoutes

log = logging.getLogger(__name__)

__all__ = ["DiscordEmulator", "BotApp", "Guild", "Channel", "Role", "User", "Overwrite", "Perm",
           "InteractionResult", "InteractionTimeout", "CommandNotAvailable", "CommandNotRegistered",
           "InvalidInvocation", "RecordedRequest"]


class DiscordEmulator:
    """An emulated Discord for an unmodified discord.py client, driven by tests through this control API.

    Lifecycle: ``await start()`` / ``await stop()`` or ``async with DiscordEmulator() as emu``; then
    ``api_base`` ("http://127.0.0.1:PORT/api/v10") and ``gateway_url`` ("ws://127.0.0.1:PORT/").
    Options: heartbeat_interval (ms), interaction_deadline (s, None = off; also a settable property),
    interaction_token_ttl (s, follow-up/edit window), rate_limits (False turns buckets off, faults still apply).

    World (sync unless noted; connected bots receive the matching gateway events):
      add_bot(name, privileged_intents=0) -> BotApp        create_guild(name, owner_name="owner") -> Guild
      create_text_channel / create_voice_channel(user_limit=) / create_stage_channel / create_category -> Channel
      create_role(guild_id, name, permissions=0) -> Role   add_member(guild_id, name, roles=None) -> User
      await add_bot_to_guild(app, guild_id, permissions=None)   await set_overwrite(channel_id, target_id, allow, deny)
      await set_role_permissions(guild_id, role_id, permissions)
      await move_member(guild_id, user_id, channel_id|None, by=None) / disconnect_member(guild_id, user_id):
        as a moderator (a human not in voice joins instead); bots: see voice_moderations, on_voice_moderation
      permissions_for(guild_id, user_id, channel_id=None) -> int

    Acting as users (each returns once the bot visibly answered, else raises InteractionTimeout). Like a
    member's client, invoke/autocomplete offer only registered commands (CommandNotRegistered) and only
    option values the registered schema allows (InvalidInvocation says what Discord would refuse); user,
    channel, role and mentionable options take ids (or sandbox objects) and arrive with `data.resolved`:
      await invoke(app, guild_id=, channel_id=, user_id=, command="queue show", options={...}) -> InteractionResult
      await autocomplete(app, ..., command=, options=, focused=) -> list of {"name","value"}
      await press_button(app, guild_id=, channel_id=, user_id=, message_id=, custom_id=) -> InteractionResult
      await submit_modal(app, ..., custom_id=, values={field_custom_id: text}) -> InteractionResult

    Faults: inject_429(method, pattern, count, retry_after, global_), inject_status(method, pattern, status, count),
      set_latency(method, pattern, seconds); await send_reconnect / send_invalid_session(resumable) /
      close_gateway(code) / drop_gateway. Patterns are regexes searched in the path after /api/v10.

    Observing: requests, unimplemented (501s; assert_all_emulated() raises, and so does leaving
      ``async with`` cleanly), interactions, voice_ops[user_id], gateway_stats(app),
      voice_state(guild_id, user_id), messages(channel_id), message(id), commands(app, guild_id=None),
      await wait_until_ready(app), await wait_for(predicate, timeout).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, heartbeat_interval: int = 41250,
                 interaction_deadline: float | None = 3.0, interaction_token_ttl: float = 900.0,
                 rate_limits: bool = True) -> None:
        self.host = host
        self.port = port
        self.state = DiscordState()
        self._changed = asyncio.Event()
        self.state.on_change = self._notify
        self.gateway = Gateway(self.state, heartbeat_interval, self._notify)
        self.command_store = CommandStore(self.state.ids.next)
        self.limiter = RateLimiter()
        self.limiter.enabled = rate_limits
        self.faults = Faults()
        self.interaction_routes = InteractionRoutes(self.state, self.gateway, interaction_deadline,
                                                    interaction_token_ttl)
        self.voice = VoiceModerator(self.state, self.gateway)
        self.rest = RestApi(self.state, self.gateway, self.command_store, self.interaction_routes, self.limiter,
                            self.faults, self.voice)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.gateway.public_url = self.gateway_url
        log.info("emulated Discord listening on %s", self.api_base)

    async def stop(self) -> None:
        await self.gateway.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("emulated Discord stopped")

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        await self.stop()
        if exc_type is None:
            self.assert_all_emulated()

    @property
    def interaction_deadline(self) -> float | None:
        """Seconds after dispatch within which the first callback must arrive (None: no deadline)."""
        return self.interaction_routes.deadline

    @interaction_deadline.setter
    def interaction_deadline(self, seconds: float | None) -> None:
        self.interaction_routes.deadline = seconds

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    # -- world ---------------------------------------------------------------------------------------

    def add_bot(self, name: str, privileged_intents: int = 0) -> BotApp:
        app = self.state.add_bot(name, privileged_intents)
        log.info("bot %s added (user id %s)", name, app.user_id)
        return app

    def create_guild(self, name: str, owner_name: str = "owner") -> Guild:
        return self.state.create_guild(name, owner_name)

    def _create_channel(self, guild_id: int, name: str, type_: int, **kwargs: Any) -> Channel:
        channel = self.state.create_channel(guild_id, name, type_, **kwargs)
        self.gateway.dispatch_guild(guild_id, "CHANNEL_CREATE", channel.to_dict())
        return channel

    def create_text_channel(self, guild_id: int, name: str, overwrites: list[Overwrite] | None = None,
                            parent_id: int | None = None) -> Channel:
        return self._create_channel(guild_id, name, TEXT, overwrites=overwrites, parent_id=parent_id)

    def create_voice_channel(self, guild_id: int, name: str, user_limit: int = 0,
                             overwrites: list[Overwrite] | None = None, parent_id: int | None = None) -> Channel:
        return self._create_channel(guild_id, name, VOICE, user_limit=user_limit, overwrites=overwrites,
                                    parent_id=parent_id)

    def create_stage_channel(self, guild_id: int, name: str, overwrites: list[Overwrite] | None = None) -> Channel:
        return self._create_channel(guild_id, name, STAGE, overwrites=overwrites)

    def create_category(self, guild_id: int, name: str) -> Channel:
        return self._create_channel(guild_id, name, CATEGORY)

    def create_role(self, guild_id: int, name: str, permissions: int = 0) -> Role:
        role = self.state.create_role(guild_id, name, permissions)
        self.gateway.dispatch_guild(guild_id, "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role.to_dict()})
        return role

    def add_member(self, guild_id: int, name: str, roles: list[int] | None = None) -> User:
        user = self.state.add_user(name)
        member = self.state.add_member(guild_id, user, roles)
        self.gateway.dispatch_guild(guild_id, "GUILD_MEMBER_ADD", {**member.to_dict(), "guild_id": str(guild_id)})
        return user

    async def add_bot_to_guild(self, app: BotApp, guild_id: int, permissions: int | None = None) -> None:
        """Like an OAuth2 bot invite: the bot joins, with a managed role when `permissions` is given."""
        user = self.state.users[app.user_id]
        member = self.state.add_member(guild_id, user)
        if permissions is not None:
            role = self.state.create_role(guild_id, app.name, permissions, bot_id=app.user_id)
            member.roles.append(role.id)
            self.gateway.dispatch_guild(guild_id, "GUILD_ROLE_CREATE",
                                        {"guild_id": str(guild_id), "role": role.to_dict()})
        guild = self.state.guild(guild_id)
        for session in self.gateway.live_sessions(app.user_id):
            if session.wants_guild(guild_id):
                session.dispatch("GUILD_CREATE", self.gateway.guild_create(guild, session, joined=True))
        self.gateway.dispatch_guild(guild_id, "GUILD_MEMBER_ADD", {**member.to_dict(), "guild_id": str(guild_id)},
                                    exclude=app.user_id)

    async def set_overwrite(self, channel_id: int, target_id: int, allow: int = 0, deny: int = 0) -> None:
        channel = self.state.channels[channel_id]
        guild = self.state.guild(channel.guild_id)
        type_ = 0 if target_id in guild.roles else 1
        channel.overwrites = [o for o in channel.overwrites if o.id != target_id]
        if allow or deny:
            channel.overwrites.append(Overwrite(target_id, type_, allow, deny))
        self.gateway.dispatch_guild(guild.id, "CHANNEL_UPDATE", channel.to_dict())

    async def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        role = self.state.guild(guild_id).roles[role_id]
        role.permissions = permissions
        self.gateway.dispatch_guild(guild_id, "GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": role.to_dict()})

    async def move_member(self, guild_id: int, user_id: int, channel_id: int | None, *,
                          by: int | None = None) -> None:
        """Like a moderator: move a member who is in voice to `channel_id` (None: disconnect them).

        A human member who is not in voice joins `channel_id` instead, as if they clicked it. A bot must
        be in voice: it keeps its voice session and gets a new VOICE_SERVER_UPDATE (moved), or only a
        VOICE_STATE_UPDATE with channel_id null (disconnected); see `voice_moderations`. No permission
        checks (the REST route PATCH /guilds/{id}/members/{id} has them).
        """
        if channel_id is None:
            await self.disconnect_member(guild_id, user_id, by=by)
            return
        if self.state.channels[channel_id].type not in (VOICE, STAGE):
            raise ValueError(f"channel {channel_id} is not a voice channel")
        if user_id not in self.state.guild(guild_id).voice_states and not self.state.users[user_id].bot:
            self.voice.join(guild_id, user_id, channel_id)
            return
        self.voice.move(guild_id, user_id, channel_id, by=by)

    async def disconnect_member(self, guild_id: int, user_id: int, *, by: int | None = None) -> None:
        """Like a moderator's "Disconnect": VOICE_STATE_UPDATE with channel_id null. A no-op for a member
        who is not in voice (a human leaving by themself looks the same); a bot must be in voice."""
        if user_id not in self.state.guild(guild_id).voice_states and not self.state.users[user_id].bot:
            return
        self.voice.move(guild_id, user_id, None, by=by)

    @property
    def voice_moderations(self) -> list[VoiceModeration]:
        """Every time a bot was moved or disconnected by someone else (REST or control API), oldest first."""
        return self.voice.moderations

    def on_voice_moderation(self, listener: Callable[[VoiceModeration], None]) -> None:
        """Call `listener(event)` whenever a bot is moved or disconnected by someone else (e.g. to make
        its Lavalink node report WebSocketClosedEvent 4014)."""
        self.voice.listeners.append(listener)

    def voice_server(self, app: BotApp | int, guild_id: int) -> dict[str, str] | None:
        """The voice credentials (token, endpoint, session_id) Discord last issued to this bot (an app or its
        user id) in this guild; None once it left or was disconnected."""
        user_id = app if isinstance(app, int) else app.user_id
        return self.gateway.voice_servers.get((user_id, guild_id))

    def permissions_for(self, guild_id: int, user_id: int, channel_id: int | None = None) -> int:
        return self.state.permissions_for(guild_id, user_id, channel_id)

    # -- acting as users -----------------------------------------------------------------------------

    def _dispatch_interaction(self, app: BotApp, record: InteractionRecord) -> None:
        self.interaction_routes.add(record)
        record.dispatched_at = time.monotonic()
        self.gateway.dispatch_to_bot(app.user_id, "INTERACTION_CREATE", record.payload, record.guild_id)

    async def _await_answer(self, record: InteractionRecord, timeout: float) -> InteractionResult:
        result = InteractionResult(record, self.state, self.wait_for)
        try:
            await self.wait_for(lambda: record.answered, timeout)
        except TimeoutError:
            raise InteractionTimeout(f"no visible answer to interaction {record.id} within {timeout}s",
                                     result) from None
        return result

    def _command_data(self, app: BotApp, guild_id: int, channel_id: int, user_id: int, command: str,
                      options: dict[str, Any] | None, focused: str | None = None) -> dict[str, Any]:
        """Like a member's Discord client: only registered commands, only values the schema allows."""
        name = command.split()[0] if command.split() else ""
        registered = (self.command_store.find(app.application_id, guild_id, name)
                      or self.command_store.find(app.application_id, None, name))
        if registered is None:
            known = sorted({c["name"] for scope in (guild_id, None)
                            for c in self.command_store.list(app.application_id, scope)})
            raise CommandNotRegistered(
                f"/{name} is not registered for {app.name} (globally or in guild {guild_id}), so no Discord "
                f"client shows it; register the commands first (register_commands.py). "
                f"Registered: {', '.join(known) or 'none'}")
        perms = self.state.permissions_for(guild_id, user_id, channel_id)
        if not perms & Perm.USE_APPLICATION_COMMANDS:
            raise CommandNotAvailable(f"user {user_id} lacks Use Application Commands in channel {channel_id}")
        if registered.get("default_member_permissions") is not None:
            needed = int(registered["default_member_permissions"])
            if self.state.permissions_for(guild_id, user_id) & needed != needed:
                raise CommandNotAvailable(f"/{name} is hidden from user {user_id} (default_member_permissions)")
        return build_command_data(self.state, app, command, options, registered, guild_id=guild_id,
                                  channel_id=channel_id, user_id=user_id, focused=focused)

    async def invoke(self, app: BotApp, *, guild_id: int, channel_id: int, user_id: int, command: str,
                     options: dict[str, Any] | None = None, timeout: float = 10.0) -> InteractionResult:
        data = self._command_data(app, guild_id, channel_id, user_id, command, options)
        record = build_interaction(self.state, app, type_=APPLICATION_COMMAND, guild_id=guild_id,
                                   channel_id=channel_id, user_id=user_id, data=data)
        log.info("invoke /%s as user %s for %s", command, user_id, app.name)
        self._dispatch_interaction(app, record)
        return await self._await_answer(record, timeout)

    async def autocomplete(self, app: BotApp, *, guild_id: int, channel_id: int, user_id: int, command: str,
                           options: dict[str, Any] | None = None, focused: str, timeout: float = 10.0,
                           ) -> list[dict[str, Any]]:
        data = self._command_data(app, guild_id, channel_id, user_id, command, options, focused)
        record = build_interaction(self.state, app, type_=AUTOCOMPLETE, guild_id=guild_id, channel_id=channel_id,
                                   user_id=user_id, data=data)
        self._dispatch_interaction(app, record)
        return (await self._await_answer(record, timeout)).choices

    async def press_button(self, app: BotApp, *, guild_id: int, channel_id: int | None = None, user_id: int,
                           message_id: int, custom_id: str, component_type: int = 2,
                           values: list[str] | None = None, timeout: float = 10.0) -> InteractionResult:
        message = self.state.messages.get(message_id)
        if message is None:
            raise ValueError(f"no message {message_id}")
        if custom_id not in _custom_ids(message.get("components") or []):
            raise ValueError(f"message {message_id} has no component {custom_id!r}")
        check_component_use(message, user_id, custom_id, component_type, values)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        record = build_interaction(self.state, app, type_=MESSAGE_COMPONENT, guild_id=guild_id,
                                   channel_id=channel_id or int(message["channel_id"]), user_id=user_id, data=data,
                                   message=dict(message))
        self._dispatch_interaction(app, record)
        return await self._await_answer(record, timeout)

    async def select(self, app: BotApp, *, guild_id: int, channel_id: int | None = None, user_id: int,
                     message_id: int, custom_id: str, values: list[str], timeout: float = 10.0) -> InteractionResult:
        """Pick `values` (option values) in a string select menu of a message, as a member."""
        return await self.press_button(app, guild_id=guild_id, channel_id=channel_id, user_id=user_id,
                                       message_id=message_id, custom_id=custom_id, component_type=STRING_SELECT,
                                       values=values, timeout=timeout)

    async def submit_modal(self, app: BotApp, *, guild_id: int, channel_id: int, user_id: int, custom_id: str,
                           values: dict[str, str], timeout: float = 10.0) -> InteractionResult:
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        record = build_interaction(self.state, app, type_=MODAL_SUBMIT, guild_id=guild_id, channel_id=channel_id,
                                   user_id=user_id, data={"custom_id": custom_id, "components": rows})
        self._dispatch_interaction(app, record)
        return await self._await_answer(record, timeout)

    # -- faults --------------------------------------------------------------------------------------

    def inject_429(self, method: str, pattern: str, count: int = 1, retry_after: float = 0.5,
                   global_: bool = False) -> None:
        self.faults.add(method, pattern, count=count, status=429, retry_after=retry_after, global_=global_)

    def inject_status(self, method: str, pattern: str, status: int = 502, count: int = 1) -> None:
        self.faults.add(method, pattern, count=count, status=status)

    def set_latency(self, method: str, pattern: str, seconds: float) -> None:
        """Delay matching requests before they are handled (0 clears)."""
        self.faults.set_latency(method, pattern, seconds)

    async def send_reconnect(self, app: BotApp) -> int:
        return self.gateway.send_op(app.user_id, RECONNECT)

    async def send_invalid_session(self, app: BotApp, resumable: bool = False) -> int:
        return self.gateway.invalidate(app.user_id, resumable)

    async def close_gateway(self, app: BotApp, code: int = 4000, reason: str = "") -> int:
        return self.gateway.close(app.user_id, code, reason)

    async def drop_gateway(self, app: BotApp) -> int:
        return self.gateway.drop(app.user_id)

    # -- observing -----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.rest.requests

    @property
    def unimplemented(self) -> list[Unimplemented]:
        """Requests answered 501 because the sandbox does not emulate them; each one is a test failure."""
        return self.rest.unimplemented

    @property
    def unknown_routes(self) -> list[tuple[str, str]]:
        """(method, path) of `unimplemented` (older name)."""
        return [(u.method, u.path) for u in self.rest.unimplemented]

    def assert_all_emulated(self) -> None:
        """Raise AssertionError naming every request the sandbox could not answer faithfully (501)."""
        if self.rest.unimplemented:
            lines = "\n".join(f"  {u.method} {u.path}: {u.reason}" for u in self.rest.unimplemented)
            raise AssertionError(f"the bot used Discord routes the sandbox does not emulate "
                                 f"(answered 501):\n{lines}")

    @property
    def voice_ops(self) -> dict[int, list[dict[str, Any]]]:
        return self.gateway.voice_ops

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self.interaction_routes.records.values())

    def gateway_stats(self, app: BotApp) -> dict[str, Any]:
        """Counters for one bot, plus `connected`: whether it holds an open gateway connection now."""
        stats = self.gateway.stats_for(app.user_id).as_dict()
        stats["connected"] = any(s.conn is not None for s in self.gateway.live_sessions(app.user_id))
        return stats

    def voice_state(self, guild_id: int, user_id: int) -> dict[str, Any] | None:
        state = self.state.guild(guild_id).voice_states.get(user_id)
        return None if state is None else state.to_dict()

    def messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Channel history, oldest first, as other users see it (no ephemeral messages)."""
        return self.state.visible_messages(channel_id)

    def message(self, message_id: int) -> dict[str, Any] | None:
        return self.state.messages.get(message_id)

    def commands(self, app: BotApp, guild_id: int | None = None) -> list[dict[str, Any]]:
        return self.command_store.list(app.application_id, guild_id)

    async def wait_until_ready(self, app: BotApp, timeout: float = 15.0) -> None:
        """Until the bot has identified and every GUILD_CREATE after READY has been written to it."""
        await self.wait_for(lambda: self.gateway.is_ready(app.user_id), timeout)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until predicate() is true (re-checked on every state change); TimeoutError otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _custom_ids(components: list[dict[str, Any]]) -> set[str]:
    ids: set[str] = set()
    for component in components:
        if component.get("custom_id"):
            ids.add(component["custom_id"])
        ids |= _custom_ids(component.get("components") or [])
    return ids
