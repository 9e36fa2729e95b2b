"""Per-guild player snapshots on disk, so a bot that crashes or is redeployed comes back playing.

Each bot owns one directory (STATE_DIR/bot-N); nothing in it is read or written by another
process. Files are written atomically (temporary file + rename), so a crash mid-write leaves the
previous snapshot intact. A file that cannot be understood is set aside (renamed *.bad) with one
log line and never blocks a start.

A snapshot is rewritten only when the player changes, not while a track merely plays on: the
position a restore uses is computed from the saved position, the time it was saved and the pause
flag (`GuildSnapshot.position_at`). A snapshot written by a clean shutdown is marked `stopped`: the
bot left voice then, so the song resumes where it stopped. How long the bot has been gone is
measured from the later of `saved_at` and the bot's heartbeat file (`alive`, touched every few
seconds while it runs), so an hour-long stream that was never rewritten still counts as fresh.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from utils.atomic_file import write_atomic
from utils.filters import Effects

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOOP_MODES = ("off", "track", "queue")
HISTORY_KEPT = 50


class TrackPayload(dict):
    """A track's Lavalink payload that remembers its own JSON text once encoded (see SnapshotStore.encode).
    Treat it as read-only: the same object is reused for every snapshot the track appears in."""

    json_text: str | None = None


def _track_json(payload: dict[str, Any]) -> str:
    text = getattr(payload, "json_text", None)
    if text is None:
        text = json.dumps(payload, separators=(",", ":"))
        if isinstance(payload, TrackPayload):
            payload.json_text = text
    return text


class SnapshotError(ValueError):
    """A snapshot file that is not one we can restore (corrupt, truncated, older format)."""


def _track(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("encoded"), str) or not isinstance(value.get("info"), dict):
        raise SnapshotError(f"{where} is not a track")
    return value


def _int(data: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotError(f"{key} must be an integer")
    return value


@dataclass
class GuildSnapshot:
    guild_id: int
    voice_channel_id: int
    home_channel_id: int | None = None
    panel_message_id: int | None = None
    current: dict[str, Any] | None = None  # Lavalink track payload, userData included
    position: int = 0
    paused: bool = False
    volume: int = 100
    loop: str = "off"
    autoplay: bool = False
    queue: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    saved_at: float = field(default_factory=time.time)
    stopped: bool = False  # saved by a clean shutdown: playback stopped at saved_at (the bot left voice)
    filters: dict[str, Any] | None = None  # utils.filters.Effects.to_json(); absent in older snapshots (no effects)
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        # Shallow on purpose: the tracks are JSON-ready dicts already, and dataclasses.asdict() would deep-copy
        # every one of them (most of the cost of a 500-track snapshot).
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> GuildSnapshot:
        if not isinstance(data, dict):
            raise SnapshotError("not a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise SnapshotError(f"format version {data.get('version')!r}, expected {FORMAT_VERSION}")
        loop = data.get("loop", "off")
        if loop not in LOOP_MODES:
            raise SnapshotError(f"unknown loop mode {loop!r}")
        queue, history = data.get("queue", []), data.get("history", [])
        if not isinstance(queue, list) or not isinstance(history, list):
            raise SnapshotError("queue and history must be lists")
        saved_at = data.get("saved_at")
        if not isinstance(saved_at, (int, float)):
            raise SnapshotError("saved_at must be a number")
        return cls(
            guild_id=_int(data, "guild_id"),
            voice_channel_id=_int(data, "voice_channel_id"),
            home_channel_id=_int(data, "home_channel_id", optional=True),
            panel_message_id=_int(data, "panel_message_id", optional=True),
            current=None if data.get("current") is None else _track(data["current"], "current"),
            position=max(0, _int(data, "position") or 0),
            paused=bool(data.get("paused", False)),
            volume=min(1000, max(0, _int(data, "volume") or 0)),
            loop=loop,
            autoplay=bool(data.get("autoplay", False)),
            queue=[_track(t, f"queue[{i}]") for i, t in enumerate(queue)],
            history=[_track(t, f"history[{i}]") for i, t in enumerate(history)],
            saved_at=float(saved_at),
            stopped=bool(data.get("stopped", False)),
            filters=_filters(data.get("filters")),
        )

    @property
    def effects(self) -> Effects:
        """The sound effects to restore (none for a snapshot written before /filter existed)."""
        return Effects.from_json(self.filters)

    def age(self, now: float | None = None, alive: float | None = None) -> float:
        """Seconds since the bot last vouched for this snapshot: saved it, or (`alive`) was still running."""
        return (time.time() if now is None else now) - max(self.saved_at, alive or 0.0)

    def position_at(self, now: float | None = None) -> int:
        """Where the current track is by `now` (wall clock), had it played on since the snapshot was saved:
        the saved position, plus the time since unless paused, capped at the track's length; 0 for a stream.
        After a clean shutdown (`stopped`) nothing played on: the song resumes where it stopped."""
        if self.current is None:
            return 0
        info = self.current.get("info") or {}
        if info.get("isStream"):
            return 0
        position = self.position
        if not self.paused and not self.stopped:  # under a timescale the track moves at speed x rate
            elapsed = max(0.0, (time.time() if now is None else now) - self.saved_at)
            position += int(elapsed * 1000 * self.effects.rate)
        length = info.get("length")
        if isinstance(length, int) and not isinstance(length, bool) and length > 0:
            position = min(position, length)
        return position


def _filters(value: Any) -> dict[str, Any] | None:
    """The saved effects, or None. Effects this version does not know (a newer one's preset) are dropped with a
    log line instead of failing the snapshot: the song and the queue matter more than the sound effect."""
    if value is None:
        return None
    try:
        effects = Effects.from_json(value)
    except ValueError as exc:
        log.warning("snapshot: ignoring its sound effects (%s)", exc)
        return None
    return effects.to_json() if effects.active else None


class SnapshotStore:
    """The snapshot files of one bot: STATE_DIR/bot-N/guild-<id>.json, and its heartbeat file `alive`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def heartbeat_path(self) -> Path:
        return self.directory / "alive"

    def heartbeat(self) -> None:
        """The bot is running: touch `alive` (metadata only, no fsync; losing one beat costs nothing).
        Without a directory there is no snapshot to vouch for."""
        if self.directory.is_dir():
            self.heartbeat_path.touch()

    def last_alive(self) -> float | None:
        """When the previous run last said it was alive (wall clock), or None."""
        try:
            return self.heartbeat_path.stat().st_mtime
        except OSError:
            return None

    def path(self, guild_id: int) -> Path:
        return self.directory / f"guild-{guild_id}.json"

    @staticmethod
    def encode(snapshot: GuildSnapshot) -> bytes:
        """The snapshot as JSON. Tracks are encoded once (TrackPayload keeps its text) and joined: a 500-track
        queue that lost one song costs a join, not 500 encodings, and no long C call holds the GIL."""
        fields = snapshot.to_json()
        current, queue, history = fields.pop("current"), fields.pop("queue"), fields.pop("history")
        head = json.dumps(fields, separators=(",", ":"))
        return "".join((
            head[:-1], ',"current":', "null" if current is None else _track_json(current),
            ',"queue":[', ",".join(map(_track_json, queue)), '],"history":[', ",".join(map(_track_json, history)),
            "]}",
        )).encode()

    def save(self, snapshot: GuildSnapshot) -> None:
        """Atomic: readers see the old file or the new one, never half of one."""
        self.write(snapshot.guild_id, self.encode(snapshot))

    def write(self, guild_id: int, data: bytes) -> None:
        """Atomic (temporary file, fsync, rename): readers see the old file or the new one, never half of one."""
        write_atomic(self.path(guild_id), data, prefix=".guild-")

    def delete(self, guild_id: int) -> bool:
        try:
            self.path(guild_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def load_all(self) -> list[GuildSnapshot]:
        """Every readable snapshot; bad files are renamed *.bad with one log line each."""
        if not self.directory.is_dir():
            return []
        snapshots = []
        for path in sorted(self.directory.glob("guild-*.json")):
            try:
                snapshot = GuildSnapshot.from_json(json.loads(path.read_bytes()))
                if path.name != self.path(snapshot.guild_id).name:
                    raise SnapshotError("file name and guild id disagree")
            except (OSError, ValueError) as exc:  # JSONDecodeError and SnapshotError are ValueErrors
                log.warning("ignoring unreadable snapshot %s: %s", path.name, exc)
                try:
                    path.replace(path.with_suffix(".bad"))
                except OSError:
                    pass
                continue
            snapshots.append(snapshot)
        return snapshots
