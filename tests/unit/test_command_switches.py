"""DISABLED_COMMANDS and the cooldown settings: parsing, the tree they act on, the answers they cause."""

from __future__ import annotations

from types import SimpleNamespace

import discord
import pytest
from discord import app_commands

import register_commands as rc
from bot import collect_commands
from utils.command_switches import check_names, command_names, disable_commands
from utils.config import ConfigError, Settings
from utils.replies import NO_LONGER_EXISTS, TURNED_OFF, describe_error, report_error, unknown_command_text

TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAx.AAAAAA.unit-test-token-secret-value"


def settings(**env: str) -> Settings:
    return Settings.from_env(1, {"BOT_TOKEN_1": TOKEN, **env})


# ---- configuration ---------------------------------------------------------------------------------------

def test_disabled_commands_are_read_loosely_spelled():
    assert settings(DISABLED_COMMANDS=" Seek, /lyrics ,, queue   show ").disabled_commands == {
        "seek", "lyrics", "queue show"}
    assert settings().disabled_commands == frozenset()


@pytest.mark.parametrize("raw", ["seek;lyrics", "se ek!", "x" * 33])
def test_a_disabled_entry_that_cannot_be_a_name_is_a_config_error(raw):
    with pytest.raises(ConfigError, match="DISABLED_COMMANDS entry .* is not a command name"):
        settings(DISABLED_COMMANDS=raw)


def test_cooldown_defaults_and_overrides():
    default = settings()
    assert default.play_cooldown == (5, 10.0) and default.control_cooldown == (10, 10.0)
    custom = settings(COOLDOWN_PLAY="3/7.5", COOLDOWN_CONTROLS="off")
    assert custom.play_cooldown == (3, 7.5) and custom.control_cooldown is None
    assert settings(COOLDOWN_PLAY="0").play_cooldown is None


@pytest.mark.parametrize("raw", ["5", "5/", "/10", "0/10", "5/0", "-1/10", "5/nan", "5/inf", "²/10", "five/10"])
def test_a_malformed_cooldown_is_a_config_error(raw):
    with pytest.raises(ConfigError, match=r"COOLDOWN_PLAY must look like 5/10"):
        settings(COOLDOWN_PLAY=raw)


# ---- the tree ---------------------------------------------------------------------------------------------

async def test_disabled_commands_leave_the_tree_and_the_payload():
    full = {c["name"] for c in await rc.build_payload(settings())}
    assert {"seek", "volume", "play"} <= full
    payload = await rc.build_payload(settings(DISABLED_COMMANDS="seek,volume"))
    assert {c["name"] for c in payload} == full - {"seek", "volume"}
    tree = await collect_commands(settings(DISABLED_COMMANDS="seek"))
    assert tree.get_command("seek") is None and tree.get_command("play") is not None


async def test_an_unknown_disabled_name_is_a_config_error_listing_the_commands():
    with pytest.raises(ConfigError) as caught:
        await collect_commands(settings(DISABLED_COMMANDS="seek,lyric"))
    message = str(caught.value)
    assert message.startswith("DISABLED_COMMANDS names no such command: lyric (commands: ")
    assert "seek" not in message.split("(")[0] and "play" in message and "\n" not in message


def group_tree() -> app_commands.CommandTree:
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))

    async def noop(interaction) -> None: ...

    filters = app_commands.Group(name="filter", description="Filters")
    filters.add_command(app_commands.Command(name="bass", description="Bass", callback=noop))
    filters.add_command(app_commands.Command(name="reset", description="Reset", callback=noop))
    tree.add_command(filters)
    tree.add_command(app_commands.Command(name="play", description="Play", callback=noop))
    return tree


async def test_subcommands_are_disabled_by_qualified_name_and_an_emptied_group_goes():
    tree = group_tree()
    assert command_names(tree) == ["filter", "filter bass", "filter reset", "play"]
    check_names(tree, ["filter bass"])
    assert disable_commands(tree, ["filter bass"]) == ["filter bass"]
    assert command_names(tree) == ["filter", "filter reset", "play"]
    disable_commands(tree, ["filter reset"])
    assert command_names(tree) == ["play"]
    with pytest.raises(ConfigError, match="no such command: filter bass"):
        check_names(tree, ["filter bass"])


# ---- what users are told ----------------------------------------------------------------------------------

def test_a_stale_disabled_command_is_turned_off_and_another_unknown_one_no_longer_exists():
    disabled = frozenset({"seek", "filter"})
    assert unknown_command_text(app_commands.CommandNotFound("seek", []), disabled) == TURNED_OFF
    assert unknown_command_text(app_commands.CommandNotFound("bass", ["filter"]), disabled) == TURNED_OFF
    assert unknown_command_text(app_commands.CommandNotFound("oldname", []), disabled) == NO_LONGER_EXISTS
    assert TURNED_OFF == "This command is turned off here."


@pytest.mark.parametrize("retry_after, shown", [(9.99, "10"), (3.2, "4"), (3.0, "3"), (0.01, "1")])
def test_the_cooldown_answer_rounds_the_wait_up(retry_after, shown):
    error = app_commands.CommandOnCooldown(app_commands.Cooldown(5, 10), retry_after)
    assert describe_error(error) == f"Slow down a little: try again in {shown} s."


class Response:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def is_done(self) -> bool:
        return bool(self.calls)

    async def autocomplete(self, choices) -> None:
        self.calls.append(("autocomplete", choices))

    async def send_message(self, content=None, **kwargs) -> None:
        self.calls.append(("message", (content, kwargs.get("ephemeral"))))


def stale_interaction(kind: discord.InteractionType) -> SimpleNamespace:
    client = SimpleNamespace(settings=SimpleNamespace(disabled_commands=frozenset({"play"})))
    return SimpleNamespace(type=kind, command=None, data={"name": "play"}, client=client, guild_id=1,
                           response=Response())


async def test_a_stale_disabled_command_answers_ephemerally_and_its_autocomplete_with_no_choices():
    command = stale_interaction(discord.InteractionType.application_command)
    await report_error(command, app_commands.CommandNotFound("play", []))
    assert command.response.calls == [("message", (TURNED_OFF, True))]
    typing = stale_interaction(discord.InteractionType.autocomplete)
    await report_error(typing, app_commands.CommandNotFound("play", []))
    assert typing.response.calls == [("autocomplete", [])]


async def test_every_command_but_the_read_only_ones_has_a_cooldown():
    """A new command that changes the player or asks the audio server must not be spammable: it gets a cooldown."""
    tree = await collect_commands(settings())
    uncooled = set()
    for command in tree.walk_commands():
        if isinstance(command, app_commands.Command):
            # discord.py's cooldown checks are closures made by _create_cooldown_decorator
            if not any(getattr(check, "__qualname__", "").startswith("_create_cooldown_decorator")
                       for check in command.checks):
                uncooled.add(command.qualified_name)
    assert uncooled == {"ping", "queue", "nowplaying"}
