"""`process_manager.py --check`: is each bot's token accepted by Discord, and is each Lavalink node usable?

One line per finding, for the operator; tokens and passwords never appear in them (a line names the
variable to fix). Standard library only (urllib), so process_manager.py stays lean.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO

from utils.config import ConfigError, parse_lavalink_nodes, read_token

DEFAULT_API_BASE = "https://discord.com/api/v10"
USER_AGENT = "DiscordBot (music-fleet process_manager, 0.1)"  # Discord's edge rejects urllib's default agent


def _http_get_json(url: str, headers: Mapping[str, str], timeout: float) -> object:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) URLs only)
        return json.loads(response.read().decode("utf-8"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    return str(exc) or type(exc).__name__


def check_bot(index: int, env: Mapping[str, str], timeout: float = 10.0) -> tuple[bool, str]:
    """GET /users/@me with the bot's token: (ok, one line for the operator)."""
    try:
        var, token = read_token(env, index)  # BOT_TOKEN_n, BOT_TOKEN_FILE_n or BOT_TOKEN_DIR
    except ConfigError as exc:
        return False, f"Bot {index}: ERROR — {exc}"
    base = (env.get("DISCORD_API_BASE", "").strip() or DEFAULT_API_BASE).rstrip("/")
    try:
        user = _http_get_json(f"{base}/users/@me", {"Authorization": f"Bot {token}"}, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return False, f"Bot {index}: REJECTED (401) — check {var}"
        return False, f"Bot {index}: ERROR — HTTP {exc.code} from {base}"
    except (OSError, ValueError) as exc:
        return False, f"Bot {index}: ERROR — {_reason(exc)}"
    if not isinstance(user, dict):
        return False, f"Bot {index}: ERROR — unexpected reply from {base}/users/@me"
    return True, f"Bot {index}: OK — {user.get('username', '?')} (id {user.get('id', '?')})"


def check_lavalink(identifier: str, uri: str, password: str, timeout: float = 10.0) -> tuple[bool, str]:
    """GET /v4/info on one Lavalink node: (ok, one line)."""
    label = f"Lavalink {identifier} {uri}"
    try:
        info = _http_get_json(f"{uri}/v4/info", {"Authorization": password}, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return False, f"{label}: UNAUTHORIZED — check LAVALINK_PASSWORD"
        return False, f"{label}: ERROR — HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{label}: UNREACHABLE — {_reason(exc)}"
    version = info.get("version", {}) if isinstance(info, dict) else {}
    semver = version.get("semver", "?") if isinstance(version, dict) else version
    return True, f"{label}: OK — version {semver}"


def run_check(indices: Sequence[int], env: Mapping[str, str], out: IO[str]) -> int:
    """Every selected token against Discord, every Lavalink node; 0 if all fine, else 1."""
    ok = True
    for index in indices:
        good, line = check_bot(index, env)
        ok &= good
        print(line, file=out, flush=True)
    try:
        nodes = parse_lavalink_nodes(env)
    except ConfigError as exc:
        print(f"Lavalink: ERROR — {exc}", file=out, flush=True)
        return 1
    for node in nodes:
        good, line = check_lavalink(node.identifier, node.uri, node.password)
        ok &= good
        print(line, file=out, flush=True)
    return 0 if ok else 1
