"""Which bots a fleet tool acts on: every bot with a token (BOT_TOKEN_n, BOT_TOKEN_FILE_n or a file in
BOT_TOKEN_DIR), or a `--bots 1,3-5` selection of them.

Shared by process_manager.py and register_commands.py. Pure standard library (process_manager.py
must stay lean: no discord/wavelink import reaches it through here). Errors name variables, never values.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from utils.config import ConfigError, discover_bot_indices
from utils.formatting import is_digits


class SelectionError(Exception):
    """A bot selection that cannot run; the message names variables, never values."""


def parse_bot_selection(text: str) -> list[int]:
    """'1,3-5' -> [1, 3, 4, 5]. Raises ValueError on anything else."""
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        low, sep, high = part.partition("-")
        if not is_digits(low.strip()) or (sep and not is_digits(high.strip())):
            raise ValueError(f"invalid bot selection {text!r}: use numbers and ranges like 1,3-5")
        first, last = int(low), int(high) if sep else int(low)
        if first < 1 or last < first:
            raise ValueError(f"invalid bot range {part!r}: bots are numbered from 1, ranges go low-high")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def bot_selection_arg(text: str) -> list[int]:
    """`parse_bot_selection` as an argparse `type=`: a bad value is a usage error (exit 2)."""
    try:
        return parse_bot_selection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def select_bots(selection: list[int] | None, env: Mapping[str, str]) -> list[int]:
    """The bots to act on: `selection` (each must have a token) or every bot with a token in `env`."""
    try:
        found = discover_bot_indices(env)
    except ConfigError as exc:
        raise SelectionError(str(exc)) from None
    if selection is None:
        if not found:
            single = ("BOT_TOKEN is set, but only bot.py reads it (the single-bot form, with BOT_ID)"
                      if env.get("BOT_TOKEN", "").strip() else "a plain BOT_TOKEN (with BOT_ID) is for bot.py alone")
            raise SelectionError("no bot token configured: set BOT_TOKEN_1, BOT_TOKEN_2, ... (one per bot) "
                                 "in .env or the environment, or BOT_TOKEN_FILE_n / BOT_TOKEN_DIR for token "
                                 f"files; {single}")
        return found
    missing = [f"BOT_TOKEN_{n}" for n in selection if n not in found]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise SelectionError(f"{', '.join(missing)} {verb} not set, but selected with --bots")
    return selection
