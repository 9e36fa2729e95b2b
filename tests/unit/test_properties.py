"""Property-based tests (hypothesis) for every user input with pure parsing or validation.

Each property says what must hold for ANY input a user (or a forged/stale button, or an operator's .env)
can send: the parser either returns a valid value or raises the one expected, user-facing error - never
another exception, and never a secret in the message.
"""

from __future__ import annotations

import base64
import os
import re
import string

import pytest
import wavelink
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from commands.panel import PANEL_ACTIONS, PanelButton
from commands.playback import MAX_QUERY, clean_query
from commands.queue import QueuePageButton
from utils.config import ConfigError, Settings
from utils.errors import BadInput
from utils.formatting import format_duration, parse_time
from utils.tracklist import move, remove_at, skip_to

# Fast: no per-example deadline (a loaded 2-core machine), ~200 examples, no example database in the work tree.
# In CI (CI=true) the examples are derandomized, so a red build is reproducible and never a fluke.
settings.register_profile("music-fleet", deadline=None, max_examples=200, database=None,
                          derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("music-fleet")

# Text that looks like what users type, plus the odd characters they paste (control chars, RTL marks, emoji).
TIME_ALPHABET = string.digits + ":  s\t\n.-+٣０"
odd_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)


# ---- /seek: utils.formatting.parse_time ---------------------------------------------------------------------

@given(st.one_of(odd_text, st.text(TIME_ALPHABET, max_size=20)))
def test_parse_time_only_ever_raises_value_error(text):
    try:
        ms = parse_time(text)
    except ValueError as exc:
        assert str(exc)  # a message the user can read
        assert len(str(exc)) < 200
    else:
        assert isinstance(ms, int) and ms >= 0


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.booleans())
def test_parse_time_round_trips_with_format_duration(hours, minutes, seconds, with_hours):
    if not with_hours:
        hours = 0
    ms = ((hours * 60 + minutes) * 60 + seconds) * 1000
    assert parse_time(format_duration(ms)) == ms
    text = f"{hours}:{minutes:02d}:{seconds:02d}" if with_hours else f"{minutes}:{seconds:02d}"
    assert parse_time(text) == ms
    assert parse_time(f"  {text}  ") == ms


@given(st.integers(0, 999_999))
def test_parse_time_plain_seconds(seconds):
    assert parse_time(str(seconds)) == seconds * 1000
    assert parse_time(f"{seconds}s") == seconds * 1000


@given(st.integers(0, 1000 * 3600 * 1000 - 1))  # /seek accepts up to 999:59:59; no track is longer
def test_format_duration_output_parses_back_to_whole_seconds(ms):
    assert parse_time(format_duration(ms)) == (ms // 1000) * 1000


@given(st.integers(0, 999), st.integers(60, 99))
def test_parse_time_rejects_60_or_more_seconds(minutes, seconds):
    with pytest.raises(ValueError, match="up to 59"):
        parse_time(f"{minutes}:{seconds}")


# ---- /move, /remove, /skip to: utils.tracklist ------------------------------------------------------------

def _track(name: str) -> wavelink.Playable:
    return wavelink.Playable({
        "encoded": f"enc-{name}",
        "info": {"identifier": name, "isSeekable": True, "author": "a", "length": 60_000, "isStream": False,
                 "position": 0, "title": name, "uri": None, "artworkUrl": None, "isrc": None, "sourceName": "http"},
        "pluginInfo": {}, "userData": {},
    })


def _queue(size: int) -> wavelink.Queue:
    queue = wavelink.Queue()
    if size:
        queue.put([_track(f"t{i}") for i in range(size)])
    return queue


def _ids(queue: wavelink.Queue) -> list[str]:
    return [t.identifier for t in queue]


positions = st.integers(-5, 40) | st.integers(-(2**63), 2**63)


@given(st.integers(0, 30), positions, positions)
def test_move_never_loses_or_duplicates_a_track(size, source, target):
    queue = _queue(size)
    before = _ids(queue)
    if 1 <= source <= size and 1 <= target <= size:
        moved = move(queue, source, target)
        after = _ids(queue)
        assert sorted(after) == sorted(before) and len(after) == size
        assert after[target - 1] == moved.identifier == before[source - 1]
        rest_before = [t for t in before if t != moved.identifier]
        assert [t for t in after if t != moved.identifier] == rest_before  # the others keep their order
    else:
        with pytest.raises(BadInput):
            move(queue, source, target)
        assert _ids(queue) == before


@given(st.integers(0, 30), positions)
def test_remove_takes_exactly_the_named_track_or_refuses(size, position):
    queue = _queue(size)
    before = _ids(queue)
    if 1 <= position <= size:
        removed = remove_at(queue, position)
        assert removed.identifier == before[position - 1]
        assert _ids(queue) == before[:position - 1] + before[position:]
    else:
        with pytest.raises(BadInput) as info:
            remove_at(queue, position)
        assert ("from 1 to" in str(info.value)) or ("empty" in str(info.value))
        assert _ids(queue) == before


@given(st.integers(0, 30), positions)
def test_skip_to_drops_only_the_tracks_before_the_position(size, position):
    queue = _queue(size)
    before = _ids(queue)
    if 1 <= position <= size:
        dropped = skip_to(queue, position)
        assert dropped == position - 1
        assert _ids(queue) == before[position - 1:]
    else:
        with pytest.raises(BadInput):
            skip_to(queue, position)
        assert _ids(queue) == before


# ---- /play query: commands.playback.clean_query ------------------------------------------------------------

@given(odd_text | st.text(max_size=1000))
def test_clean_query_gives_a_clean_query_or_bad_input(text):
    try:
        query = clean_query(text)
    except BadInput as exc:
        assert str(exc)
    else:
        assert query and query == query.strip()
        assert len(query) <= MAX_QUERY
        assert all(ch.isprintable() for ch in query)


@given(st.text(string.ascii_letters + string.digits + " -_:/?=&.", min_size=1, max_size=MAX_QUERY))
def test_clean_query_keeps_ordinary_queries(text):
    assume(text.strip())
    assert clean_query(text) == text.strip()


# ---- button custom ids from stale or forged panels ----------------------------------------------------------

PANEL = PanelButton.__discord_ui_compiled_template__
QUEUE = QueuePageButton.__discord_ui_compiled_template__

custom_ids = st.one_of(
    st.text(max_size=120),
    st.builds(lambda a: f"panel:{a}", st.text(max_size=30)),
    st.builds(lambda o, p, d: f"queue:{o}:{p}:{d}", st.text(string.digits + "-+ ", max_size=25),
              st.text(string.digits + "-+ ", max_size=9), st.sampled_from(["prev", "next", "nxt", "", "PREV"])),
    st.sampled_from([f"panel:{a}" for a in PANEL_ACTIONS]),
)


@given(custom_ids)
def test_panel_custom_ids_match_and_parse_or_do_not_match(custom_id):
    match = PANEL.fullmatch(custom_id)
    if match is None:
        return
    action = match["action"]
    assert re.fullmatch(r"[a-z]{1,16}", action)
    # An unknown action (an older panel) is matched and then refused politely by interaction_check;
    # a known one must be one the panel really offers.
    assert custom_id == f"panel:{action}"


@given(custom_ids)
def test_queue_custom_ids_match_and_parse_to_valid_ints_or_do_not_match(custom_id):
    match = QUEUE.fullmatch(custom_id)
    if match is None:
        return
    owner, page = int(match["owner"]), int(match["page"])
    assert 0 <= owner < 10**20 and 0 <= page < 10**6
    assert match["direction"] in ("prev", "next")


@given(st.integers(0, 2**64 - 1), st.integers(1, 999_999), st.sampled_from(["prev", "next"]))
def test_queue_custom_ids_the_bot_writes_always_parse_back(owner, page, direction):
    match = QUEUE.fullmatch(f"queue:{owner}:{page}:{direction}")
    assert match is not None
    assert (int(match["owner"]), int(match["page"]), match["direction"]) == (owner, page, direction)


def test_every_panel_action_the_bot_writes_matches_its_template():
    for action in PANEL_ACTIONS:
        assert PANEL.fullmatch(f"panel:{action}")


# ---- .env: utils.config.Settings.from_env --------------------------------------------------------------------

def _token(user_id: int, secret: str) -> str:
    first = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{first}.GhIjKl.{secret}"


SECRET = "TopSecretSegment-0123456789abcdef"
TOKEN = _token(222222222222222222, SECRET)
LAVALINK_SECRET = "lava-pass-0123456789"

env_values = st.one_of(st.text(max_size=60), st.sampled_from(["", " ", "0", "1", "-1", "10", "99999999999999999999",
                                                               "http://127.0.0.1:2333", "ws://x", "http://:99999",
                                                               "DEBUG", "debug", "nope", "1,2", "Bot x.y.z",
                                                               "music-bot-0", "music-bot-²", "music-bot"]))
env_keys = st.sampled_from([
    "BOT_TOKEN_1", "BOT_TOKEN_2", "BOT_TOKEN", "BOT_ID", "BOT_CLIENT_ID_1", "BOT_CLIENT_ID_2", "LAVALINK_URI",
    "LAVALINK_PASSWORD", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL", "TEST_GUILD_ID", "LOG_LEVEL", "LOG_DIR",
    "IDLE_TIMEOUT", "ALONE_TIMEOUT", "MAX_QUEUE", "DJ_ROLE", "BOT_ID_FROM_ORDINAL",
])


def _message_with(env: dict[str, str], index: int | None, key: str) -> str:
    """The configuration error with `key`'s value replaced: what the message says whatever that value is
    (a token "music-bo" is part of the fixed example "music-bot-0", not a leak)."""
    try:
        Settings.from_env(index, {**env, key: "Qz" + "#" * 10})
    except ConfigError as exc:
        return str(exc)
    return ""


@given(st.dictionaries(env_keys, env_values, max_size=10), st.booleans(), st.one_of(st.none(), st.integers(-3, 4)))
def test_settings_from_arbitrary_env_is_settings_or_config_error(env, with_token, index):
    if with_token:
        env = {"BOT_TOKEN_1": TOKEN, "LAVALINK_PASSWORD": LAVALINK_SECRET, **env}
    try:
        result = Settings.from_env(index, env)
    except ConfigError as exc:
        message = str(exc)
        secret_keys = ("BOT_TOKEN_1", "BOT_TOKEN_2", "BOT_TOKEN", "LAVALINK_PASSWORD")
        public_values = {v.strip() for k, v in env.items() if k not in secret_keys}
        for key in secret_keys:
            value = env.get(key, "").strip()
            # Short values like "1" can't be told apart from ordinary words, and a value that is also the value
            # of a public variable (BOT_ID=7 names BOT_TOKEN_7) may legitimately show; check the rest.
            if len(value) >= 8 and value not in public_values and value in message:
                assert value in _message_with(env, index, key), (key, message)  # else it came from the value
        assert SECRET not in message and LAVALINK_SECRET not in message
    else:
        assert isinstance(result, Settings)
        assert result.bot_index >= 1 and result.token
        assert result.max_queue >= 1 and result.idle_timeout >= 10 and result.alone_timeout >= 5
        assert SECRET not in repr(result) and LAVALINK_SECRET not in repr(result)


@given(st.text(max_size=80), st.sampled_from(["BOT_TOKEN_1", "BOT_TOKEN"]))
def test_a_malformed_token_never_appears_in_the_error(token, var):
    env = {var: token}
    try:
        Settings.from_env(1, env)
    except ConfigError as exc:
        stripped = token.strip()
        if len(stripped) >= 4:
            assert stripped not in str(exc)
