"""A bot process holds only its own token: the environment it runs with carries no sibling's token.

process_manager.py builds each child's environment with `bot_environment`. Under supervisord every
program gets the same environment (every BOT_TOKEN_n), so bot.py calls `reexec_with_own_token` before
it imports discord: if its initial environment holds another bot's token, it replaces itself (same pid,
same argv: supervisors see nothing) by a process started with the filtered environment. Unsetting
os.environ would not do: /proc/PID/environ shows the environment block the process was started with.
Either way the fleet's user ids travel in FLEET_BOT_IDS, so the siblings are still known without tokens.
Standard library only (process_manager.py imports this).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence

from utils.config import (
    FLEET_IDS_VAR, ConfigError, fleet_user_ids, format_fleet_ids, resolve_bot_index, token_source,
)

# Every variable that holds a token or says where one is.
_TOKEN_BEARING = re.compile(r"^BOT_TOKEN(_\d+|_FILE_\d+|_DIR)?$")


def is_token_var(name: str) -> bool:
    return bool(_TOKEN_BEARING.match(name))


def bot_environment(env: Mapping[str, str], bot_index: int, fleet_ids: Mapping[int, int]) -> dict[str, str]:
    """`env` for bot n: every token variable dropped but bot n's own source, and FLEET_BOT_IDS set.

    A token file is handed on as BOT_TOKEN_FILE_n with an absolute path, also one found in BOT_TOKEN_DIR
    (the directory holds the siblings' files).
    """
    kept = {k: v for k, v in env.items() if not is_token_var(k) and k != FLEET_IDS_VAR}
    source = token_source(env, bot_index)
    if source is not None:
        if source.path is None:
            kept[source.var] = env[source.var]
        else:  # absolute: process_manager.py's children run in the repository, maybe not where it was started
            kept[f"BOT_TOKEN_FILE_{bot_index}"] = os.path.abspath(source.path)
    kept[FLEET_IDS_VAR] = format_fleet_ids(fleet_ids)
    return kept


def read_env_file(path: str) -> dict[str, str]:
    """The variables of a dotenv file (missing file: none)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def own_environment(env: Mapping[str, str], env_file: str, bot_index: int | None) -> tuple[int, dict[str, str]]:
    """(bot number, the environment bot n runs with): `env` over the dotenv file, filtered by `bot_environment`.

    The siblings' tokens in `env` or the file are read here only to decode their user ids into FLEET_BOT_IDS.
    """
    merged = {**read_env_file(env_file), **env}
    index = resolve_bot_index(bot_index, merged)
    return index, bot_environment(merged, index, fleet_user_ids(merged))


def needs_reexec(initial: Mapping[str, str], kept: Mapping[str, str]) -> bool:
    """The process's initial environment holds a token variable that bot n must not keep."""
    return any(is_token_var(k) and kept.get(k) != v for k, v in initial.items())


def _peek_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """--bot and --env-file as bot.py's parser reads them; None when they do not parse (bot.py reports it)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--bot", type=int)
    parser.add_argument("--env-file", default=".env")
    try:
        return parser.parse_known_args(list(argv))[0]
    except (argparse.ArgumentError, SystemExit):
        return None


def reexec_with_own_token(argv: Sequence[str]) -> None:
    """Replace this process by itself, with only its own token in the environment, if it holds another's.

    Returns when there is nothing to drop or the configuration is broken (bot.py then reports it, exit 78).
    os.execve keeps the pid, the process group and the open stdout/stderr, so a supervisor's signals and
    exit-code handling are unaffected.
    """
    args = _peek_args(argv)
    if args is None:
        return
    initial = dict(os.environ)
    try:
        _, kept = own_environment(initial, args.env_file, args.bot)
    except ConfigError:
        return
    if needs_reexec(initial, kept):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, kept)
