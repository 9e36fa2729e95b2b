"""Data model of the emulated Discord: snowflakes, bots, guilds, channels, members, voice, messages.

Everything here is synchronous and deterministic (counter-based ids, hash-derived tokens; only interaction
ids carry the wall-clock time, see SnowflakeGenerator). The
serializers produce payloads shaped like real Discord's, which discord.py 2.7.1 parses as-is.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1420070400000
# Ids are minted as if created from 2024-01-01 on, one millisecond apart: large, ordered, stable.
BASE_MS = 1704067200000

# Channel types.
TEXT, VOICE, CATEGORY, STAGE = 0, 2, 4, 13

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_VOICE_STATES = 1 << 7
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT


class Perm:
    """Permission bits (the subset the sandbox reasons about; others pass through as ints)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    STREAM = 1 << 9
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    MUTE_MEMBERS = 1 << 22
    DEAFEN_MEMBERS = 1 << 23
    MOVE_MEMBERS = 1 << 24
    USE_VAD = 1 << 25
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    REQUEST_TO_SPEAK = 1 << 32
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    USE_EXTERNAL_STICKERS = 1 << 37
    SEND_MESSAGES_IN_THREADS = 1 << 38
    USE_EMBEDDED_ACTIVITIES = 1 << 39
    SEND_VOICE_MESSAGES = 1 << 46
    SEND_POLLS = 1 << 49
    USE_EXTERNAL_APPS = 1 << 50
    ALL = (1 << 51) - 1


# What a freshly created guild gives @everyone on real Discord (roughly; all the everyday bits).
DEFAULT_EVERYONE_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE | Perm.ADD_REACTIONS | Perm.STREAM | Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS | Perm.ATTACH_FILES | Perm.READ_MESSAGE_HISTORY | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CONNECT | Perm.SPEAK | Perm.USE_VAD | Perm.CHANGE_NICKNAME | Perm.USE_APPLICATION_COMMANDS
    | Perm.REQUEST_TO_SPEAK | Perm.CREATE_PUBLIC_THREADS | Perm.CREATE_PRIVATE_THREADS
    | Perm.USE_EXTERNAL_STICKERS | Perm.SEND_MESSAGES_IN_THREADS | Perm.USE_EMBEDDED_ACTIVITIES
    | Perm.SEND_VOICE_MESSAGES | Perm.SEND_POLLS | Perm.USE_EXTERNAL_APPS
)
_TEXT_DEPENDENT = Perm.SEND_TTS_MESSAGES | Perm.MENTION_EVERYONE | Perm.EMBED_LINKS | Perm.ATTACH_FILES
_VOICE_DEPENDENT = Perm.SPEAK | Perm.MUTE_MEMBERS | Perm.DEAFEN_MEMBERS | Perm.MOVE_MEMBERS | Perm.USE_VAD | Perm.STREAM


class SnowflakeGenerator:
    """Monotonic, Discord-shaped ids: a timestamp part that advances 1 ms per id, plus the counter.

    `next(at=unix seconds)` mints an id whose timestamp part is that time instead, as Discord's ids carry
    their creation time: discord.py derives `Interaction.created_at` from the interaction id and measures
    app-command cooldowns with it, so interaction ids are minted at the wall-clock time of the invocation.
    The counter in the low bits keeps every id unique.
    """

    def __init__(self) -> None:
        self._n = 0

    def next(self, at: float | None = None) -> int:
        self._n += 1
        ms = BASE_MS + self._n if at is None else int(at * 1000)
        return ((ms - DISCORD_EPOCH_MS) << 22) | (1 << 17) | (self._n & 0xFFF)


def snowflake_iso(snowflake: int) -> str:
    """The creation time encoded in a snowflake, as Discord's ISO-8601 string."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat()


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_bot_token(user_id: int) -> str:
    """A token shaped like Discord's: b64(user id) . 6 chars . 38 chars, derived from the id only."""
    digest = hashlib.sha256(f"sandbox-bot-token:{user_id}".encode()).digest()
    return f"{_b64(str(user_id).encode())}.{_b64(digest[:6])[:6]}.{_b64(digest[6:])[:38]}"


def make_interaction_token(interaction_id: int) -> str:
    digest = hashlib.sha256(f"sandbox-interaction:{interaction_id}".encode()).digest()
    return _b64(f"interaction:{interaction_id}:".encode() + digest * 2)


def mask_token(text: str, token: str) -> str:
    return text.replace(token, "<token>") if token else text


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": str(self.id), "username": self.username, "discriminator": "0",
                                "global_name": self.global_name, "avatar": None, "public_flags": 0}
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class BotApp:
    """A bot account and its application (application_id == user_id, as for modern bots)."""

    token: str = field(repr=False)
    user_id: int
    application_id: int
    name: str
    privileged_intents: int = 0
    owner_id: int = 0


@dataclass
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "name": self.name, "permissions": str(self.permissions), "position": self.position,
            "color": 0, "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False, "managed": self.managed, "mentionable": False, "icon": None, "unicode_emoji": None,
            "flags": 0, "description": None,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class Channel:
    id: int
    guild_id: int
    type: int
    name: str
    position: int = 0
    parent_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    user_limit: int = 0
    bitrate: int = 64000
    topic: str | None = None
    last_message_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "type": self.type, "guild_id": str(self.guild_id), "name": self.name,
            "position": self.position, "parent_id": str(self.parent_id) if self.parent_id else None,
            "permission_overwrites": [o.to_dict() for o in self.overwrites], "nsfw": False, "flags": 0,
        }
        if self.type in (VOICE, STAGE):
            data.update(bitrate=self.bitrate, user_limit=self.user_limit, rtc_region=None,
                        last_message_id=_opt_str(self.last_message_id), rate_limit_per_user=0)
        elif self.type == TEXT:
            data.update(topic=self.topic, last_message_id=_opt_str(self.last_message_id), rate_limit_per_user=0)
        return data


@dataclass
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    joined_at: str = ""
    nick: str | None = None

    def to_dict(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.roles], "joined_at": self.joined_at, "nick": self.nick, "avatar": None,
            "deaf": False, "mute": False, "flags": 0, "pending": False, "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.to_dict()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class VoiceState:
    guild_id: int
    user_id: int
    channel_id: int | None
    session_id: str
    self_mute: bool = False
    self_deaf: bool = False

    def to_dict(self, *, with_guild: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": str(self.user_id), "channel_id": _opt_str(self.channel_id), "session_id": self.session_id,
            "deaf": False, "mute": False, "self_deaf": self.self_deaf, "self_mute": self.self_mute,
            "self_video": False, "suppress": False, "request_to_speak_timestamp": None,
        }
        if with_guild:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    voice_states: dict[int, VoiceState] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def to_dict(self) -> dict[str, Any]:
        """The REST guild object (GET /guilds/{id}); GUILD_CREATE adds the gateway-only fields."""
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(self.owner_id), "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "features": [], "mfa_level": 0,
            "roles": [r.to_dict() for r in self.roles.values()], "emojis": [], "stickers": [],
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "max_members": 500000, "max_video_channel_users": 25,
        }


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


class DiscordState:
    """All entities of the emulated Discord, plus permission computation."""

    def __init__(self) -> None:
        self.ids = SnowflakeGenerator()
        self.users: dict[int, User] = {}
        self.apps_by_token: dict[str, BotApp] = {}
        self.apps: dict[int, BotApp] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.channel_messages: dict[int, list[int]] = {}
        self.on_change: Callable[[], None] = lambda: None

    # -- creation ------------------------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False) -> User:
        user = User(id=self.ids.next(), username=name, bot=bot)
        self.users[user.id] = user
        return user

    def add_bot(self, name: str, privileged_intents: int = 0) -> BotApp:
        user = self.add_user(name, bot=True)
        owner = self.add_user(f"{name.lower().replace(' ', '-')}-owner")
        app = BotApp(token=make_bot_token(user.id), user_id=user.id, application_id=user.id, name=name,
                     privileged_intents=privileged_intents, owner_id=owner.id)
        self.apps_by_token[app.token] = app
        self.apps[app.application_id] = app
        return app

    def create_guild(self, name: str, owner_name: str = "owner") -> Guild:
        owner = self.add_user(owner_name)
        guild = Guild(id=self.ids.next(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = Role(id=guild.id, guild_id=guild.id, name="@everyone",
                                     permissions=DEFAULT_EVERYONE_PERMISSIONS)
        self.guilds[guild.id] = guild
        self.add_member(guild.id, owner)
        return guild

    def create_channel(self, guild_id: int, name: str, type_: int, *, user_limit: int = 0,
                       overwrites: list[Overwrite] | None = None, parent_id: int | None = None) -> Channel:
        guild = self.guild(guild_id)
        channel = Channel(id=self.ids.next(), guild_id=guild_id, type=type_, name=name,
                          position=len(guild.channels), parent_id=parent_id, overwrites=list(overwrites or []),
                          user_limit=user_limit)
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        return channel

    def create_role(self, guild_id: int, name: str, permissions: int = 0, *, bot_id: int | None = None) -> Role:
        guild = self.guild(guild_id)
        role = Role(id=self.ids.next(), guild_id=guild_id, name=name, permissions=permissions,
                    position=len(guild.roles), managed=bot_id is not None, bot_id=bot_id)
        guild.roles[role.id] = role
        return role

    def add_member(self, guild_id: int, user: User, roles: list[int] | None = None) -> Member:
        member_id = self.ids.next()  # joined_at comes from a fresh id so it is ordered and stable
        member = Member(user=user, guild_id=guild_id, roles=list(roles or []), joined_at=snowflake_iso(member_id))
        self.guild(guild_id).members[user.id] = member
        return member

    # -- lookup --------------------------------------------------------------------------------------

    def guild(self, guild_id: int) -> Guild:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise KeyError(f"unknown guild {guild_id}") from None

    def app_for_token(self, token: str | None) -> BotApp | None:
        return self.apps_by_token.get(token or "")

    def member(self, guild_id: int, user_id: int) -> Member | None:
        guild = self.guilds.get(guild_id)
        return None if guild is None else guild.members.get(user_id)

    def bot_guilds(self, user_id: int) -> list[Guild]:
        return [g for g in self.guilds.values() if user_id in g.members]

    def voice_members(self, channel_id: int) -> list[int]:
        channel = self.channels[channel_id]
        guild = self.guilds[channel.guild_id]
        return [vs.user_id for vs in guild.voice_states.values() if vs.channel_id == channel_id]

    # -- permissions ---------------------------------------------------------------------------------

    def permissions_for(self, guild_id: int, user_id: int, channel_id: int | None = None) -> int:
        """Discord's algorithm: owner/admin → all; else @everyone | roles, then overwrites in order."""
        guild = self.guild(guild_id)
        member = guild.members.get(user_id)
        if member is None:
            return 0
        if user_id == guild.owner_id:
            return Perm.ALL
        perms = guild.everyone.permissions
        for role_id in member.roles:
            role = guild.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        if channel_id is None:
            return perms
        channel = self.channels[channel_id]
        by_id = {o.id: o for o in channel.overwrites}
        everyone = by_id.get(guild.id)
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.roles:
            ow = by_id.get(role_id)
            if ow is not None and ow.type == 0:
                allow |= ow.allow
                deny |= ow.deny
        perms = (perms & ~deny) | allow
        mine = by_id.get(user_id)
        if mine is not None and mine.type == 1:
            perms = (perms & ~mine.deny) | mine.allow
        if not perms & Perm.VIEW_CHANNEL:
            return 0
        if channel.type == TEXT and not perms & Perm.SEND_MESSAGES:
            perms &= ~_TEXT_DEPENDENT
        if channel.type in (VOICE, STAGE) and not perms & Perm.CONNECT:
            perms &= ~_VOICE_DEPENDENT
        return perms

    def has(self, guild_id: int, user_id: int, channel_id: int | None, needed: int) -> bool:
        return self.permissions_for(guild_id, user_id, channel_id) & needed == needed

    # -- messages ------------------------------------------------------------------------------------

    def build_message(self, channel_id: int, author: User, body: dict[str, Any], *, type_: int = 0,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A full message object from a create body (content/embeds/components/flags...)."""
        channel = self.channels[channel_id]
        message_id = self.ids.next()
        message: dict[str, Any] = {
            "id": str(message_id), "channel_id": str(channel_id), "guild_id": str(channel.guild_id),
            "type": type_, "content": str(body.get("content") or ""), "author": author.to_dict(),
            "timestamp": snowflake_iso(message_id), "edited_timestamp": None, "tts": bool(body.get("tts", False)),
            "mention_everyone": False, "mentions": [], "mention_roles": [], "mention_channels": [],
            "attachments": list(body.get("attachments") or []), "embeds": list(body.get("embeds") or []),
            "components": list(body.get("components") or []), "pinned": False,
            "flags": int(body.get("flags") or 0), "reactions": [], "sticker_items": [],
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        message.update(extra or {})
        return message

    def store_message(self, message: dict[str, Any]) -> None:
        message_id, channel_id = int(message["id"]), int(message["channel_id"])
        self.messages[message_id] = message
        self.channel_messages.setdefault(channel_id, []).append(message_id)
        self.channels[channel_id].last_message_id = message_id
        self.on_change()

    def edit_message(self, message_id: int, body: dict[str, Any]) -> dict[str, Any]:
        message = self.messages[message_id]
        for key in ("content", "embeds", "components", "attachments"):
            if key in body and body[key] is not None:
                message[key] = body[key]
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS is editable; the ephemeral bit sticks; LOADING is cleared by any edit.
            message["flags"] = (message["flags"] & 64) | (int(body["flags"]) & 4)
        else:
            message["flags"] &= ~128
        message["edited_timestamp"] = now_iso()
        self.on_change()
        return message

    def delete_message(self, message_id: int) -> dict[str, Any] | None:
        message = self.messages.pop(message_id, None)
        if message is not None:
            ids = self.channel_messages.get(int(message["channel_id"]), [])
            if message_id in ids:
                ids.remove(message_id)
            self.on_change()
        return message

    def visible_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Channel history as everyone sees it (ephemeral messages excluded)."""
        ids = self.channel_messages.get(channel_id, [])
        return [self.messages[i] for i in ids if not self.messages[i]["flags"] & 64]
