"""Interaction callback and interaction-webhook routes (follow-ups, @original edits)."""

from __future__ import annotations

import logging
import time
from typing import Any

from .discord_gateway import Gateway
from .discord_http import ApiError, Call, Router, check_message_body, require_not_empty, unknown
from .discord_interactions import (
    APPLICATION_COMMAND, AUTOCOMPLETE, AUTOCOMPLETE_RESULT, DEFERRED_MESSAGE, DEFERRED_UPDATE, EPHEMERAL, LOADING,
    MESSAGE, MESSAGE_COMPONENT, MODAL, MODAL_SUBMIT, PONG, UPDATE, InteractionRecord,
)
from .discord_state import DiscordState

log = logging.getLogger(__name__)

# Which callback types Discord accepts for which interaction type.
ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {MESSAGE, DEFERRED_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, MODAL},
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE},
}
ORIGINAL = "@original"
TRUE_VALUES = ("1", "true", "True")


class InteractionRoutes:
    """Registry of dispatched interactions plus the REST routes that answer them."""

    def __init__(self, state: DiscordState, gateway: Gateway, deadline: float | None, token_ttl: float = 900.0) -> None:
        self.state = state
        self.gateway = gateway
        self.deadline = deadline
        self.token_ttl = token_ttl
        self.records: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}

    def add(self, record: InteractionRecord) -> None:
        self.records[record.id] = record
        self.by_token[record.token] = record

    def register(self, router: Router) -> None:
        router.add("POST", "/interactions/{webhook_id}/{webhook_token}/callback", self.callback, auth=False)
        base = "/webhooks/{webhook_id}/{webhook_token}"
        router.add("POST", base, self.create_followup, auth=False)
        for method, handler in (("GET", self.get_message), ("PATCH", self.edit_message),
                                ("DELETE", self.delete_message)):
            router.add(method, base + "/messages/{message_id}", handler, auth=False)

    # -- callback ------------------------------------------------------------------------------------

    async def callback(self, call: Call) -> tuple[int, Any]:
        record = self.records.get(call.int_param("webhook_id"))
        if record is None or record.token != call.params["webhook_token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        try:
            return self._callback(record, call)
        except ApiError as err:
            record.callback_attempts.append(err.status)
            raise

    def _callback(self, record: InteractionRecord, call: Call) -> tuple[int, Any]:
        now = time.monotonic()
        if record.callback_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.deadline is not None and now - record.dispatched_at > self.deadline:
            log.info("interaction %s answered after %.2fs (deadline %.2fs): 10062", record.id,
                     now - record.dispatched_at, self.deadline)
            raise ApiError(404, 10062, "Unknown interaction")
        body = call.body if isinstance(call.body, dict) else {}
        ctype = body.get("type")
        if ctype not in ALLOWED_CALLBACKS.get(record.type, set()) or ctype == PONG:
            raise ApiError(400, 50035, "Invalid Form Body", {"type": {"_errors": [
                {"code": "INTERACTION_RESPONSE_TYPE_INVALID", "message": "Invalid interaction response type"}]}})
        data = body.get("data") or {}
        message: dict[str, Any] | None = None
        if ctype == MESSAGE:
            data = check_message_body(data, call.uploads, self.state.ids.next, record.channel_id)
            require_not_empty(data)
            message = self._create_response_message(record, data, loading=False)
        elif ctype == DEFERRED_MESSAGE:
            self._create_response_message(record, {"flags": int(data.get("flags") or 0) & EPHEMERAL}, loading=True)
        elif ctype in (DEFERRED_UPDATE, UPDATE):
            if record.component_message_id is None:
                raise ApiError(400, 40004, "Interaction has no message to update")
            record.original_message_id = record.component_message_id
            if ctype == UPDATE:
                message = self._edit(record, record.component_message_id,
                                     check_message_body(data, call.uploads, self.state.ids.next, record.channel_id))
        elif ctype == AUTOCOMPLETE_RESULT and len(data.get("choices") or []) > 25:
            raise ApiError(400, 50035, "Invalid Form Body", {"data": {"choices": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}]}}})
        record.callback_type, record.callback_data, record.callback_at = ctype, data, now
        with_response = call.query.get("with_response") in TRUE_VALUES
        record.callback_attempts.append(200 if with_response else 204)
        self.gateway.notify()
        log.info("interaction %s acknowledged with type %s after %.3fs", record.id, ctype, now - record.dispatched_at)
        if not with_response:
            return 204, None  # Discord's default: no body unless the client asks for the callback response
        original = self.state.messages.get(record.original_message_id or 0)
        resource: dict[str, Any] = {"type": ctype}
        if message is not None:
            resource["message"] = message
        return 200, {
            "interaction": {
                "id": str(record.id), "type": record.type, "activity_instance_id": None,
                "response_message_id": None if record.original_message_id is None else str(record.original_message_id),
                "response_message_loading": ctype == DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(original and original["flags"] & EPHEMERAL),
            },
            "resource": resource,
        }

    def _create_response_message(self, record: InteractionRecord, data: dict[str, Any],
                                 loading: bool) -> dict[str, Any]:
        author = self.state.users[record.application_id]
        user = self.state.users[record.user_id]
        extra = {
            "webhook_id": str(record.application_id), "application_id": str(record.application_id),
            "interaction_metadata": {"id": str(record.id), "type": record.type, "user": user.to_dict(),
                                     "authorizing_integration_owners": {"0": str(record.guild_id)}},
            "interaction": {"id": str(record.id), "type": record.type, "user": user.to_dict(),
                            "name": (record.payload.get("data") or {}).get("name", "")},
        }
        type_ = 20 if record.type in (APPLICATION_COMMAND, AUTOCOMPLETE) else 0
        message = self.state.build_message(record.channel_id, author, data, type_=type_, extra=extra)
        message["flags"] = (int(data.get("flags") or 0) & (EPHEMERAL | 4 | 4096)) | (LOADING if loading else 0)
        record.response_message_id = record.original_message_id = int(message["id"])
        self.state.store_message(message)
        if not message["flags"] & EPHEMERAL:
            self.gateway.dispatch_message_create(message)
        return message

    def _edit(self, record: InteractionRecord, message_id: int, body: dict[str, Any]) -> dict[str, Any]:
        message = self.state.edit_message(message_id, body)
        if message_id == record.original_message_id:
            record.original_edits += 1
        if not message["flags"] & EPHEMERAL:
            self.gateway.dispatch_guild(record.guild_id, "MESSAGE_UPDATE", message)
        self.gateway.notify()
        return message

    # -- webhook (follow-ups and edits) --------------------------------------------------------------

    def _record(self, call: Call) -> InteractionRecord:
        record = self.by_token.get(call.params["webhook_token"])
        if record is None or record.application_id != call.int_param("webhook_id"):
            raise unknown("Webhook", 10015)
        if time.monotonic() - record.dispatched_at > self.token_ttl:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return record

    def _target(self, record: InteractionRecord, call: Call) -> int:
        raw = call.params["message_id"]
        if raw == ORIGINAL:
            if record.original_message_id is None or record.original_message_id not in self.state.messages:
                raise unknown("Message", 10008)
            return record.original_message_id
        message_id = call.int_param("message_id")
        owned = {int(m["id"]) for m in record.followups} | {record.original_message_id}
        if message_id not in owned or message_id not in self.state.messages:
            raise unknown("Message", 10008)
        return message_id

    async def create_followup(self, call: Call) -> tuple[int, Any]:
        record = self._record(call)
        if record.callback_type is None:
            raise unknown("Webhook", 10015)
        body = check_message_body(call.body, call.uploads, self.state.ids.next, record.channel_id)
        require_not_empty(body)
        original = self.state.messages.get(record.original_message_id or 0)
        if record.callback_type == DEFERRED_MESSAGE and original is not None and original["flags"] & LOADING:
            # Discord turns the first follow-up after a deferral into the deferred message itself.
            message = self._edit(record, int(original["id"]), {k: v for k, v in body.items() if k != "flags"})
        else:
            author = self.state.users[record.application_id]
            user = self.state.users[record.user_id]
            message = self.state.build_message(record.channel_id, author, body, extra={
                "webhook_id": str(record.application_id), "application_id": str(record.application_id),
                "interaction_metadata": {"id": str(record.id), "type": record.type, "user": user.to_dict(),
                                         "authorizing_integration_owners": {"0": str(record.guild_id)}}})
            message["flags"] = int(body.get("flags") or 0) & (EPHEMERAL | 4 | 4096)
            self.state.store_message(message)
            if not message["flags"] & EPHEMERAL:
                self.gateway.dispatch_message_create(message)
        record.followups.append(message)
        self.gateway.notify()
        if call.query.get("wait") not in TRUE_VALUES:
            return 204, None
        return 200, message

    async def get_message(self, call: Call) -> tuple[int, Any]:
        record = self._record(call)
        return 200, self.state.messages[self._target(record, call)]

    async def edit_message(self, call: Call) -> tuple[int, Any]:
        record = self._record(call)
        message_id = self._target(record, call)
        body = check_message_body(call.body, call.uploads, self.state.ids.next, record.channel_id)
        return 200, self._edit(record, message_id, body)

    async def delete_message(self, call: Call) -> tuple[int, Any]:
        record = self._record(call)
        message = self.state.delete_message(self._target(record, call))
        if message is not None and not message["flags"] & EPHEMERAL:
            self.gateway.dispatch_guild(record.guild_id, "MESSAGE_DELETE", {
                "id": message["id"], "channel_id": message["channel_id"], "guild_id": message["guild_id"]})
        return 204, None
