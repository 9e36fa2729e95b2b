"""register_commands.py: the payload comes from the bots' cogs; the diff/normalization logic; CLI helpers."""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path
from typing import Any

import pytest
from discord.ext import tasks

import register_commands as rc
from bot import MusicBot, setup_extension
from commands import EXTENSIONS
from utils.config import Settings
from utils.selection import SelectionError

TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAx.AAAAAA.unit-test-token-secret-value"  # user id 100000000000000001


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(1, {"BOT_TOKEN_1": TOKEN})


@pytest.fixture
async def payload(settings: Settings) -> list[dict[str, Any]]:
    return await rc.build_payload(settings)


async def test_payload_holds_every_command_the_cogs_define(settings, payload):
    bot = MusicBot(settings)
    for extension in EXTENSIONS:
        await setup_extension(bot, extension)  # as the bot itself registers its cogs
    try:
        tree_names = [c.name for c in bot.tree.get_commands()]
        cog_names = {c.name for cog in bot.cogs.values() for c in cog.get_app_commands()}
    finally:
        await bot.close()
    assert [c["name"] for c in payload] == tree_names
    assert cog_names <= set(tree_names) and len(tree_names) == len(set(tree_names))
    assert all(c["description"] for c in payload if c["type"] == 1)


async def test_payload_is_what_tree_sync_would_upload(settings, payload):
    bot = MusicBot(settings)
    for extension in EXTENSIONS:
        await setup_extension(bot, extension)  # as the bot itself registers its cogs
    uploaded: list[Any] = []

    async def capture(application_id: int, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        uploaded.append((application_id, payload))
        return []

    bot.http.bulk_upsert_global_commands = capture  # type: ignore[method-assign]
    try:
        await bot.tree.sync()
    finally:
        await bot.close()
    assert uploaded == [(settings.client_id, payload)]


async def test_payload_is_unchanged_from_a_bot_with_every_cog_loaded(settings, payload):
    """register_commands.py used to build the payload from a MusicBot with its cogs loaded (and their machinery
    running); the CommandCollector leaves that out, and the payload must not change by a byte."""
    bot = MusicBot(settings)
    try:
        for extension in EXTENSIONS:
            await setup_extension(bot, extension)  # as the bot itself registers its cogs
        before = [c.to_dict(bot.tree) for c in bot.tree.get_commands()]
    finally:
        await bot.close()
    assert payload == before


async def test_building_the_payload_starts_nothing(tmp_path: Path, monkeypatch, caplog):
    """No snapshot sampler, no restore, no watchdog sweep, no Lavalink: only the command definitions are read."""
    state = tmp_path / "state"
    (state / "bot-1").mkdir(parents=True)
    snapshot = state / "bot-1" / "guild-1.json"
    snapshot.write_bytes(b"not a snapshot")  # a restore would rename it guild-1.bad
    (state / "bot-1" / "lavalink-sessions.json").write_text("{}")
    files_before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in state.rglob("*") if p.is_file()}
    settings = Settings.from_env(1, {"BOT_TOKEN_1": TOKEN, "STATE_DIR": str(state),
                                     "LAVALINK_URI": "http://127.0.0.1:9"})
    loops: list[Any] = []
    monkeypatch.setattr(tasks.Loop, "start", lambda loop, *args, **kwargs: loops.append(loop))  # every cog task
    caplog.set_level(logging.DEBUG)

    await rc.build_payload(settings)
    for _ in range(5):
        await asyncio.sleep(0)  # let anything it scheduled run a step

    assert loops == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in state.rglob("*") if p.is_file()} == files_before
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("bot", "commands", "utils", "wavelink")]
    assert ours == []


def as_discord_returns(cmd: dict[str, Any], guild_id: int | None = None) -> dict[str, Any]:
    """A command as Discord's GET answers it: ids added, defaults spelled out or omitted, permissions as str."""
    out = copy.deepcopy(cmd)
    out.update(id="1", application_id="2", version="3", name_localizations=None, description_localizations=None)
    if out.get("default_member_permissions") is not None:
        out["default_member_permissions"] = str(out["default_member_permissions"])
    out["integration_types"] = out.get("integration_types") or [0]
    if guild_id is not None:
        out["guild_id"] = str(guild_id)
        for key in rc._GLOBAL_ONLY:
            out.pop(key, None)

    def strip(options: list[dict[str, Any]]) -> None:
        for opt in options:
            if opt.get("required") is False:
                del opt["required"]
            strip(opt.get("options", []))

    strip(out.get("options", []))
    if not out.get("options"):
        out.pop("options", None)
    return out


@pytest.mark.parametrize("guild_id", [None, 123])
async def test_a_round_trip_through_discord_is_no_difference(payload, guild_id):
    remote = [as_discord_returns(c, guild_id) for c in reversed(payload)]  # order of commands does not matter
    diff = rc.diff_commands(payload, remote, guild=guild_id is not None)
    assert not diff and diff.summary() == ""


def test_added_changed_removed_are_named_with_the_changed_fields():
    ours = [{"name": "ping", "description": "new", "type": 1},
            {"name": "play", "description": "Play", "type": 1,
             "options": [{"type": 3, "name": "query", "description": "q", "required": True}]},
            {"name": "skip", "description": "Skip", "type": 1}]
    theirs = [{"name": "ping", "description": "old", "type": 1, "nsfw": True},
              {"name": "play", "description": "Play", "type": 1,
               "options": [{"type": 3, "name": "query", "description": "q"}]},
              {"name": "gone", "description": "x", "type": 1}]
    diff = rc.diff_commands(ours, theirs, guild=False)
    assert diff.added == ["skip"] and diff.removed == ["gone"]
    assert diff.changed == {"ping": ["description", "nsfw"], "play": ["options.query.required"]}
    assert diff.summary() == "+skip ~ping ~play -gone"


def test_a_renamed_or_reordered_option_changes_the_options_field():
    ours = [{"name": "move", "description": "d", "options": [{"type": 4, "name": "src", "description": "a"},
                                                              {"type": 4, "name": "dst", "description": "b"}]}]
    theirs = [{"name": "move", "description": "d", "options": [{"type": 4, "name": "dst", "description": "b"},
                                                                {"type": 4, "name": "src", "description": "a"}]}]
    assert rc.diff_commands(ours, theirs, guild=False).changed == {"move": ["options"]}


def test_fields_discord_fills_in_are_compared_only_when_we_send_them():
    base = {"name": "ping", "description": "d", "type": 1}
    theirs = [{**base, "contexts": [0, 1, 2], "integration_types": [0, 1]}]
    assert not rc.diff_commands([{**base, "contexts": None, "integration_types": None}], theirs, guild=False)
    assert rc.diff_commands([{**base, "contexts": [0]}], theirs, guild=False).changed == {"ping": ["contexts"]}
    # Per guild, Discord ignores dm_permission/contexts: a guild-only command is not "changed" forever.
    assert not rc.diff_commands([{**base, "dm_permission": False, "contexts": [0]}], [base], guild=True)


def test_normalization_fills_defaults_and_canonicalizes_values():
    ours = {"name": "volume", "description": "d", "default_member_permissions": 8, "name_localizations": {},
            "options": [{"type": 4, "name": "level", "description": "l", "required": False, "choices": [],
                         "channel_types": [], "min_value": 0, "max_value": 150}]}
    theirs = {"name": "volume", "description": "d", "type": 1, "default_member_permissions": "8",
              "dm_permission": None, "options": [{"type": 4, "name": "level", "description": "l",
                                                  "min_value": 0.0, "max_value": 150.0}]}
    assert rc.normalize_command(ours, guild=False) == rc.normalize_command(theirs, guild=False)


def test_context_menus_and_slash_commands_of_one_name_are_distinct():
    ours = [{"name": "play", "description": "d", "type": 1}, {"name": "play", "type": 3}]
    diff = rc.diff_commands(ours, [{"name": "play", "description": "d", "type": 1}], guild=False)
    assert diff.added == ["play (message)"] and not diff.changed


def test_guild_comes_from_the_flag_then_test_guild_id(settings):
    with_guild = Settings.from_env(1, {"BOT_TOKEN_1": TOKEN, "TEST_GUILD_ID": "42"})
    assert rc.resolve_guild(rc.parse_args([]), settings) is None
    assert rc.resolve_guild(rc.parse_args([]), with_guild) == 42
    assert rc.resolve_guild(rc.parse_args(["--guild", "7"]), with_guild) == 7
    assert rc.resolve_guild(rc.parse_args(["--global"]), with_guild) is None


@pytest.mark.parametrize("argv", [["--guild", "7", "--global"], ["--bots", "0"], ["--bots", "a-b"], ["--guild", "x"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        rc.parse_args(argv)
    assert exc.value.code == 2


def test_selected_bots_without_a_token_are_a_config_error():
    env = {"BOT_TOKEN_1": TOKEN, "BOT_TOKEN_3": TOKEN}
    assert [s.bot_index for s in rc.load_settings(None, env)] == [1, 3]
    assert [s.bot_index for s in rc.load_settings([3], env)] == [3]
    with pytest.raises(SelectionError, match="BOT_TOKEN_2 is not set"):
        rc.load_settings([1, 2], env)
    with pytest.raises(SelectionError, match="no bot token configured"):
        rc.load_settings(None, {})


def test_main_exits_78_without_touching_the_network(monkeypatch, capsys):
    for key in ("BOT_TOKEN_1", "BOT_TOKEN_2", "BOT_TOKEN_3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BOT_TOKEN_2", TOKEN)
    assert rc.main(["--env-file", "/dev/null", "--bots", "5"]) == 78
    err = capsys.readouterr().err
    assert "BOT_TOKEN_5" in err and TOKEN not in err
