"""Pure text helpers: durations, progress bars, time parsing, safe truncation."""

from __future__ import annotations

import re

STREAM_LENGTH_THRESHOLD = 2**62  # Lavalink reports live streams with a huge length (Long.MAX_VALUE)
_TIME = re.compile(r"^\s*(?:(\d{1,3}):)?(\d{1,3}):(\d{1,2})\s*$|^\s*(\d{1,6})\s*s?\s*$", re.ASCII)


def is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" or "٣", which int() then refuses or reads differently."""
    return text.isascii() and text.isdigit()


def format_duration(ms: int | float) -> str:
    """1:23, 12:05 or 1:02:03 (hours only when needed)."""
    total = max(0, int(ms) // 1000)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}"


def parse_time(text: str) -> int:
    """'1:23', '01:02:03' or '90' / '90s' -> milliseconds. Raises ValueError with a user-facing message."""
    if text is None or len(text) > 16:
        raise ValueError("Use a time like 1:23 or 1:02:03 (or a number of seconds).")
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"'{text.strip()[:16]}' is not a time. Use a time like 1:23 or 1:02:03 (or seconds).")
    hours, minutes, seconds, plain = match.groups()
    if plain is not None:
        return int(plain) * 1000
    if int(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
        raise ValueError(f"'{text.strip()}' is not a valid time: minutes and seconds go up to 59.")
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000


def progress_bar(position: int, length: int, width: int = 16) -> str:
    """A text bar like ▬▬▬🔘▬▬▬▬ for the now-playing display."""
    if length <= 0 or length >= STREAM_LENGTH_THRESHOLD:
        return "🔴 LIVE"
    filled = min(width - 1, int(width * max(0, min(position, length)) / length))
    return "▬" * filled + "🔘" + "▬" * (width - 1 - filled)


def truncate(text: str, limit: int) -> str:
    text = " ".join(str(text).split())  # one line, no control characters from odd titles
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape_markdown(text: str) -> str:
    return re.sub(r"([\\*_`~|>\[\]])", r"\\\1", text)
