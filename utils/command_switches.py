"""DISABLED_COMMANDS: slash commands taken out of a bot's command tree, and so out of what
register_commands.py registers and of what the bot answers.

Generic over whatever the cogs define: names are qualified names from the tree ("seek", or "queue show"
for a subcommand of a group), so commands added later need no change here. A name that matches no
command is a configuration error (exit 78) rather than a warning: a typo ("lyric") would otherwise
leave on a command the operator meant to turn off, and both the bots and register_commands.py stop with
a one-line message naming the unknown entry and the known commands.

A command that is disabled but still registered with Discord (registered before it was disabled) reaches
the bot as an unknown command; `utils/replies.py` answers it "This command is turned off here.".
"""

from __future__ import annotations

from collections.abc import Iterable

from discord import app_commands

from utils.config import ConfigError


def command_names(tree: app_commands.CommandTree) -> list[str]:
    """Qualified names of every global slash command and group in `tree` ("play", "queue", "queue show")."""
    return [command.qualified_name for command in tree.walk_commands()]


def unknown_names(tree: app_commands.CommandTree, names: Iterable[str]) -> list[str]:
    known = set(command_names(tree))
    return sorted(name for name in names if name not in known)


def check_names(tree: app_commands.CommandTree, names: Iterable[str]) -> None:
    """ConfigError naming the entries of DISABLED_COMMANDS that are no command of `tree`."""
    unknown = unknown_names(tree, names)
    if unknown:
        known = ", ".join(sorted(n for n in command_names(tree) if " " not in n))
        raise ConfigError(f"DISABLED_COMMANDS names no such command: {', '.join(unknown)} (commands: {known})")


def disable_commands(tree: app_commands.CommandTree, names: Iterable[str]) -> list[str]:
    """Remove the named commands from `tree`; returns the qualified names removed (unknown names are skipped).

    A group left without subcommands goes too: Discord would show it as a command that does nothing.
    """
    removed = []
    for name in sorted(set(names), key=lambda n: n.count(" ")):  # groups before their subcommands
        command = tree.get_command(name) if " " not in name else _find(tree, name)
        if command is None:
            continue
        parent = command.parent
        if parent is None:
            tree.remove_command(command.name)
        else:
            parent.remove_command(command.name)
            while parent is not None and not parent.commands:
                grand = parent.parent
                if grand is None:
                    tree.remove_command(parent.name)
                else:
                    grand.remove_command(parent.name)
                parent = grand
        removed.append(name)
    return removed


def _find(tree: app_commands.CommandTree, qualified: str) -> app_commands.Command | app_commands.Group | None:
    return next((c for c in tree.walk_commands() if c.qualified_name == qualified), None)
