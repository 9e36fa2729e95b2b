"""Registered application commands (global and per guild), validated the way Discord validates them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[-_\w]{1,32}$")
MAX_COMMANDS = 100
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_LENGTH = 6000
CHAT_INPUT = 1
SUBCOMMAND, SUBCOMMAND_GROUP, STRING, INTEGER, CHANNEL, NUMBER = 1, 2, 3, 4, 7, 10


class CommandValidationError(Exception):
    """Carries Discord's nested `errors` object for a 50035 Invalid Form Body answer."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("Invalid Form Body")
        self.errors = errors


def _err(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _check_name(name: Any, *, chat_input: bool) -> dict[str, Any] | None:
    if not isinstance(name, str) or not name:
        return _err("BASE_TYPE_REQUIRED", "This field is required")
    if chat_input:
        if not NAME_RE.match(name) or name.lower() != name:
            return _err("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    elif not 1 <= len(name) <= 32:
        return _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    return None


def _check_description(desc: Any, *, chat_input: bool) -> dict[str, Any] | None:
    desc = desc or ""
    if chat_input and not 1 <= len(desc) <= 100:
        return _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    if not chat_input and desc:
        return _err("APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION", "Context menu commands cannot have description")
    return None


def _check_value_fields(opt: dict[str, Any]) -> dict[str, Any]:
    """Discord's checks of an option's type, choices, ranges and lengths (errors by field)."""
    kind, errors = opt.get("type"), {}
    if kind not in range(1, 12):
        return {"type": _err("BASE_TYPE_CHOICES", "Value must be one of {1, 2, ..., 11}.")}
    choices = opt.get("choices")
    if choices:
        value_type = {STRING: str, INTEGER: int, NUMBER: (int, float)}.get(kind)
        if value_type is None:
            errors["choices"] = _err("APPLICATION_COMMAND_OPTION_CHOICES_INVALID",
                                     "Only string, integer and number options can have choices")
        elif len(choices) > MAX_CHOICES:
            errors["choices"] = _err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CHOICES} or fewer in length.")
        elif not all(isinstance(c.get("value"), value_type) and not isinstance(c.get("value"), bool)
                     for c in choices):
            errors["choices"] = _err("APPLICATION_COMMAND_OPTION_CHOICE_TYPE", "Choice values must match the "
                                                                               "option type")
        if opt.get("autocomplete"):
            errors["autocomplete"] = _err("APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
                                          "Autocomplete cannot be enabled on an option with choices")
    for low_key, high_key, types, floor in (("min_value", "max_value", (INTEGER, NUMBER), None),
                                            ("min_length", "max_length", (STRING,), 0)):
        low, high = opt.get(low_key), opt.get(high_key)
        if (low is not None or high is not None) and kind not in types:
            errors[low_key if low is not None else high_key] = _err(
                "APPLICATION_COMMAND_OPTION_INVALID_FIELD", f"{low_key}/{high_key} do not apply to this type")
        elif floor is not None and not (floor <= (low or 0) <= MAX_LENGTH and 1 <= (high or 1) <= MAX_LENGTH):
            errors[low_key] = _err("NUMBER_TYPE_MAX", f"Lengths must be between {floor} and {MAX_LENGTH}")
        elif low is not None and high is not None and low > high:
            errors[low_key] = _err("NUMBER_TYPE_MAX", f"{low_key} must not be greater than {high_key}")
    if opt.get("channel_types") and kind != CHANNEL:
        errors["channel_types"] = _err("APPLICATION_COMMAND_OPTION_INVALID_FIELD",
                                       "channel_types only apply to channel options")
    return errors


def _validate_options(options: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    if len(options) > MAX_OPTIONS:
        return _err("BASE_TYPE_BAD_LENGTH", f"Must be {MAX_OPTIONS} or fewer in length.")
    seen: set[str] = set()
    optional_seen = False
    for i, opt in enumerate(options):
        oerr: dict[str, Any] = {}
        if (e := _check_name(opt.get("name"), chat_input=True)) is not None:
            oerr["name"] = e
        elif opt["name"] in seen:
            oerr["name"] = _err("APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option name already exists")
        seen.add(str(opt.get("name")))
        if (e := _check_description(opt.get("description"), chat_input=True)) is not None:
            oerr["description"] = e
        oerr.update(_check_value_fields(opt))
        if opt.get("type") in (SUBCOMMAND, SUBCOMMAND_GROUP):
            sub = _validate_options(list(opt.get("options") or []))
            if sub:
                oerr["options"] = sub
        elif opt.get("required"):
            if optional_seen:
                oerr["required"] = _err("APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                        "Required options must be placed before non-required options")
        else:
            optional_seen = True
        if oerr:
            errors[str(i)] = oerr
    return errors


def validate_command(payload: Any) -> dict[str, Any]:
    """Errors for one command payload ({} when valid)."""
    if not isinstance(payload, dict):
        return _err("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
    chat_input = int(payload.get("type", CHAT_INPUT)) == CHAT_INPUT
    errors: dict[str, Any] = {}
    if (e := _check_name(payload.get("name"), chat_input=chat_input)) is not None:
        errors["name"] = e
    if (e := _check_description(payload.get("description"), chat_input=chat_input)) is not None:
        errors["description"] = e
    if chat_input:
        opt_errors = _validate_options(list(payload.get("options") or []))
        if opt_errors:
            errors["options"] = opt_errors
    return errors


@dataclass
class CommandStore:
    """Commands per (application id, guild id or None), keyed by (type, name) as Discord keys them."""

    new_id: Callable[[], int]
    scopes: dict[tuple[int, int | None], dict[tuple[int, str], dict[str, Any]]] = field(default_factory=dict)

    def list(self, app_id: int, guild_id: int | None) -> list[dict[str, Any]]:
        return list(self.scopes.get((app_id, guild_id), {}).values())

    def find(self, app_id: int, guild_id: int | None, name: str, type_: int = CHAT_INPUT) -> dict[str, Any] | None:
        return self.scopes.get((app_id, guild_id), {}).get((type_, name))

    def _stored(self, app_id: int, guild_id: int | None, payload: dict[str, Any],
                previous: dict[str, Any] | None) -> dict[str, Any]:
        dmp = payload.get("default_member_permissions")
        cmd: dict[str, Any] = {
            "id": previous["id"] if previous else str(self.new_id()),
            "application_id": str(app_id), "version": str(self.new_id()),
            "type": int(payload.get("type", CHAT_INPUT)), "name": payload["name"],
            "name_localizations": payload.get("name_localizations"),
            "description": payload.get("description") or "",
            "description_localizations": payload.get("description_localizations"),
            "default_member_permissions": None if dmp is None else str(dmp),
            "dm_permission": payload.get("dm_permission", True), "nsfw": bool(payload.get("nsfw", False)),
            "contexts": payload.get("contexts"), "integration_types": payload.get("integration_types") or [0],
        }
        if payload.get("options"):
            cmd["options"] = payload["options"]
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    def bulk_overwrite(self, app_id: int, guild_id: int | None, payloads: Any) -> list[dict[str, Any]]:
        if not isinstance(payloads, list):
            raise CommandValidationError(_err("MODEL_TYPE_CONVERT", "Only iterables may be used in a ListType"))
        if len(payloads) > MAX_COMMANDS:
            raise CommandValidationError(_err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_COMMANDS} or fewer in length."))
        errors = {str(i): e for i, p in enumerate(payloads) if (e := validate_command(p))}
        keys = [(int(p.get("type", CHAT_INPUT)), p["name"]) for p in payloads]
        for i, key in enumerate(keys):
            if keys.index(key) != i:
                errors.setdefault(str(i), {})["name"] = _err("APPLICATION_COMMANDS_DUPLICATE_NAME",
                                                             f"Application command names must be unique: {key[1]}")
        if errors:
            raise CommandValidationError(errors)
        old = self.scopes.get((app_id, guild_id), {})
        new = {key: self._stored(app_id, guild_id, p, old.get(key)) for key, p in zip(keys, payloads)}
        self.scopes[(app_id, guild_id)] = new
        log.info("app %s: %d commands overwritten (guild=%s)", app_id, len(new), guild_id)
        return list(new.values())

    def upsert(self, app_id: int, guild_id: int | None, payload: Any) -> tuple[dict[str, Any], bool]:
        """Create or replace one command; returns (command, created)."""
        errors = validate_command(payload)
        if errors:
            raise CommandValidationError(errors)
        scope = self.scopes.setdefault((app_id, guild_id), {})
        key = (int(payload.get("type", CHAT_INPUT)), payload["name"])
        if key not in scope and len(scope) >= MAX_COMMANDS:
            raise CommandValidationError(_err("APPLICATION_COMMANDS_TOO_MANY", "Maximum number of commands reached"))
        previous = scope.get(key)
        scope[key] = self._stored(app_id, guild_id, payload, previous)
        return scope[key], previous is None

    def get(self, app_id: int, guild_id: int | None, command_id: int) -> dict[str, Any] | None:
        for cmd in self.scopes.get((app_id, guild_id), {}).values():
            if int(cmd["id"]) == command_id:
                return cmd
        return None

    def delete(self, app_id: int, guild_id: int | None, command_id: int) -> bool:
        scope = self.scopes.get((app_id, guild_id), {})
        for key, cmd in list(scope.items()):
            if int(cmd["id"]) == command_id:
                del scope[key]
                return True
        return False
