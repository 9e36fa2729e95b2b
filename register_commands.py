"""Register the slash commands of every bot of the fleet: `python register_commands.py [--guild ID] [--dry-run]`.

The payload is built from the same cogs the bots load (`commands.EXTENSIONS`), never from a second list.
Each bot is its own application, so the payload is uploaded once per token, and only when what Discord
has differs from it (a bulk overwrite: commands missing from the payload are deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient, Route

from bot import CommandCollector, collect_commands  # noqa: F401 (CommandCollector: where it used to live)
from utils.config import EX_CONFIG, ConfigError, Settings
from utils.endpoints import apply_endpoint_overrides
from utils.selection import SelectionError, bot_selection_arg, select_bots

EPILOG = """\
Environment (or --env-file): BOT_TOKEN_1..N, one token per bot (or BOT_TOKEN_FILE_n, a file holding it,
or BOT_TOKEN_DIR, a directory of files named BOT_TOKEN_n); TEST_GUILD_ID, the guild to register in
unless --guild or --global says otherwise; DISABLED_COMMANDS, commands left out (e.g. lyrics,seek: a
registered one among them is deleted); DISCORD_API_BASE, another REST base (a proxy, the sandbox).
Tokens are never printed.

Compared fields: type, name, description, options (recursively: type, name, description, required, choices,
channel_types, autocomplete, min/max value and length), nsfw, default_member_permissions, localizations, and
for global commands also dm_permission, contexts and integration_types (Discord ignores them per guild).

Output: one line per bot, e.g.
  Bot 1 (Music 1): unchanged (18 commands)
  Bot 2 (Music 2): updated: +play ~queue -old
  Bot 3: FAILED: token rejected (401 Unauthorized): check BOT_TOKEN_3

Exit codes: 0 every bot succeeded, 1 at least one bot FAILED, 2 usage error,
78 no token configured, a selected bot has no (valid) token, or DISABLED_COMMANDS names no command.
Global commands may take up to an hour to show up in clients; guild commands (--guild) are instant.
Rate limits (429) are waited out, up to --max-wait seconds per request."""

# Field -> value Discord reports when the field is absent or null.
_COMMAND_DEFAULTS: dict[str, Any] = {
    "type": 1, "name": None, "description": "", "options": [], "nsfw": False, "dm_permission": True,
    "default_member_permissions": None, "contexts": None, "integration_types": None,
    "name_localizations": None, "description_localizations": None,
}
_OPTION_DEFAULTS: dict[str, Any] = {
    "type": None, "name": None, "description": "", "required": False, "choices": [], "channel_types": [],
    "autocomplete": False, "min_value": None, "max_value": None, "min_length": None, "max_length": None,
    "options": [], "name_localizations": None, "description_localizations": None,
}
_GLOBAL_ONLY = ("dm_permission", "contexts", "integration_types")
_SERVER_DEFAULTED = ("contexts", "integration_types")  # sent as null: Discord fills in the app's defaults
_TYPE_SUFFIX = {2: " (user)", 3: " (message)"}

@dataclass
class Diff:
    """What a bulk overwrite with our payload would change, by command label."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # label -> changed field paths

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """'+play ~queue -old'."""
        return " ".join([*(f"+{n}" for n in self.added), *(f"~{n}" for n in self.changed),
                         *(f"-{n}" for n in self.removed)])


def _label(cmd: Mapping[str, Any]) -> str:
    return f"{cmd['name']}{_TYPE_SUFFIX.get(int(cmd.get('type') or 1), '')}"


def _localizations(value: Any) -> dict[str, str] | None:
    return dict(sorted(value.items())) if value else None


def _normalize_option(opt: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: opt.get(key) if opt.get(key) is not None else default for key, default in _OPTION_DEFAULTS.items()}
    out["choices"] = [{"name": c["name"], "value": c["value"],
                       "name_localizations": _localizations(c.get("name_localizations"))} for c in out["choices"]]
    out["channel_types"] = sorted(out["channel_types"])
    out["options"] = [_normalize_option(o) for o in out["options"]]
    for key in ("name_localizations", "description_localizations"):
        out[key] = _localizations(out[key])
    return out


def normalize_command(cmd: Mapping[str, Any], *, guild: bool, fields: Sequence[str] | None = None) -> dict[str, Any]:
    """The compared fields of a command (ours or Discord's), with Discord's defaults filled in."""
    keys = [k for k in (fields or _COMMAND_DEFAULTS) if not (guild and k in _GLOBAL_ONLY)]
    out = {k: cmd.get(k) if cmd.get(k) is not None else _COMMAND_DEFAULTS.get(k) for k in keys}
    out["type"] = int(out.get("type") or 1)
    if out.get("default_member_permissions") is not None:
        out["default_member_permissions"] = str(out["default_member_permissions"])
    if "options" in out:
        out["options"] = [_normalize_option(o) for o in out["options"]]
    for key in ("name_localizations", "description_localizations"):
        if key in out:
            out[key] = _localizations(out[key])
    return out


def _changed_fields(ours: Any, theirs: Any, path: str) -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [p for k in ours for p in _changed_fields(ours[k], theirs.get(k), f"{path}.{k}" if path else k)]
    is_options = path.endswith("options") and isinstance(ours, list) and isinstance(theirs, list)
    if is_options and [o["name"] for o in ours] == [o["name"] for o in theirs]:
        return [p for a, b in zip(ours, theirs) for p in _changed_fields(a, b, f"{path}.{a['name']}")]
    return [] if ours == theirs else [path]


def diff_commands(local: Sequence[Mapping[str, Any]], remote: Sequence[Mapping[str, Any]], *, guild: bool) -> Diff:
    """Compare our payload with Discord's commands on the fields we send (plus the known ones)."""
    mine = {(int(c.get("type") or 1), c["name"]): c for c in local}
    theirs = {(int(c.get("type") or 1), c["name"]): c for c in remote}
    diff = Diff(removed=[_label(c) for key, c in theirs.items() if key not in mine])
    for key, cmd in mine.items():
        if key not in theirs:
            diff.added.append(_label(cmd))
            continue
        fields = [f for f in _COMMAND_DEFAULTS if not (f in _SERVER_DEFAULTED and cmd.get(f) is None)]
        ours = normalize_command(cmd, guild=guild, fields=fields)
        other = normalize_command(theirs[key], guild=guild, fields=fields)
        if changed := _changed_fields(ours, other, ""):
            diff.changed[_label(cmd)] = changed
    return diff


async def build_payload(settings: Settings) -> list[dict[str, Any]]:
    """The command payload exactly as `tree.sync()` would send it, from the bots' own cogs, less DISABLED_COMMANDS.

    No login, no cog machinery: see bot.CommandCollector. Raises ConfigError for an unknown disabled name.
    """
    tree = await collect_commands(settings)
    translator = tree.translator
    if translator is not None:
        return [await c.get_translated_payload(tree, translator) for c in tree.get_commands()]
    return [c.to_dict(tree) for c in tree.get_commands()]


def _reason(exc: BaseException, settings: Settings) -> str:
    """One line for the operator; names the token variable, never the token."""
    if isinstance(exc, discord.LoginFailure):
        return f"token rejected (401 Unauthorized): check {settings.token_var}"
    if isinstance(exc, discord.RateLimited):
        return f"rate limited for {exc.retry_after:.0f} s (more than --max-wait); try again later"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, discord.Forbidden):
        text += " (is the bot in that guild, invited with the applications.commands scope?)"
    for secret in settings.secrets:
        text = text.replace(secret, "[redacted]")
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


async def sync_bot(settings: Settings, payload: list[dict[str, Any]], guild_id: int | None, *, dry_run: bool,
                   clear: bool, max_wait: float) -> tuple[bool, str]:
    """Log in as one bot and bring its commands in line. Returns (ok, its result line)."""
    http = HTTPClient(asyncio.get_running_loop(), max_ratelimit_timeout=max_wait)
    name = f"Bot {settings.bot_index}"
    try:
        user = await http.static_login(settings.token)
        name = f"{name} ({user['username']})"
        app_id = int((await http.application_info())["id"])
        scope = "/applications/{application_id}" + ("/guilds/{guild_id}" if guild_id else "") + "/commands"
        params = {"application_id": app_id, **({"guild_id": guild_id} if guild_id else {})}
        remote = await http.request(Route("GET", scope, **params), params={"with_localizations": "true"})
        target = [] if clear else payload
        diff = diff_commands(target, remote, guild=guild_id is not None)
        if not diff:
            return True, f"{name}: " + ("nothing to clear" if clear else f"unchanged ({len(target)} commands)")
        if dry_run:
            details = "".join(f"\n    ~{label}: {', '.join(paths)}" for label, paths in diff.changed.items())
            return True, f"{name}: would {'clear' if clear else 'update'}: {diff.summary()}{details}"
        await http.request(Route("PUT", scope, **params), json=target)
        return True, f"{name}: " + (f"cleared ({len(remote)} commands removed)" if clear
                                    else f"updated: {diff.summary()}")
    except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
        return False, f"{name}: FAILED: {_reason(exc, settings)}"
    finally:
        await http.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="register_commands.py", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Register the bots' slash commands (built from the cogs in commands/) for every BOT_TOKEN_n,\n"
                    "globally or in one guild. Uploads only when Discord's copy differs (bulk overwrite).")
    add = parser.add_argument
    add("--bots", type=bot_selection_arg, metavar="LIST",
        help="bots to register, e.g. 1,3-5 (default: every BOT_TOKEN_n)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--guild", type=int, metavar="ID", help="register in this guild only (instant; default: "
                       "TEST_GUILD_ID if set, else global)")
    where.add_argument("--global", dest="global_", action="store_true", help="register globally even if "
                       "TEST_GUILD_ID is set")
    add("--dry-run", action="store_true", help="print what would change (added +, changed ~ with the fields, "
        "removed -) and upload nothing")
    add("--clear", action="store_true", help="remove every command of the scope (upload an empty list)")
    add("--max-wait", type=float, default=300.0, metavar="S", help="longest rate-limit wait before giving up on a "
        "bot (default: %(default)g; at least 30)")
    add("--env-file", default=".env", metavar="PATH", help="dotenv file to load first (default: .env; variables "
        "already in the environment win)")
    return parser.parse_args(argv)


def load_settings(selection: list[int] | None, env: Mapping[str, str]) -> list[Settings]:
    """Settings of every selected bot; raises ConfigError/SelectionError naming the variable."""
    return [Settings.from_env(n, env) for n in select_bots(selection, env)]


def resolve_guild(args: argparse.Namespace, settings: Settings) -> int | None:
    if args.global_:
        return None
    return args.guild if args.guild is not None else settings.test_guild_id


async def run(args: argparse.Namespace, all_settings: list[Settings]) -> int:
    first = all_settings[0]
    apply_endpoint_overrides(first.api_base, None)
    try:
        payload = await build_payload(first)
    except ConfigError as exc:
        print(f"register_commands.py: {exc}", file=sys.stderr)
        return EX_CONFIG
    guild_id = resolve_guild(args, first)
    what = "removing all commands" if args.clear else f"{len(payload)} commands"
    if first.disabled_commands and not args.clear:
        what += f" (turned off by DISABLED_COMMANDS: {', '.join(sorted(first.disabled_commands))})"
    where = f"in guild {guild_id}" if guild_id else "globally"
    print(f"{what} {where} for {len(all_settings)} bot(s){' (dry run)' if args.dry_run else ''}", flush=True)
    ok_all = True
    for settings in all_settings:
        ok, line = await sync_bot(settings, payload, guild_id, dry_run=args.dry_run, clear=args.clear,
                                  max_wait=args.max_wait)
        ok_all &= ok
        print(line, flush=True)
    return 0 if ok_all else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv(args.env_file, override=False)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # 429 waits show
    try:
        all_settings = load_settings(args.bots, os.environ)
    except (ConfigError, SelectionError) as exc:
        print(f"register_commands.py: {exc}", file=sys.stderr)
        return EX_CONFIG
    return asyncio.run(run(args, all_settings))


if __name__ == "__main__":
    sys.exit(main())
