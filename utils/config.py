"""Configuration of one bot process, read from the environment (and `.env` by the caller).

Everything here is pure: no network, no file writes. Secrets are kept out of reprs and
error messages; an error names the variable, never its value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

EX_CONFIG = 78  # sysexits.h: configuration error; supervisors must not restart on it

DEFAULT_LAVALINK_URI = "http://127.0.0.1:2333"
DEFAULT_LAVALINK_PASSWORD = "youshallnotpass"
_TOKEN_VAR = re.compile(r"^BOT_TOKEN_(\d+)$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A configuration problem, worded for the operator. Never contains a secret."""


@dataclass(frozen=True)
class LavalinkNode:
    identifier: str
    uri: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything one bot process needs, resolved and validated."""

    bot_index: int
    token_var: str
    token: str = field(repr=False)
    client_id: int | None
    lavalink_nodes: tuple[LavalinkNode, ...]
    api_base: str | None = None
    gateway_url: str | None = None
    test_guild_id: int | None = None
    log_level: str = "INFO"
    log_dir: Path = Path("logs")
    siblings: Mapping[int, int] = field(default_factory=dict)  # bot index -> user id, this bot excluded
    idle_timeout: int = 300  # seconds with nothing playing before leaving
    alone_timeout: int = 120  # seconds alone in the voice channel before leaving
    max_queue: int = 500
    dj_role: str | None = None  # role name or id; None = everyone in the bot's channel may control
    state_dir: Path = Path("state")  # this bot writes only state_dir/bot-N
    restore: bool = True
    restore_max_age: int = 600  # seconds; older snapshots are discarded
    failed_request_budget: int = 500  # 401/403/429 per 10 minutes before this bot holds back its requests

    @property
    def bot_state_dir(self) -> Path:
        return self.state_dir / f"bot-{self.bot_index}"

    @property
    def name(self) -> str:
        return f"Bot {self.bot_index}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a log line."""
        return (self.token, *(n.password for n in self.lavalink_nodes))

    @classmethod
    def from_env(cls, bot_index: int | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Build the settings for bot `bot_index` (None: BOT_ID, default 1) from `env` (default os.environ).

        The token is BOT_TOKEN_<n>; a plain BOT_TOKEN is accepted when BOT_TOKEN_<n> is absent
        (single-bot deployments, e.g. a container per bot with BOT_ID set).
        """
        env = os.environ if env is None else env
        if bot_index is None:
            bot_index = _parse_int(env, "BOT_ID", default=1, minimum=1)
        if bot_index < 1:
            raise ConfigError(f"the bot number must be 1 or more, got {bot_index}")

        token_var = f"BOT_TOKEN_{bot_index}"
        token = env.get(token_var, "").strip()
        if not token and env.get("BOT_TOKEN", "").strip():
            token_var, token = "BOT_TOKEN", env["BOT_TOKEN"].strip()
        if not token:
            raise ConfigError(f"{token_var} is not set (put the bot's token in .env or the environment)")
        check_token_shape(token, token_var)

        client_id = _parse_int(env, f"BOT_CLIENT_ID_{bot_index}", default=None, minimum=1)
        if client_id is None:
            client_id = user_id_from_token(token)

        siblings = {
            n: uid
            for n, uid in discover_user_ids(env).items()
            if n != bot_index and uid is not None
        }
        return cls(
            bot_index=bot_index,
            token_var=token_var,
            token=token,
            client_id=client_id,
            lavalink_nodes=parse_lavalink_nodes(env),
            api_base=_parse_url(env, "DISCORD_API_BASE", schemes=("http", "https")),
            gateway_url=_parse_url(env, "DISCORD_GATEWAY_URL", schemes=("ws", "wss")),
            test_guild_id=_parse_int(env, "TEST_GUILD_ID", default=None, minimum=1),
            log_level=parse_log_level(env),
            log_dir=Path(env.get("LOG_DIR", "").strip() or "logs"),
            siblings=siblings,
            idle_timeout=_parse_int(env, "IDLE_TIMEOUT", default=300, minimum=10),
            alone_timeout=_parse_int(env, "ALONE_TIMEOUT", default=120, minimum=5),
            max_queue=_parse_int(env, "MAX_QUEUE", default=500, minimum=1),
            dj_role=env.get("DJ_ROLE", "").strip() or None,
            state_dir=Path(env.get("STATE_DIR", "").strip() or "state"),
            restore=_parse_switch(env, "RESTORE", default=True),
            restore_max_age=_parse_int(env, "RESTORE_MAX_AGE", default=600, minimum=0),
            failed_request_budget=_parse_int(env, "FAILED_REQUEST_BUDGET", default=500, minimum=1),
        )


def discover_bot_indices(env: Mapping[str, str] | None = None) -> list[int]:
    """The n of every non-empty BOT_TOKEN_n, sorted; gaps are allowed."""
    env = os.environ if env is None else env
    found = []
    for key, value in env.items():
        match = _TOKEN_VAR.match(key)
        if match and value.strip() and int(match.group(1)) >= 1:
            found.append(int(match.group(1)))
    return sorted(found)


def discover_user_ids(env: Mapping[str, str] | None = None) -> dict[int, int | None]:
    """Bot index -> user id for every configured bot (BOT_CLIENT_ID_n, else decoded from the token)."""
    env = os.environ if env is None else env
    ids: dict[int, int | None] = {}
    for n in discover_bot_indices(env):
        explicit = env.get(f"BOT_CLIENT_ID_{n}", "").strip()
        ids[n] = int(explicit) if explicit.isdigit() else user_id_from_token(env[f"BOT_TOKEN_{n}"].strip())
    return ids


def user_id_from_token(token: str) -> int | None:
    """The bot's user id: a Discord bot token's first segment is the base64 of the user id."""
    first = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() else None


def check_token_shape(token: str, var: str) -> None:
    """Reject values that cannot be a token (whitespace, quotes, a 'Bot ' prefix) before Discord does."""
    if token.lower().startswith("bot "):
        raise ConfigError(f"{var} must be the bare token, without the 'Bot ' prefix")
    if any(ch.isspace() for ch in token) or any(ch in token for ch in "\"'"):
        raise ConfigError(f"{var} contains spaces or quotes; paste the token exactly as the Developer Portal shows it")
    if token.count(".") != 2:
        raise ConfigError(f"{var} does not look like a bot token (expected three dot-separated parts)")


def parse_lavalink_nodes(env: Mapping[str, str]) -> tuple[LavalinkNode, ...]:
    """LAVALINK_URI may list several nodes, comma-separated; LAVALINK_PASSWORD applies to all."""
    raw = env.get("LAVALINK_URI", "").strip() or DEFAULT_LAVALINK_URI
    password = env.get("LAVALINK_PASSWORD", "") or DEFAULT_LAVALINK_PASSWORD
    nodes = []
    for i, uri in enumerate((u.strip() for u in raw.split(",")), start=1):
        if not uri:
            continue
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"LAVALINK_URI entry {i} must look like http://host:2333")
        try:
            parts.port
        except ValueError:
            raise ConfigError(f"LAVALINK_URI entry {i} has an invalid port") from None
        nodes.append(LavalinkNode(identifier=f"node-{i}", uri=uri.rstrip("/"), password=password))
    if not nodes:
        raise ConfigError("LAVALINK_URI lists no node")
    return tuple(nodes)


def parse_log_level(env: Mapping[str, str]) -> str:
    level = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
    return level


def _parse_int(env: Mapping[str, str], var: str, *, default: int | None, minimum: int) -> int | None:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{var} must be a whole number of at least {minimum}")
    return int(raw)


def _parse_switch(env: Mapping[str, str], var: str, *, default: bool) -> bool:
    raw = env.get(var, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "yes", "1"):
        return True
    if raw in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{var} must be on or off")


def _parse_url(env: Mapping[str, str], var: str, *, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(var, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{var} must be a {' or '.join(s + '://' for s in schemes)} URL")
    return raw
