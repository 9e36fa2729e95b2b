"""Token files (BOT_TOKEN_FILE_n, BOT_TOKEN_DIR) and the environment a bot process keeps (its own token only)."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, clean_env
from tests.unit.test_config import TOKEN_1, TOKEN_3, make_token
from utils import fleet_check
from utils.config import (
    ConfigError, Settings, discover_bot_indices, fleet_user_ids, parse_fleet_ids, read_token,
)
from utils.selection import SelectionError, select_bots
from utils.token_env import bot_environment, needs_reexec, own_environment

TOKEN_2 = make_token(222222222222222222, "secret-two-cccccccccccccccccccc")


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "BOT_TOKEN_2").write_text(TOKEN_2 + "\n")
    (directory / "BOT_TOKEN_3").write_text(f"  {TOKEN_3}\r\n")
    (directory / "README").write_text("not a token")
    return directory


def test_token_file_is_read_and_stripped(tmp_path):
    path = tmp_path / "one"
    path.write_text(f"\n {TOKEN_1}\n\n")
    s = Settings.from_env(1, {"BOT_TOKEN_FILE_1": str(path)})
    assert (s.token, s.token_var, s.client_id) == (TOKEN_1, "BOT_TOKEN_FILE_1", 111111111111111111)
    assert TOKEN_1 not in repr(s)


def test_token_dir_holds_one_file_per_bot(secrets_dir):
    env = {"BOT_TOKEN_DIR": str(secrets_dir)}
    assert discover_bot_indices(env) == [2, 3]
    s = Settings.from_env(3, env)
    assert (s.token, s.token_var) == (TOKEN_3, "BOT_TOKEN_DIR/BOT_TOKEN_3")
    assert dict(s.siblings) == {2: 222222222222222222}


def test_discovery_includes_bots_configured_only_by_a_token_file(tmp_path, secrets_dir):
    env = {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_FILE_4": str(tmp_path / "missing"), "BOT_TOKEN_FILE_5": " ",
           "BOT_TOKEN_DIR": str(secrets_dir)}
    assert discover_bot_indices(env) == [1, 2, 3, 4]
    assert select_bots(None, env) == [1, 2, 3, 4]
    assert select_bots([4], env) == [4]


def test_variable_wins_over_file_and_file_over_directory(tmp_path, secrets_dir):
    path = tmp_path / "two"
    path.write_text(TOKEN_1)
    env = {"BOT_TOKEN_2": TOKEN_3, "BOT_TOKEN_FILE_2": str(path), "BOT_TOKEN_DIR": str(secrets_dir)}
    assert read_token(env, 2) == ("BOT_TOKEN_2", TOKEN_3)
    del env["BOT_TOKEN_2"]
    assert read_token(env, 2) == ("BOT_TOKEN_FILE_2", TOKEN_1)
    del env["BOT_TOKEN_FILE_2"]
    assert read_token(env, 2) == ("BOT_TOKEN_DIR/BOT_TOKEN_2", TOKEN_2)


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: {"BOT_TOKEN_FILE_2": str(d / "missing")}, "BOT_TOKEN_FILE_2: cannot read the token file "),
    (lambda d: {"BOT_TOKEN_FILE_2": str(d)}, "BOT_TOKEN_FILE_2: cannot read the token file "),
    (lambda d: {"BOT_TOKEN_FILE_2": str(d / "empty")}, "BOT_TOKEN_FILE_2: the token file "),
    (lambda d: {"BOT_TOKEN_FILE_2": str(d / "two-lines")}, "BOT_TOKEN_FILE_2 contains spaces or quotes"),
    (lambda d: {"BOT_TOKEN_DIR": str(d / "missing")}, "BOT_TOKEN_DIR ("),
    (lambda d: {"BOT_TOKEN_DIR": str(d / "empty")}, "is not a directory"),
])
def test_token_file_errors_name_the_variable_never_the_token(tmp_path, setup, message):
    (tmp_path / "empty").write_text(" \n")
    (tmp_path / "two-lines").write_text(f"{TOKEN_2}\n{TOKEN_1}\n")
    with pytest.raises(ConfigError) as info:
        Settings.from_env(2, setup(tmp_path))
    text = str(info.value)
    assert message in text and "\n" not in text
    assert TOKEN_1 not in text and TOKEN_2 not in text and "secret-" not in text


def test_a_bad_file_in_the_token_dir_names_it(secrets_dir):
    (secrets_dir / "BOT_TOKEN_2").write_text("Bot " + TOKEN_2)
    with pytest.raises(ConfigError) as info:
        Settings.from_env(2, {"BOT_TOKEN_DIR": str(secrets_dir)})
    assert str(info.value) == "BOT_TOKEN_DIR/BOT_TOKEN_2 must be the bare token, without the 'Bot ' prefix"


def test_unreadable_token_dir_is_a_selection_error(tmp_path):
    with pytest.raises(SelectionError, match=r"^BOT_TOKEN_DIR \(.*\) is not a directory$"):
        select_bots(None, {"BOT_TOKEN_DIR": str(tmp_path / "nope")})


def test_fleet_ids_come_from_fleet_bot_ids_without_reading_any_token(tmp_path):
    env = {"BOT_TOKEN_2": TOKEN_2, "FLEET_BOT_IDS": "1:11,2:22, 3:33", "BOT_CLIENT_ID_5": "55",
           "BOT_TOKEN_FILE_4": str(tmp_path / "missing")}
    assert fleet_user_ids(env) == {1: 11, 2: 22, 3: 33, 5: 55}
    s = Settings.from_env(2, env)
    assert dict(s.siblings) == {1: 11, 3: 33, 5: 55} and s.client_id == 222222222222222222
    assert parse_fleet_ids("") == {}
    with pytest.raises(ConfigError, match="FLEET_BOT_IDS must look like"):
        Settings.from_env(2, {**env, "FLEET_BOT_IDS": "1=11"})


def test_fleet_ids_skip_a_sibling_whose_file_is_unreadable(tmp_path):
    env = {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_FILE_2": str(tmp_path / "missing")}
    assert fleet_user_ids(env) == {1: 111111111111111111}


def test_bot_environment_keeps_only_its_own_token(tmp_path, secrets_dir):
    path = tmp_path / "one"
    path.write_text(TOKEN_1)
    env = {"BOT_TOKEN_FILE_1": str(path), "BOT_TOKEN_DIR": str(secrets_dir), "BOT_TOKEN_4": TOKEN_1,
           "BOT_TOKEN": TOKEN_2, "LAVALINK_URI": "http://x:1", "BOT_CLIENT_ID_4": "44", "FLEET_BOT_IDS": "9:9"}
    ids = {1: 11, 2: 22}
    assert bot_environment(env, 4, ids) == {"BOT_TOKEN_4": TOKEN_1, "LAVALINK_URI": "http://x:1",
                                            "BOT_CLIENT_ID_4": "44", "FLEET_BOT_IDS": "1:11,2:22"}
    assert bot_environment(env, 1, ids)["BOT_TOKEN_FILE_1"] == str(path)
    from_dir = bot_environment(env, 3, ids)  # the directory holds the siblings' files: only bot 3's is handed on
    assert from_dir["BOT_TOKEN_FILE_3"] == str(secrets_dir / "BOT_TOKEN_3") and "BOT_TOKEN_DIR" not in from_dir
    assert not [k for k in from_dir if k.startswith("BOT_TOKEN") and k != "BOT_TOKEN_FILE_3"]
    single = bot_environment(env, 7, ids)  # no numbered token of its own: the single-bot BOT_TOKEN
    assert [k for k in single if k.startswith("BOT_TOKEN")] == ["BOT_TOKEN"]


def test_a_relative_token_file_is_handed_on_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one").write_text(TOKEN_1)
    env = bot_environment({"BOT_TOKEN_FILE_1": "one"}, 1, {})
    assert env["BOT_TOKEN_FILE_1"] == str(tmp_path / "one")
    monkeypatch.chdir(ROOT)
    assert read_token(env, 1) == ("BOT_TOKEN_FILE_1", TOKEN_1)


def test_own_environment_is_a_fixed_point_so_a_reexec_happens_once(tmp_path, secrets_dir):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"BOT_TOKEN_1={TOKEN_1}\nLOG_LEVEL=DEBUG\n")
    initial = {"BOT_TOKEN_DIR": str(secrets_dir), "PATH": "/bin"}
    index, first = own_environment(initial, str(dotenv), 2)
    assert index == 2 and needs_reexec(initial, first)
    assert first["FLEET_BOT_IDS"] == "1:111111111111111111,2:222222222222222222,3:333333333333333333"
    assert first["LOG_LEVEL"] == "DEBUG" and "BOT_TOKEN_1" not in first
    _, second = own_environment(first, str(dotenv), 2)
    assert not needs_reexec(first, second) and second == first
    assert read_token(second, 2) == ("BOT_TOKEN_FILE_2", TOKEN_2)


def test_no_reexec_when_only_the_env_file_holds_sibling_tokens(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"BOT_TOKEN_1={TOKEN_1}\nBOT_TOKEN_3={TOKEN_3}\n")
    initial = {"BOT_TOKEN_3": TOKEN_3}
    _, env = own_environment(initial, str(dotenv), 3)
    assert not needs_reexec(initial, env)  # os.environ is replaced by `env`; the kernel's block had no sibling
    assert "BOT_TOKEN_1" not in env and env["FLEET_BOT_IDS"] == "1:111111111111111111,3:333333333333333333"


def test_check_reads_token_files(tmp_path, monkeypatch):
    path = tmp_path / "one"
    path.write_text(TOKEN_1 + "\n")
    seen = []
    monkeypatch.setattr(fleet_check, "_http_get_json",
                        lambda url, headers, timeout: seen.append(headers["Authorization"]) or {"username": "M1"})
    env = {"BOT_TOKEN_FILE_1": str(path), "BOT_TOKEN_FILE_2": str(tmp_path / "missing")}
    out = io.StringIO()
    assert fleet_check.run_check(select_bots(None, env), env, out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "Bot 1: OK — M1 (id ?)" and seen[0] == f"Bot {TOKEN_1}"
    assert lines[1].startswith("Bot 2: ERROR — BOT_TOKEN_FILE_2: cannot read the token file ")


def test_spawner_gives_each_child_its_own_token_only(monkeypatch):
    import process_manager as pm

    for n, token in ((1, TOKEN_1), (2, TOKEN_2), (3, TOKEN_3)):
        monkeypatch.setenv(f"BOT_TOKEN_{n}", token)
    spawner = pm.SubprocessSpawner(fleet_ids={1: 11, 2: 22, 3: 33})
    env = spawner.environment(2)
    assert env["BOT_TOKEN_2"] == TOKEN_2 and env["FLEET_BOT_IDS"] == "1:11,2:22,3:33"
    assert TOKEN_1 not in env.values() and TOKEN_3 not in env.values()
    assert env["FLEET_MANAGER_PID"] == str(os.getpid())


def test_bot_py_with_a_missing_token_file_exits_78_with_one_line(tmp_path):
    env = clean_env({"BOT_TOKEN_FILE_2": str(tmp_path / "gone"), "BOT_TOKEN_1": TOKEN_1, "LOG_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, str(ROOT / "bot.py"), "--bot", "2", "--env-file", os.devnull],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"[Bot 2] configuration error: BOT_TOKEN_FILE_2: cannot read the token file {tmp_path / 'gone'} "
                     "(No such file or directory)"]


def test_register_commands_reads_token_files(secrets_dir):
    import register_commands as rc

    settings = rc.load_settings(None, {"BOT_TOKEN_DIR": str(secrets_dir)})
    assert [(s.bot_index, s.token) for s in settings] == [(2, TOKEN_2), (3, TOKEN_3)]


@pytest.mark.parametrize("placement", list(itertools.product(("env", "file", "absent"), repeat=5)))
def test_a_reexec_never_asks_for_another(tmp_path, secrets_dir, monkeypatch, placement):
    """Wherever the token variables sit (environment, .env, nowhere), the re-executed process is content."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two").write_text(TOKEN_2)
    variables = {"BOT_TOKEN_2": TOKEN_2, "BOT_TOKEN_FILE_2": "two", "BOT_TOKEN_DIR": str(secrets_dir),
                 "BOT_TOKEN": TOKEN_3, "BOT_TOKEN_1": TOKEN_1}
    initial = {k: v for (k, v), where in zip(variables.items(), placement) if where == "env"}
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for (k, v), where in zip(variables.items(), placement) if where == "file"))
    try:
        _, first = own_environment(initial, str(dotenv), 2)
    except ConfigError:
        return  # nothing to run with: bot.py exits 78 without a re-exec
    _, second = own_environment(first, str(dotenv), 2)
    assert not needs_reexec(first, second), (initial, first, second)
    assert TOKEN_1 not in first.values() and TOKEN_1 not in second.values()
