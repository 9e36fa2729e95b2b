"""Logging for one bot process: one human-readable line per event, each carrying the bot number."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterable
from pathlib import Path

FORMAT = "[Bot {bot}] {asctime} {levelname:<7} {name}: {message}"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
REDACTED = "<redacted>"


class RedactingFilter(logging.Filter):
    """Replaces known secrets in the final message, a guard behind "never log a token".

    Formats the record once (args merged into msg) so a secret passed as an argument is caught too.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s and len(s) >= 6)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        if any(s in message or s in exc_text for s in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, REDACTED)
                exc_text = exc_text.replace(secret, REDACTED)
            record.msg, record.args = message, None
            record.exc_text = exc_text or None
        return True


class BotFormatter(logging.Formatter):
    """One record may span lines (a traceback): every line carries the bot number, so grep and the
    process manager's merged output never show an orphan line."""

    def __init__(self, bot_index: int) -> None:
        super().__init__(FORMAT.replace("{bot}", str(bot_index)), DATE_FORMAT, style="{")
        self.prefix = f"[Bot {bot_index}] "

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).split("\n")
        return "\n".join([first, *(self.prefix + "  " + line for line in rest)])


def setup_logging(bot_index: int, level: str = "INFO", log_dir: Path | None = None,
                  secrets: Iterable[str] = ()) -> Path | None:
    """Send every log line to stderr and to `log_dir/bot-N.log` (rotated). Returns the file path.

    The file is optional: when `log_dir` cannot be created the bot still runs, logging to stderr.
    """
    formatter = BotFormatter(bot_index)
    redactor = RedactingFilter(secrets)
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)

    stream = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [stream]
    path = None
    file_error: OSError | None = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / f"bot-{bot_index}.log"
            handlers.append(logging.handlers.RotatingFileHandler(path, maxBytes=8 << 20, backupCount=3,
                                                                 encoding="utf-8"))
        except OSError as exc:
            path, file_error = None, exc
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
        root.addHandler(handler)

    if file_error is not None:
        logging.getLogger(__name__).warning("cannot write logs to %s (%s); logging to stderr only", log_dir, file_error)
    # discord.http logs every request at DEBUG and rate limits at WARNING; keep it quiet below WARNING.
    logging.getLogger("discord.http").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("discord.gateway").setLevel(max(logging.INFO, root.level))
    return path
