"""REST plumbing shared by the route modules: routing table, Discord-style errors and JSON responses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from .discord_state import BotApp

JSON_HEADERS = {"Content-Type": "application/json"}


class ApiError(Exception):
    """A Discord error answer: HTTP status + JSON {code, message[, errors]}."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class NotEmulated(ApiError):
    """A request the sandbox cannot answer faithfully: 501, a status no real Discord route uses.

    Never a plausible 404 "Unknown ...": the client must not mistake a sandbox gap for Discord's answer.
    Every one is recorded (`DiscordEmulator.unimplemented`) so the test that caused it fails.
    """

    def __init__(self, what: str) -> None:
        super().__init__(501, 0, f"sandbox: {what} not emulated")


def unknown(kind: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {kind}")


MISSING_ACCESS = (403, 50001, "Missing Access")
MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")


@dataclass
class Upload:
    """A `files[n]` multipart part (contents are counted, not kept)."""

    index: str
    filename: str
    size: int
    content_type: str


@dataclass
class Call:
    """One REST request after routing: path parameters, parsed body and the authenticated bot."""

    request: web.Request
    method: str
    path: str
    template: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any = None
    app: BotApp | None = None
    uploads: list[Upload] = field(default_factory=list)

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            # Discord validates snowflakes in paths the same way.
            raise ApiError(400, 50035, "Invalid Form Body",
                           {name: {"_errors": [{"code": "NUMBER_TYPE_COERCE",
                                                "message": f"Value \"{self.params[name]}\" is not snowflake."}]}})


Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    auth: bool = True
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}$")

    def major(self, params: dict[str, str]) -> str:
        for key in ("channel_id", "guild_id"):
            if key in params:
                return params[key]
        if "webhook_id" in params:
            return f"{params['webhook_id']}:{params.get('webhook_token', '')}"
        return ""


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        self.routes.append(Route(method, template, handler, auth))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, params, path_known): path_known is True when only the method was wrong."""
        path_known = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            path_known = True
            if route.method == method:
                return route, m.groupdict(), True
        return None, {}, path_known


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """Exactly `Content-Type: application/json` (discord.py compares the header string)."""
    return web.Response(status=status, body=json.dumps(body).encode(), headers={**JSON_HEADERS, **(headers or {})})


def empty_response(headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=headers or {})


def check_message_body(body: Any, uploads: list[Upload] | None = None, new_id: Callable[[], int] | None = None,
                       channel_id: int = 0) -> dict[str, Any]:
    """Discord's checks on a message create/edit body; uploaded files become attachment objects."""
    if body is None and uploads:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, 50109, "The request body contains invalid JSON.")
    if uploads and new_id is not None:
        by_index = {u.index: u for u in uploads}
        kept = [a for a in body.get("attachments") or [] if str(a.get("id")) not in by_index]
        refs = {str(a.get("id")): a for a in body.get("attachments") or []}
        for upload in uploads:
            attachment_id = new_id()
            filename = refs.get(upload.index, {}).get("filename") or upload.filename
            url = f"https://cdn.discordapp.com/attachments/{channel_id}/{attachment_id}/{filename}"
            kept.append({"id": str(attachment_id), "filename": filename, "size": upload.size, "url": url,
                         "proxy_url": url.replace("cdn.discordapp.com", "media.discordapp.net"),
                         "content_type": upload.content_type,
                         "description": refs.get(upload.index, {}).get("description")})
        body = {**body, "attachments": kept}
    content = body.get("content")
    if content is not None and len(str(content)) > 2000:
        raise ApiError(400, 50035, "Invalid Form Body", {"content": {"_errors": [
            {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}})
    if len(body.get("embeds") or []) > 10:
        raise ApiError(400, 50035, "Invalid Form Body", {"embeds": {"_errors": [
            {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer in length."}]}})
    for r, row in enumerate(body.get("components") or []):
        for c, component in enumerate(row.get("components") or []):
            _check_component(component, f"components.{r}.components.{c}")
    return body


def _too_long(where: str, limit: int) -> ApiError:
    return ApiError(400, 50035, "Invalid Form Body", {where: {"_errors": [
        {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}})


def _check_component(component: dict[str, Any], where: str) -> None:
    """Discord's limits on a message component: custom_id 100; a string select has 1-25 options, each
    label, value and description at most 100 characters, a placeholder at most 150."""
    if len(str(component.get("custom_id") or "")) > 100:
        raise _too_long(f"{where}.custom_id", 100)
    if component.get("type") != 3:
        return
    options = component.get("options") or []
    if not 1 <= len(options) <= 25:
        raise ApiError(400, 50035, "Invalid Form Body", {f"{where}.options": {"_errors": [
            {"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 25 in length."}]}})
    if len(str(component.get("placeholder") or "")) > 150:
        raise _too_long(f"{where}.placeholder", 150)
    for i, option in enumerate(options):
        for key in ("label", "value", "description"):
            if len(str(option.get(key) or "")) > 100:
                raise _too_long(f"{where}.options.{i}.{key}", 100)


def require_not_empty(body: dict[str, Any]) -> None:
    if not any(body.get(k) for k in ("content", "embeds", "components", "attachments", "sticker_ids", "poll")):
        raise ApiError(400, 50006, "Cannot send an empty message")
