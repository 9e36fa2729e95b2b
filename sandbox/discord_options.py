"""What a Discord client lets a member send for a slash command, checked against the registered schema.

A test that invokes a command through the control API gets the same refusals a member would: a command
that is not registered, a subcommand or option the schema does not have, a missing required option, a
value of the wrong type, out of range, too long or not one of the choices, an autocomplete request for
an option without autocomplete. Each raises `InvalidInvocation` with a message saying what to fix. The
accepted options come back in Discord's wire shape, with `data.resolved` for user, member, channel and
role values (resolved.users/members/channels/roles keyed by id, as discord.py reads them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .discord_state import DiscordState

# Application command option types.
SUBCOMMAND, GROUP, STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = range(1, 12)
TYPE_NAMES = {STRING: "string", INTEGER: "integer", BOOLEAN: "boolean", USER: "user", CHANNEL: "channel",
              ROLE: "role", MENTIONABLE: "mentionable", NUMBER: "number", ATTACHMENT: "attachment"}
MAX_SAFE_INTEGER = 2 ** 53  # Discord's integer options are limited to +-2^53
MAX_STRING = 6000


class InvalidInvocation(ValueError):
    """Discord's client would not send this invocation (unknown command path, bad option value...)."""


@dataclass
class Built:
    """The `options` and `resolved` of an interaction's `data`."""

    options: list[dict[str, Any]]
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)


def _snowflake(value: Any) -> int | None:
    """An id from an int, a digit string or an object with `.id` (User, Role, Channel of the sandbox)."""
    if hasattr(value, "id") and not isinstance(value, (str, int)):
        value = value.id
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class OptionChecker:
    """Checks one invocation of one registered command, as `member` in `channel_id` of `guild_id`."""

    def __init__(self, state: DiscordState, guild_id: int, channel_id: int, user_id: int, command: dict[str, Any],
                 app_name: str) -> None:
        self.state = state
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.user_id = user_id
        self.command = command
        self.app_name = app_name
        self.resolved: dict[str, dict[str, Any]] = {}

    def fail(self, where: str, message: str) -> InvalidInvocation:
        return InvalidInvocation(f"Discord would refuse /{where} for {self.app_name}: {message}")

    # -- command path --------------------------------------------------------------------------------

    def build(self, path: str, options: dict[str, Any], focused: str | None) -> Built:
        parts = path.split()
        schema = list(self.command.get("options") or [])
        nested: list[tuple[str, int]] = []
        for depth in range(3):
            subs = {o["name"]: o for o in schema if o.get("type") in (SUBCOMMAND, GROUP)}
            if not subs:
                break
            if len(parts) <= depth + 1:
                raise self.fail(path, f"pick a subcommand: {', '.join(' '.join([*parts, s]) for s in subs)}")
            chosen = subs.get(parts[depth + 1])
            if chosen is None:
                raise self.fail(path, f"no subcommand {parts[depth + 1]!r}; registered: {', '.join(subs)}")
            nested.append((chosen["name"], chosen["type"]))
            schema = list(chosen.get("options") or [])
        if len(parts) > len(nested) + 1:
            raise self.fail(path, f"{' '.join(parts[:len(nested) + 1])!r} has no subcommand {parts[len(nested) + 1]!r}")
        leaf = self._leaf(path, schema, options, focused)
        for name, kind in reversed(nested):
            leaf = [{"name": name, "type": kind, "options": leaf}]
        return Built(leaf, self.resolved)

    def _leaf(self, path: str, schema: list[dict[str, Any]], options: dict[str, Any],
              focused: str | None) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema}
        given = {k: v for k, v in options.items() if v is not None}
        unknown = [k for k in given if k not in by_name]
        if unknown:
            known = ", ".join(f"{o['name']} ({TYPE_NAMES.get(o.get('type'), o.get('type'))})" for o in schema)
            raise self.fail(path, f"unknown option(s) {', '.join(unknown)}; registered options: {known or 'none'}")
        if focused is not None:
            opt = by_name.get(focused)
            if opt is None:
                raise self.fail(path, f"focused option {focused!r} is not an option of this command")
            if not opt.get("autocomplete"):
                raise self.fail(path, f"option {focused!r} has no autocomplete, so Discord sends no autocomplete "
                                      "interaction for it")
            given.setdefault(focused, "")
        else:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in given]
            if missing:
                raise self.fail(path, f"required option(s) missing: {', '.join(missing)}")
        built = []
        for name, value in given.items():  # in the order the member filled them in
            opt = by_name[name]
            if name == focused:  # what the member has typed so far, unchecked, as a string
                built.append({"name": name, "type": opt["type"], "value": str(value), "focused": True})
                continue
            built.append({"name": name, "type": opt["type"], "value": self._value(path, opt, value)})
        return built

    # -- values --------------------------------------------------------------------------------------

    def _value(self, path: str, opt: dict[str, Any], value: Any) -> Any:
        kind, name = opt.get("type"), opt["name"]
        where = f"option {name!r} ({TYPE_NAMES.get(kind, kind)})"
        if kind == STRING:
            if not isinstance(value, str):
                raise self.fail(path, f"{where} takes text, got {value!r}")
            low, high = opt.get("min_length") or 0, opt.get("max_length") or MAX_STRING
            if not value:
                raise self.fail(path, f"{where}: Discord sends no empty text; leave the option out instead")
            if not low <= len(value) <= high:
                raise self.fail(path, f"{where} must be {low} to {high} characters long, got {len(value)}")
        elif kind in (INTEGER, NUMBER):
            ok = isinstance(value, int) if kind == INTEGER else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise self.fail(path, f"{where} takes {'a whole number' if kind == INTEGER else 'a number'}, "
                                      f"got {value!r}")
            low, high = opt.get("min_value"), opt.get("max_value")
            low = -MAX_SAFE_INTEGER if low is None else low
            high = MAX_SAFE_INTEGER if high is None else high
            if not low <= value <= high:
                raise self.fail(path, f"{where} must be between {low} and {high}, got {value!r}")
        elif kind == BOOLEAN:
            if not isinstance(value, bool):
                raise self.fail(path, f"{where} takes True or False, got {value!r}")
        elif kind in (USER, CHANNEL, ROLE, MENTIONABLE):
            return self._entity(path, where, kind, opt, value)
        else:
            raise self.fail(path, f"{where}: option type {kind} is not emulated by the sandbox")
        choices = opt.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            shown = ", ".join(repr(c["value"]) for c in choices)
            raise self.fail(path, f"{where} must be one of the choices {shown}, got {value!r}")
        return value

    def _entity(self, path: str, where: str, kind: int, opt: dict[str, Any], value: Any) -> str:
        snowflake = _snowflake(value)
        guild = self.state.guild(self.guild_id)
        if snowflake is None:
            raise self.fail(path, f"{where} takes an id (or a sandbox User/Role/Channel), got {value!r}")
        if kind in (USER, MENTIONABLE) and snowflake in self.state.users:
            self._resolve_user(snowflake)
        elif kind in (ROLE, MENTIONABLE) and snowflake in guild.roles:
            self.resolved.setdefault("roles", {})[str(snowflake)] = guild.roles[snowflake].to_dict()
        elif kind == CHANNEL and snowflake in guild.channels:
            channel = guild.channels[snowflake]
            allowed = opt.get("channel_types")
            if allowed and channel.type not in allowed:
                raise self.fail(path, f"{where} only offers channel types {allowed}; #{channel.name} is type "
                                      f"{channel.type}")
            data = {k: v for k, v in channel.to_dict().items() if k != "permission_overwrites"}
            data["permissions"] = str(self.state.permissions_for(self.guild_id, self.user_id, channel.id))
            self.resolved.setdefault("channels", {})[str(snowflake)] = data
        else:
            what = {USER: "user", ROLE: "role of this guild", CHANNEL: "channel of this guild",
                    MENTIONABLE: "user or role of this guild"}[kind]
            raise self.fail(path, f"{where}: {snowflake} is no {what}")
        return str(snowflake)

    def _resolve_user(self, user_id: int) -> None:
        self.resolved.setdefault("users", {})[str(user_id)] = self.state.users[user_id].to_dict()
        member = self.state.member(self.guild_id, user_id)
        if member is not None:  # a partial member: no user, deaf or mute; permissions in this channel
            data = member.to_dict(with_user=False,
                                  permissions=self.state.permissions_for(self.guild_id, user_id, self.channel_id))
            for key in ("deaf", "mute"):
                data.pop(key, None)
            self.resolved.setdefault("members", {})[str(user_id)] = data
