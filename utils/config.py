"""Configuration of one bot process, read from the environment (and `.env` by the caller).

Everything here is pure: no network, no file writes (token files are read). Secrets are kept out of
reprs and error messages; an error names the variable, never its value.

Where bot n's token comes from, first match wins: BOT_TOKEN_n; BOT_TOKEN_FILE_n (a file holding it);
BOT_TOKEN_DIR/BOT_TOKEN_n (a secrets directory, one file per bot); plain BOT_TOKEN (single-bot form).
The fleet's user ids (for the "Try @Music 2" hint) come from FLEET_BOT_IDS when set (process_manager.py
and bot.py's own re-exec hand it down, see utils/token_env.py), else from decoding the visible tokens;
BOT_CLIENT_ID_n overrides either.
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

from utils.formatting import is_digits

EX_CONFIG = 78  # sysexits.h: configuration error; supervisors must not restart on it

DEFAULT_LAVALINK_URI = "http://127.0.0.1:2333"
DEFAULT_LAVALINK_PASSWORD = "youshallnotpass"
_TOKEN_VAR = re.compile(r"^BOT_TOKEN_(\d+)$")
_TOKEN_FILE_VAR = re.compile(r"^BOT_TOKEN_FILE_(\d+)$")
_CLIENT_ID_VAR = re.compile(r"^BOT_CLIENT_ID_(\d+)$")
TOKEN_DIR_VAR = "BOT_TOKEN_DIR"
FLEET_IDS_VAR = "FLEET_BOT_IDS"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_VOICE_REJOIN_DELAYS = (1.0, 5.0, 15.0)  # issue 11: three tries after a voice drop
_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")  # ASCII only: '²'.isdigit() is true
_COMMAND_WORD = re.compile(r"^[-_\w]{1,32}$")  # one word of a slash command's name, as Discord allows it


class ConfigError(Exception):
    """A configuration problem, worded for the operator. Never contains a secret."""


@dataclass(frozen=True)
class LavalinkNode:
    identifier: str
    uri: str
    password: str = field(repr=False)


Rate = tuple[int, float]  # (uses, per seconds)


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
    search_menu_timeout: int = 120  # seconds a /search menu can be used
    max_queue: int = 500
    dj_role: str | None = None  # role name or id; None = everyone in the bot's channel may control
    state_dir: Path = Path("state")  # this bot writes only state_dir/bot-N
    restore: bool = True
    restore_max_age: int = 600  # seconds; older snapshots are discarded
    failed_request_budget: int = 500  # 401/403/429 per 10 minutes before this bot holds back its requests
    metrics_port: int | None = None  # METRICS_PORT + n: /healthz and /metrics (utils/health_server.py); None = off
    metrics_host: str = "127.0.0.1"  # METRICS_HOST: the bind address (0.0.0.0 in a container)
    voice_rejoin_delays: tuple[float, ...] = DEFAULT_VOICE_REJOIN_DELAYS  # seconds before each rejoin try
    disabled_commands: frozenset[str] = frozenset()  # qualified names ("seek", "queue show") left out everywhere
    play_cooldown: Rate | None = (5, 10.0)  # /play uses per member and guild, per seconds; None = no cooldown
    control_cooldown: Rate | None = (10, 10.0)  # the same for each command that changes the player

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

        The token is read as `token_source` says; a plain BOT_TOKEN is accepted when bot n has no
        token of its own (single-bot deployments, e.g. a container per bot with BOT_ID set).
        """
        env = os.environ if env is None else env
        bot_index = resolve_bot_index(bot_index, env)
        token_var, token = read_token(env, bot_index)

        client_id = _parse_int(env, f"BOT_CLIENT_ID_{bot_index}", default=None, minimum=1)
        if client_id is None:
            client_id = user_id_from_token(token)

        siblings = {n: uid for n, uid in fleet_user_ids(env).items() if n != bot_index}
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
            # Capped below the 15 min an interaction token lives: the expired menu is edited through it.
            search_menu_timeout=min(840, _parse_int(env, "SEARCH_MENU_TIMEOUT", default=120, minimum=3)),
            max_queue=_parse_int(env, "MAX_QUEUE", default=500, minimum=1),
            dj_role=env.get("DJ_ROLE", "").strip() or None,
            state_dir=Path(env.get("STATE_DIR", "").strip() or "state"),
            restore=_parse_switch(env, "RESTORE", default=True),
            restore_max_age=_parse_int(env, "RESTORE_MAX_AGE", default=600, minimum=0),
            failed_request_budget=_parse_int(env, "FAILED_REQUEST_BUDGET", default=500, minimum=1),
            metrics_port=metrics_port(env, bot_index),
            metrics_host=env.get("METRICS_HOST", "").strip() or "127.0.0.1",
            voice_rejoin_delays=parse_rejoin_delays(env),
            disabled_commands=parse_disabled_commands(env),
            play_cooldown=parse_rate(env, "COOLDOWN_PLAY", default=(5, 10.0)),
            control_cooldown=parse_rate(env, "COOLDOWN_CONTROLS", default=(10, 10.0)),
        )


def metrics_port(env: Mapping[str, str], bot_index: int) -> int | None:
    """Bot n's /healthz and /metrics port: METRICS_PORT + n, or None when METRICS_PORT is unset."""
    base = _parse_int(env, "METRICS_PORT", default=None, minimum=1)
    if base is None:
        return None
    if base + bot_index > 65535:
        raise ConfigError(f"METRICS_PORT + {bot_index} (bot {bot_index}'s port) is above 65535; "
                          f"choose a smaller METRICS_PORT")
    return base + bot_index


ORDINAL_VAR = "BOT_ID_FROM_ORDINAL"
_POD_ORDINAL = re.compile(r"^.*-([0-9]+)$")


def bot_index_from_ordinal(pod_name: str) -> int:
    """Bot number of a StatefulSet pod: its name's ordinal + 1 (music-bot-0 runs bot 1).

    Kubernetes names a StatefulSet's pods <name>-<ordinal>, ordinals from 0; bots are numbered from 1.
    """
    match = _POD_ORDINAL.match(pod_name.strip())
    if match is None:
        raise ConfigError(f"{ORDINAL_VAR} ({pod_name.strip() or 'empty'}) does not end in -<ordinal>: set it to the "
                          "StatefulSet pod's name (downward API metadata.name, e.g. music-bot-0 runs bot 1)")
    return int(match.group(1)) + 1


def resolve_bot_index(bot_index: int | None, env: Mapping[str, str]) -> int:
    """`bot_index`, or BOT_ID when None, or the pod ordinal + 1 from BOT_ID_FROM_ORDINAL (default 1)."""
    if bot_index is None:
        from_ordinal = env.get(ORDINAL_VAR, "").strip()
        if from_ordinal and env.get("BOT_ID", "").strip():
            raise ConfigError(f"BOT_ID and {ORDINAL_VAR} are both set: keep one (a StatefulSet pod needs only "
                              f"{ORDINAL_VAR})")
        if from_ordinal:
            bot_index = bot_index_from_ordinal(from_ordinal)
        else:
            bot_index = _parse_int(env, "BOT_ID", default=1, minimum=1)
    if bot_index < 1:
        raise ConfigError(f"the bot number must be 1 or more, got {bot_index}")
    return bot_index


def token_dir(env: Mapping[str, str]) -> Path | None:
    """BOT_TOKEN_DIR: a directory of files named BOT_TOKEN_n (e.g. /run/secrets), or None."""
    raw = env.get(TOKEN_DIR_VAR, "").strip()
    if not raw:
        return None
    if not Path(raw).is_dir():
        raise ConfigError(f"{TOKEN_DIR_VAR} ({raw}) is not a directory")
    return Path(raw)


@dataclass(frozen=True)
class TokenSource:
    """Where one bot's token is: in the variable `var`, or in the file `path` that `var` points at."""

    var: str
    path: Path | None = None


def token_source(env: Mapping[str, str], bot_index: int) -> TokenSource | None:
    """Bot n's token source, first match: BOT_TOKEN_n, BOT_TOKEN_FILE_n, BOT_TOKEN_DIR/BOT_TOKEN_n, BOT_TOKEN."""
    var, file_var = f"BOT_TOKEN_{bot_index}", f"BOT_TOKEN_FILE_{bot_index}"
    if env.get(var, "").strip():
        return TokenSource(var)
    if env.get(file_var, "").strip():
        return TokenSource(file_var, Path(env[file_var].strip()))
    directory = token_dir(env)
    if directory is not None and os.path.lexists(directory / var):
        return TokenSource(f"{TOKEN_DIR_VAR}/{var}", directory / var)
    if env.get("BOT_TOKEN", "").strip():
        return TokenSource("BOT_TOKEN")
    return None


def read_token(env: Mapping[str, str], bot_index: int) -> tuple[str, str]:
    """(variable to name in messages, token) of bot n; ConfigError naming the variable if unusable."""
    source = token_source(env, bot_index)
    if source is None:
        raise ConfigError(f"BOT_TOKEN_{bot_index} is not set (put the bot's token in .env or the environment, "
                          f"or its path in BOT_TOKEN_FILE_{bot_index})")
    if source.path is None:
        token = env[source.var].strip()
    else:
        try:
            token = source.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"{source.var}: cannot read the token file {source.path} ({reason})") from None
        if not token:
            raise ConfigError(f"{source.var}: the token file {source.path} is empty")
    check_token_shape(token, source.var)
    return source.var, token


def discover_bot_indices(env: Mapping[str, str] | None = None) -> list[int]:
    """The n of every bot with a token: non-empty BOT_TOKEN_n or BOT_TOKEN_FILE_n, or a BOT_TOKEN_DIR/BOT_TOKEN_n
    file; sorted, gaps allowed. Raises ConfigError when BOT_TOKEN_DIR is set but unusable."""
    env = os.environ if env is None else env
    found = set()
    for key, value in env.items():
        match = _TOKEN_VAR.match(key) or _TOKEN_FILE_VAR.match(key)
        if match and value.strip() and int(match.group(1)) >= 1:
            found.add(int(match.group(1)))
    directory = token_dir(env)
    if directory is not None:
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise ConfigError(f"{TOKEN_DIR_VAR} ({directory}) cannot be listed ({exc.strerror})") from None
        found.update(int(m.group(1)) for m in map(_TOKEN_VAR.match, names) if m and int(m.group(1)) >= 1)
    return sorted(found)


def fleet_user_ids(env: Mapping[str, str] | None = None) -> dict[int, int]:
    """Bot index -> user id for the whole fleet, this bot included.

    FLEET_BOT_IDS, when set (even empty), is the complete list and no token is read; otherwise every
    token found is decoded (bots whose token cannot be read are left out: each reports its own error).
    BOT_CLIENT_ID_n adds or overrides an entry either way, also for bots whose token is not here.
    """
    env = os.environ if env is None else env
    listed = env.get(FLEET_IDS_VAR)
    if listed is not None:
        ids = parse_fleet_ids(listed)
    else:
        ids = {}
        for n in discover_bot_indices(env):
            try:
                uid = user_id_from_token(read_token(env, n)[1])
            except ConfigError:
                uid = None
            if uid is not None:
                ids[n] = uid
    for key, value in env.items():
        match = _CLIENT_ID_VAR.match(key)
        if match and is_digits(value.strip()) and int(match.group(1)) >= 1:
            ids[int(match.group(1))] = int(value.strip())
    return dict(sorted(ids.items()))


def parse_fleet_ids(text: str) -> dict[int, int]:
    """'1:111,3:333' -> {1: 111, 3: 333} (the FLEET_BOT_IDS format)."""
    ids: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        index, sep, uid = part.partition(":")
        if not (sep and is_digits(index.strip()) and is_digits(uid.strip())):
            raise ConfigError(f"{FLEET_IDS_VAR} must look like 1:<user id>,2:<user id>")
        ids[int(index)] = int(uid)
    return ids


def format_fleet_ids(ids: Mapping[int, int]) -> str:
    return ",".join(f"{n}:{uid}" for n, uid in sorted(ids.items()))


def user_id_from_token(token: str) -> int | None:
    """The bot's user id: a Discord bot token's first segment is the base64 of the user id."""
    first = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if is_digits(decoded) else None


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


def parse_rejoin_delays(env: Mapping[str, str]) -> tuple[float, ...]:
    """VOICE_REJOIN_DELAYS: seconds before each try to rejoin voice after a drop, e.g. "1,5,15" (the default).
    The tests shorten the later tries; production keeps the default."""
    raw = env.get("VOICE_REJOIN_DELAYS", "").strip()
    if not raw:
        return DEFAULT_VOICE_REJOIN_DELAYS
    parts = [p.strip() for p in raw.split(",")]
    if not 1 <= len(parts) <= 5 or not all(_SECONDS.match(p) and 0 <= float(p) <= 300 for p in parts):
        raise ConfigError("VOICE_REJOIN_DELAYS must be 1 to 5 comma-separated seconds from 0 to 300, e.g. 1,5,15")
    return tuple(float(p) for p in parts)
def parse_disabled_commands(env: Mapping[str, str]) -> frozenset[str]:
    """DISABLED_COMMANDS=lyrics,seek,/queue show -> {"lyrics", "seek", "queue show"}.

    Only the spelling is checked here; whether each names a command is checked against the command tree
    (utils/command_switches.py), which configuration does not know.
    """
    names = set()
    for entry in env.get("DISABLED_COMMANDS", "").split(","):
        name = " ".join(entry.strip().lstrip("/").lower().split())
        if not name:
            continue
        if not all(_COMMAND_WORD.match(word) for word in name.split()):
            raise ConfigError(f"DISABLED_COMMANDS entry {entry.strip()!r} is not a command name "
                              "(list them like lyrics,seek)")
        names.add(name)
    return frozenset(names)


def parse_rate(env: Mapping[str, str], var: str, *, default: Rate) -> Rate | None:
    """'5/10' -> 5 uses per 10 seconds; 'off' (or 0) -> None, no cooldown; empty -> `default`."""
    raw = env.get(var, "").strip().lower()
    if not raw:
        return default
    if raw in ("off", "0"):
        return None
    uses, sep, seconds = raw.partition("/")
    try:
        rate = (int(uses), float(seconds))
    except ValueError:
        rate = None
    if not sep or rate is None or not is_digits(uses.strip()) or rate[0] < 1 or not 0 < rate[1] <= 3600:
        raise ConfigError(f"{var} must look like 5/10 (5 uses per 10 seconds, per member and server) or off")
    return rate


def _parse_int(env: Mapping[str, str], var: str, *, default: int | None, minimum: int) -> int | None:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    if not is_digits(raw) or int(raw) < minimum:
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
