"""One thread that writes this bot's snapshot files, so the event loop never waits for a disk.

Jobs are per guild and coalesce: a guild has at most one pending job and a newer one replaces it (the
latest state wins; a delete is a job too). A single thread runs them, so the writes of one guild never
reorder. Building the snapshot (every queued track's payload) and encoding it happen here as well: the
event loop only captures references. A failed write logs, tells `on_failure` (so the sampler retries)
and the thread carries on. Between jobs it touches the store's heartbeat file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from utils.snapshots import GuildSnapshot, SnapshotStore

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 10.0

Build = Callable[[], GuildSnapshot]
_DELETE = None


class SnapshotWriter:
    def __init__(self, store: SnapshotStore, *, heartbeat_every: float = HEARTBEAT_EVERY,
                 on_failure: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.heartbeat_every = heartbeat_every
        self.on_failure = on_failure
        self.writes = 0  # files written, for tests and benchmarks
        self._cond = threading.Condition()
        self._pending: dict[int, Build | None] = {}  # guild id -> latest job; insertion order = FIFO over guilds
        self._busy = False
        self._closing = False
        self._failing: set[int] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
            self._thread.start()

    def save(self, guild_id: int, build: Build) -> None:
        """Write what `build()` returns (called on the writer thread), replacing any pending job of the guild."""
        self._submit(guild_id, build)

    def delete(self, guild_id: int) -> None:
        self._submit(guild_id, _DELETE)

    def _submit(self, guild_id: int, job: Build | None) -> None:
        with self._cond:
            self._pending.pop(guild_id, None)  # to the back: a busy guild cannot starve the others
            self._pending[guild_id] = job
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Block until every job submitted so far is done; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Finish the pending jobs (up to `timeout`), then stop the thread."""
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        return done

    def _run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_every
        while True:
            item: tuple[int, Build | None] | None = None
            with self._cond:
                while not self._pending and not self._closing and (wait := next_beat - time.monotonic()) > 0:
                    self._cond.wait(wait)
                if self._closing and not self._pending:
                    return
                if self._pending:
                    guild_id = next(iter(self._pending))
                    item = (guild_id, self._pending.pop(guild_id))
                    self._busy = True
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + self.heartbeat_every
            if item is None:
                continue
            try:
                self._do(*item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _do(self, guild_id: int, job: Build | None) -> None:
        try:
            if job is _DELETE:
                self.store.delete(guild_id)
            else:
                self.store.save(job())
                self.writes += 1
        except Exception as exc:  # a full disk, a read-only mount, a bug in a build: log, retry later
            if guild_id not in self._failing:
                self._failing.add(guild_id)
                log.warning("guild %s: could not save the player snapshot (%s); retrying", guild_id, exc,
                            exc_info=not isinstance(exc, OSError))
            if self.on_failure is not None:
                try:
                    self.on_failure(guild_id)
                except Exception:
                    log.debug("snapshot failure callback failed", exc_info=True)
            return
        if guild_id in self._failing:
            self._failing.discard(guild_id)
            log.info("guild %s: player snapshot saved again", guild_id)

    def _beat(self) -> None:
        try:
            self.store.heartbeat()
        except OSError as exc:
            log.debug("could not touch the snapshot heartbeat: %s", exc)
