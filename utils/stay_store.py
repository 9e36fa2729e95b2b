"""24/7 mode, kept per guild in the bot's own state directory: STATE_DIR/bot-N/stay.json.

A record of its own, not part of the player snapshot (utils/snapshots.py): a snapshot exists only while
there is something to play and is discarded by /stop, auto-leave or an old age, while 24/7 is a setting of
the guild that must outlive all of those (a restart rejoins an empty channel with nothing queued). Written
atomically (temporary file, fsync, rename); an unreadable file is set aside as stay.json.bad with one log
line and 24/7 starts empty, so it never blocks a start.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from utils.atomic_file import write_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Stay:
    """Where the bot stays in one guild: its voice channel, and the text channel its messages go to."""

    channel_id: int
    home_channel_id: int | None = None


class StayStore:
    """The 24/7 guilds of one bot. Reads once (load), then serves from memory; every change is written."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "stay.json"
        self.guilds: dict[int, Stay] = {}

    def load(self) -> dict[int, Stay]:
        try:
            data = json.loads(self.path.read_bytes())
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version') if isinstance(data, dict) else None!r}")
            guilds = {}
            for guild_id, entry in (data.get("guilds") or {}).items():
                home = entry.get("home_channel_id")
                guilds[int(guild_id)] = Stay(int(entry["channel_id"]), int(home) if home is not None else None)
        except FileNotFoundError:
            guilds = {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring unreadable 24/7 record %s: %s", self.path.name, exc)
            try:
                self.path.replace(self.path.with_suffix(".json.bad"))
            except OSError:
                pass
            guilds = {}
        self.guilds = guilds
        return guilds

    def get(self, guild_id: int) -> Stay | None:
        return self.guilds.get(guild_id)

    def encode(self) -> bytes:
        return json.dumps({"version": FORMAT_VERSION, "guilds": {
            str(g): {"channel_id": s.channel_id, "home_channel_id": s.home_channel_id}
            for g, s in sorted(self.guilds.items())}}, separators=(",", ":")).encode()

    def write(self, data: bytes) -> None:
        """Atomic: a crash mid-write leaves the previous record."""
        write_atomic(self.path, data, prefix=".stay-")
