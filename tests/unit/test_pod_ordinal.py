"""BOT_ID_FROM_ORDINAL: a StatefulSet pod (music-bot-0, music-bot-1, ...) runs bot ordinal + 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, clean_env
from tests.unit.test_config import TOKEN_1, TOKEN_3
from tests.unit.test_token_files import TOKEN_2
from utils.config import ConfigError, Settings, bot_index_from_ordinal
from utils.token_env import own_environment


@pytest.fixture
def secret_volume(tmp_path):
    """A Kubernetes Secret mounted as a directory: one file per key BOT_TOKEN_n."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    for n, token in ((1, TOKEN_1), (2, TOKEN_2), (3, TOKEN_3)):
        (directory / f"BOT_TOKEN_{n}").write_text(token)
    return directory


@pytest.mark.parametrize("pod, bot", [("music-bot-0", 1), ("music-bot-2", 3), ("a-b-c-41", 42), (" music-bot-1\n", 2)])
def test_pod_ordinal_plus_one_is_the_bot_number(pod, bot):
    assert bot_index_from_ordinal(pod) == bot


def test_each_pod_reads_its_own_key_of_the_secret(secret_volume):
    env = {"BOT_TOKEN_DIR": str(secret_volume), "FLEET_BOT_IDS": "", "BOT_ID_FROM_ORDINAL": "music-bot-1"}
    s = Settings.from_env(None, env)
    assert (s.bot_index, s.token, s.token_var) == (2, TOKEN_2, "BOT_TOKEN_DIR/BOT_TOKEN_2")
    index, kept = own_environment({**env, "BOT_ID_FROM_ORDINAL": "music-bot-2"}, os.devnull, None)
    # bot 3's process keeps a pointer to its own file only; the directory with the siblings' files is dropped
    assert index == 3 and kept["BOT_TOKEN_FILE_3"] == str(secret_volume / "BOT_TOKEN_3")
    assert "BOT_TOKEN_DIR" not in kept and not any(k.startswith("BOT_TOKEN_FILE_") and k != "BOT_TOKEN_FILE_3"
                                                   for k in kept)


def test_explicit_bot_number_wins_over_the_ordinal(secret_volume):
    env = {"BOT_TOKEN_DIR": str(secret_volume), "BOT_ID_FROM_ORDINAL": "music-bot-0"}
    assert Settings.from_env(3, env).bot_index == 3


@pytest.mark.parametrize("pod", ["music-bot", "music-bot-", "music-bot-x", "music-bot-²", "", "7"])
def test_a_name_without_an_ordinal_is_a_configuration_error(pod, secret_volume):
    env = {"BOT_TOKEN_DIR": str(secret_volume), "BOT_ID_FROM_ORDINAL": pod}
    if not pod:  # empty: not set, bot 1 as without it
        assert Settings.from_env(None, env).bot_index == 1
        return
    with pytest.raises(ConfigError, match=r"BOT_ID_FROM_ORDINAL \(.*\) does not end in -<ordinal>: set it to the "
                                          r"StatefulSet pod's name"):
        Settings.from_env(None, env)


def test_bot_id_and_ordinal_together_are_refused(secret_volume):
    env = {"BOT_TOKEN_DIR": str(secret_volume), "BOT_ID_FROM_ORDINAL": "music-bot-0", "BOT_ID": "1"}
    with pytest.raises(ConfigError, match="BOT_ID and BOT_ID_FROM_ORDINAL are both set"):
        Settings.from_env(None, env)


def test_bot_py_exits_78_with_one_line_for_a_hostname_without_ordinal(secret_volume):
    env = clean_env({"BOT_TOKEN_DIR": str(secret_volume), "BOT_ID_FROM_ORDINAL": "music-bot"})
    result = subprocess.run([sys.executable, str(ROOT / "bot.py"), "--env-file", os.devnull],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert (result.stdout + result.stderr).strip().splitlines() == [
        "configuration error: BOT_ID_FROM_ORDINAL (music-bot) does not end in -<ordinal>: set it to the StatefulSet "
        "pod's name (downward API metadata.name, e.g. music-bot-0 runs bot 1)"]


def test_bot_py_of_pod_1_asks_for_bot_2s_key(tmp_path):
    """The pod's ordinal reaches the token lookup through bot.py's own start-up (re-exec included)."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    (directory / "BOT_TOKEN_1").write_text(TOKEN_1)
    env = clean_env({"BOT_TOKEN_DIR": str(directory), "BOT_ID_FROM_ORDINAL": "music-bot-1"})
    result = subprocess.run([sys.executable, str(ROOT / "bot.py"), "--env-file", os.devnull],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert "configuration error: BOT_TOKEN_2 is not set" in result.stderr


def test_with_fleet_ids_given_a_pod_opens_no_siblings_token_file(secret_volume, monkeypatch):
    """deploy/kubernetes/config.yaml sets FLEET_BOT_IDS: then bot 2 opens BOT_TOKEN_2 alone of the mounted Secret."""
    opened = []
    real = type(secret_volume).read_text

    def spy(path, *args, **kwargs):
        opened.append(path.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(type(secret_volume), "read_text", spy)
    env = {"BOT_TOKEN_DIR": str(secret_volume), "BOT_ID_FROM_ORDINAL": "music-bot-1", "BOT_CLIENT_ID_3": "333"}
    _, kept = own_environment({**env, "FLEET_BOT_IDS": ""}, os.devnull, None)
    s = Settings.from_env(None, kept)
    assert opened == ["BOT_TOKEN_2"] and s.token == TOKEN_2 and s.siblings == {3: 333}
    opened.clear()
    own_environment(env, os.devnull, None)  # without FLEET_BOT_IDS the siblings' files are decoded for their ids
    assert sorted(opened) == ["BOT_TOKEN_1", "BOT_TOKEN_2", "BOT_TOKEN_3"]
