"""Interactions: the INTERACTION_CREATE payloads the sandbox dispatches and what the bot answered."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .discord_options import InvalidInvocation, OptionChecker
from .discord_state import BotApp, DiscordState, make_interaction_token

log = logging.getLogger(__name__)

# Interaction types and callback types (reference §3.1).
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, AUTOCOMPLETE_RESULT, MODAL = 1, 4, 5, 6, 7, 8, 9
EPHEMERAL, LOADING = 1 << 6, 1 << 7
BUTTON, STRING_SELECT = 2, 3  # component types (reference §2.8)
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


@dataclass
class InteractionRecord:
    """One dispatched interaction and everything the bot did with it."""

    id: int
    token: str
    application_id: int
    type: int
    guild_id: int
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    dispatched_at: float = field(default_factory=time.monotonic)
    component_message_id: int | None = None
    callback_type: int | None = None
    callback_data: dict[str, Any] = field(default_factory=dict)
    callback_at: float | None = None
    response_message_id: int | None = None
    original_message_id: int | None = None
    original_edits: int = 0
    followups: list[dict[str, Any]] = field(default_factory=list)
    callback_attempts: list[int] = field(default_factory=list)  # HTTP status of every callback POST

    @property
    def answered(self) -> bool:
        """True once a user would see an answer (deferred ones need an edit or a follow-up)."""
        if self.callback_type is None:
            return False
        if self.callback_type in (DEFERRED_MESSAGE, DEFERRED_UPDATE):
            return self.original_edits > 0 or bool(self.followups)
        return True


class InteractionResult:
    """What the bot answered to an interaction, read live from the emulator's state."""

    def __init__(self, record: InteractionRecord, state: DiscordState,
                 waiter: Callable[[Callable[[], bool], float], Awaitable[None]]) -> None:
        self.record = record
        self._state = state
        self._wait = waiter
        self._snapshot: dict[str, Any] = {}

    @property
    def interaction_id(self) -> int:
        return self.record.id

    @property
    def callback_type(self) -> int | None:
        return self.record.callback_type

    @property
    def deferred(self) -> bool:
        return self.record.callback_type in (DEFERRED_MESSAGE, DEFERRED_UPDATE)

    @property
    def message_id(self) -> int | None:
        return self.record.original_message_id

    @property
    def message(self) -> dict[str, Any] | None:
        """The visible answer: the response/updated/edited message, else the first follow-up."""
        if self.record.original_message_id is not None and (self.deferred is False or self.record.original_edits):
            message = self._state.messages.get(self.record.original_message_id)
            if message is not None:
                self._snapshot = message
                return message
            return self._snapshot or None
        if self.record.followups:
            return self.record.followups[0]
        return None

    @property
    def content(self) -> str | None:
        message = self.message
        if message is None:
            return self.record.callback_data.get("content")
        return message.get("content")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        message = self.message
        return list((message or self.record.callback_data).get("embeds") or [])

    @property
    def components(self) -> list[dict[str, Any]]:
        message = self.message
        return list((message or self.record.callback_data).get("components") or [])

    @property
    def flags(self) -> int:
        message = self.message
        return int((message or self.record.callback_data).get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def followups(self) -> list[dict[str, Any]]:
        return self.record.followups

    @property
    def choices(self) -> list[dict[str, Any]]:
        return list(self.record.callback_data.get("choices") or [])

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.record.callback_data if self.record.callback_type == MODAL else None

    @property
    def latency(self) -> float | None:
        if self.record.callback_at is None:
            return None
        return self.record.callback_at - self.record.dispatched_at

    async def wait_followup(self, n: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until at least n follow-ups exist; returns the n-th."""
        await self._wait(lambda: len(self.record.followups) >= n, timeout)
        return self.record.followups[n - 1]

    def __repr__(self) -> str:
        return (f"<InteractionResult id={self.record.id} callback={self.callback_type} "
                f"content={self.content!r} followups={len(self.followups)}>")


class InteractionTimeout(TimeoutError):
    """The bot gave no visible answer in time; `received` holds what did arrive."""

    def __init__(self, message: str, received: InteractionResult) -> None:
        super().__init__(message)
        self.received = received


class CommandNotAvailable(InvalidInvocation):
    """Discord would not show this command to this member (default_member_permissions, no permission)."""


class CommandNotRegistered(CommandNotAvailable):
    """The application has no such command (globally or in the guild): no client would show it."""


def build_command_data(state: DiscordState, app: BotApp, command: str, options: dict[str, Any] | None,
                       registered: dict[str, Any], *, guild_id: int, channel_id: int, user_id: int,
                       focused: str | None = None) -> dict[str, Any]:
    """`data` of a chat-input interaction; "queue show" is a subcommand, "a b c" group + subcommand.

    Options are checked against the registered schema (`InvalidInvocation` when Discord would refuse them).
    """
    checker = OptionChecker(state, guild_id, channel_id, user_id, registered, app.name)
    built = checker.build(command, dict(options or {}), focused)
    data: dict[str, Any] = {"id": registered["id"], "name": registered["name"], "type": 1, "options": built.options}
    if built.resolved:
        data["resolved"] = built.resolved
    if registered.get("guild_id") is not None:
        data["guild_id"] = registered["guild_id"]
    return data


def build_interaction(state: DiscordState, app: BotApp, *, type_: int, guild_id: int, channel_id: int,
                      user_id: int, data: dict[str, Any], message: dict[str, Any] | None = None) -> InteractionRecord:
    """An INTERACTION_CREATE payload shaped like real Discord's (reference §2.8)."""
    interaction_id = state.ids.next(at=time.time())  # created_at: discord.py's cooldowns measure time with it
    token = make_interaction_token(interaction_id)
    guild = state.guild(guild_id)
    member = guild.members.get(user_id)
    if member is None:
        raise KeyError(f"user {user_id} is not a member of guild {guild_id}")
    channel = state.channels[channel_id]
    payload: dict[str, Any] = {
        "id": str(interaction_id), "application_id": str(app.application_id), "type": type_, "token": token,
        "version": 1, "guild_id": str(guild_id), "channel_id": str(channel_id), "channel": channel.to_dict(),
        "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
        "member": member.to_dict(permissions=state.permissions_for(guild_id, user_id, channel_id)),
        "app_permissions": str(state.permissions_for(guild_id, app.user_id, channel_id)),
        "locale": "en-US", "guild_locale": "en-US", "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        "entitlements": [], "entitlement_sku_ids": [], "authorizing_integration_owners": {"0": str(guild_id)},
        "context": 0, "data": data,
    }
    if message is not None:
        payload["message"] = message
    return InteractionRecord(id=interaction_id, token=token, application_id=app.application_id, type=type_,
                             guild_id=guild_id, channel_id=channel_id, user_id=user_id, payload=payload,
                             component_message_id=int(message["id"]) if message else None)


def _find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        found = _find_component(component.get("components") or [], custom_id)
        if found is not None:
            return found
    return None


def check_component_use(message: dict[str, Any], user_id: int, custom_id: str, component_type: int,
                        values: list[str] | None) -> None:
    """What a member's Discord client lets them do with a message's component, else InvalidInvocation.

    An ephemeral message is shown only to the member whose interaction it answers, so nobody else can use
    its components. A disabled component cannot be used. A button is pressed (no values); a string select
    sends the values of the options picked, between its min_values (default 1) and max_values (default 1).
    """
    if int(message.get("flags") or 0) & EPHEMERAL:
        owner = ((message.get("interaction_metadata") or {}).get("user") or {}).get("id")
        if owner is None or int(owner) != user_id:
            raise InvalidInvocation(f"message {message['id']} is ephemeral: only user {owner} can see and use it")
    component = _find_component(message.get("components") or [], custom_id)
    assert component is not None  # the caller checked the custom id exists
    if component.get("type") != component_type:
        raise InvalidInvocation(f"component {custom_id!r} is of type {component.get('type')}, not {component_type}")
    if component.get("disabled"):
        raise InvalidInvocation(f"component {custom_id!r} is disabled")
    if component_type == STRING_SELECT:
        offered = [o.get("value") for o in component.get("options") or []]
        picked = list(values or [])
        low, high = int(component.get("min_values", 1)), int(component.get("max_values", 1))
        if not low <= len(picked) <= high or len(set(picked)) != len(picked):
            raise InvalidInvocation(f"select {custom_id!r} takes {low} to {high} distinct values, got {picked}")
        if any(value not in offered for value in picked):
            raise InvalidInvocation(f"select {custom_id!r} offers only {offered}, got {picked}")
    elif values is not None:
        raise InvalidInvocation(f"a button ({custom_id!r}) sends no values")
