from __future__ import annotations

import base64

import pytest

from utils.config import (
    ConfigError,
    Settings,
    discover_bot_indices,
    fleet_user_ids,
    parse_lavalink_nodes,
    user_id_from_token,
)


def make_token(user_id: int, secret: str = "abcdefghijklmnopqrstuvwxyz0") -> str:
    first = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{first}.GxYz12.{secret}"


TOKEN_1 = make_token(111111111111111111, "secret-one-aaaaaaaaaaaaaaaaaa")
TOKEN_3 = make_token(333333333333333333, "secret-three-bbbbbbbbbbbbbbbb")


def test_user_id_is_decoded_from_the_token_first_segment():
    assert user_id_from_token(TOKEN_1) == 111111111111111111


@pytest.mark.parametrize("token", ["", "not-base64!!.a.b", base64.b64encode(b"abc").decode() + ".a.b"])
def test_user_id_from_a_malformed_token_is_none(token):
    assert user_id_from_token(token) is None


def test_discovery_allows_gaps_and_ignores_empty_and_unnumbered():
    env = {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_3": TOKEN_3, "BOT_TOKEN_2": "  ", "BOT_TOKEN": TOKEN_1,
           "BOT_TOKEN_X": "x", "BOT_TOKEN_0": TOKEN_1}
    assert discover_bot_indices(env) == [1, 3]


def test_fleet_user_ids_prefer_explicit_client_ids():
    env = {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_3": TOKEN_3, "BOT_CLIENT_ID_3": "42"}
    assert fleet_user_ids(env) == {1: 111111111111111111, 3: 42}


def test_settings_for_a_numbered_bot():
    env = {"BOT_TOKEN_1": TOKEN_1, "BOT_TOKEN_3": TOKEN_3, "LAVALINK_URI": "http://a:1, http://b:2",
           "LAVALINK_PASSWORD": "pw-secret", "TEST_GUILD_ID": "99", "LOG_LEVEL": "debug"}
    s = Settings.from_env(3, env)
    assert (s.bot_index, s.token_var, s.client_id) == (3, "BOT_TOKEN_3", 333333333333333333)
    assert [(n.identifier, n.uri) for n in s.lavalink_nodes] == [("node-1", "http://a:1"), ("node-2", "http://b:2")]
    assert s.test_guild_id == 99 and s.log_level == "DEBUG"
    assert dict(s.siblings) == {1: 111111111111111111}
    assert TOKEN_3 not in repr(s) and "pw-secret" not in repr(s)
    assert set(s.secrets) == {TOKEN_3, "pw-secret"}


def test_plain_bot_token_with_bot_id():
    s = Settings.from_env(None, {"BOT_TOKEN": TOKEN_1, "BOT_ID": "4"})
    assert (s.bot_index, s.token_var) == (4, "BOT_TOKEN")


def test_defaults():
    s = Settings.from_env(1, {"BOT_TOKEN_1": TOKEN_1})
    assert s.lavalink_nodes[0].uri == "http://127.0.0.1:2333"
    assert s.api_base is None and s.gateway_url is None and s.log_level == "INFO"
    assert s.voice_rejoin_delays == (1.0, 5.0, 15.0)


def test_voice_rejoin_delays_can_be_shortened():
    s = Settings.from_env(1, {"BOT_TOKEN_1": TOKEN_1, "VOICE_REJOIN_DELAYS": " 1, 0.5,2 "})
    assert s.voice_rejoin_delays == (1.0, 0.5, 2.0)


@pytest.mark.parametrize(
    ("env", "index", "message"),
    [
        ({}, 2, "BOT_TOKEN_2 is not set"),
        ({"BOT_TOKEN_1": "Bot " + TOKEN_1}, 1, "without the 'Bot ' prefix"),
        ({"BOT_TOKEN_1": '"' + TOKEN_1 + '"'}, 1, "spaces or quotes"),
        ({"BOT_TOKEN_1": "onlyonepart"}, 1, "does not look like a bot token"),
        ({"BOT_TOKEN_1": TOKEN_1, "LAVALINK_URI": "ftp://x"}, 1, "LAVALINK_URI entry 1"),
        ({"BOT_TOKEN_1": TOKEN_1, "LAVALINK_URI": "http://x:notaport"}, 1, "invalid port"),
        ({"BOT_TOKEN_1": TOKEN_1, "DISCORD_GATEWAY_URL": "http://x"}, 1, "DISCORD_GATEWAY_URL must be a ws://"),
        ({"BOT_TOKEN_1": TOKEN_1, "TEST_GUILD_ID": "abc"}, 1, "TEST_GUILD_ID must be a whole number"),
        ({"BOT_TOKEN_1": TOKEN_1, "LOG_LEVEL": "loud"}, 1, "LOG_LEVEL must be one of"),
        ({"BOT_TOKEN": TOKEN_1, "BOT_ID": "0"}, None, "BOT_ID must be a whole number of at least 1"),
        ({"BOT_TOKEN_1": TOKEN_1, "VOICE_REJOIN_DELAYS": "1,,5"}, 1, "VOICE_REJOIN_DELAYS must be 1 to 5"),
        ({"BOT_TOKEN_1": TOKEN_1, "VOICE_REJOIN_DELAYS": "1,5,²"}, 1, "VOICE_REJOIN_DELAYS must be 1 to 5"),
        ({"BOT_TOKEN_1": TOKEN_1, "VOICE_REJOIN_DELAYS": "1,999"}, 1, "VOICE_REJOIN_DELAYS must be 1 to 5"),
    ],
)
def test_configuration_errors_name_the_variable_and_never_the_value(env, index, message):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(index, env)
    assert message in str(info.value)
    assert TOKEN_1 not in str(info.value)


def test_lavalink_uris_ignore_empty_entries_and_trailing_slash():
    nodes = parse_lavalink_nodes({"LAVALINK_URI": "http://h:2333/,,"})
    assert [n.uri for n in nodes] == ["http://h:2333"]
