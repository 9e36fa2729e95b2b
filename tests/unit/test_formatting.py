from __future__ import annotations

import pytest

from utils.fleet import busy_message
from utils.formatting import escape_markdown, format_duration, parse_time, progress_bar, truncate


@pytest.mark.parametrize(("ms", "text"), [(0, "0:00"), (61_000, "1:01"), (3_599_999, "59:59"),
                                          (3_723_000, "1:02:03"), (-5, "0:00")])
def test_format_duration(ms, text):
    assert format_duration(ms) == text


@pytest.mark.parametrize(("text", "ms"), [("1:23", 83_000), ("0:05", 5_000), ("1:02:03", 3_723_000),
                                          ("90", 90_000), ("90s", 90_000), (" 2:00 ", 120_000)])
def test_parse_time(text, ms):
    assert parse_time(text) == ms


@pytest.mark.parametrize("text", ["", "abc", "1:60", "1:61:00", "-5", "1::2", "1:2:3:4", "9" * 20, "１:２３"])
def test_parse_time_rejects_with_a_message(text):
    with pytest.raises(ValueError) as info:
        parse_time(text)
    assert "time" in str(info.value)


def test_progress_bar_and_streams():
    assert progress_bar(0, 100_000).startswith("🔘")
    assert progress_bar(100_000, 100_000).endswith("🔘")
    assert progress_bar(50_000, 100_000).index("🔘") == 8
    assert progress_bar(5, 2**63 - 1) == "🔴 LIVE"


def test_truncate_and_escape():
    assert truncate("a\nb   c", 10) == "a b c"
    assert truncate("x" * 20, 10) == "x" * 9 + "…"
    assert escape_markdown("*bold* [link](x) (live)") == r"\*bold\* \[link\](x) (live)"


class FakeChannel:
    mention = "<#42>"


def test_busy_message_names_free_siblings():
    assert busy_message(FakeChannel(), [2, 3]) == "I'm already playing in <#42>. Try <@2> or <@3>: they are free here."
    assert busy_message(FakeChannel(), [2]) == "I'm already playing in <#42>. Try <@2>: it is free here."
    assert "No other bot of the fleet is free" in busy_message(FakeChannel(), [])
