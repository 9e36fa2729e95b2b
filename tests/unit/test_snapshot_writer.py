"""The snapshot writer thread: coalescing, per-guild order, atomic files, failures that do not stop it."""

from __future__ import annotations

import json
import threading

import pytest

from tests.unit.test_snapshots import snapshot
from utils.snapshot_writer import SnapshotWriter
from utils.snapshots import SnapshotStore

WAIT = 10.0  # generous bound for a thread on a busy 2-core machine; every wait below ends on an event


@pytest.fixture
def writer(tmp_path):
    writers: list[SnapshotWriter] = []

    def make(**kwargs) -> SnapshotWriter:
        w = SnapshotWriter(SnapshotStore(tmp_path / "bot-1"), **kwargs)
        w.start()
        writers.append(w)
        return w

    yield make
    for w in writers:
        w.close(timeout=WAIT)


def gate(w: SnapshotWriter, guild_id: int = 999) -> tuple[threading.Event, threading.Event]:
    """Park the writer thread inside a job of `guild_id` until the returned `release` is set."""
    entered, release = threading.Event(), threading.Event()

    def build():
        entered.set()
        assert release.wait(WAIT)
        return snapshot(guild_id=guild_id)

    w.save(guild_id, build)
    assert entered.wait(WAIT)
    return entered, release


def saved(w: SnapshotWriter, guild_id: int) -> dict:
    return json.loads(w.store.path(guild_id).read_text())


def test_pending_jobs_of_a_guild_coalesce_and_the_latest_state_wins(writer):
    w = writer()
    _, release = gate(w)
    built = []
    for position in range(1, 6):
        w.save(42, lambda position=position: built.append(position) or snapshot(position=position))
    release.set()
    assert w.flush(WAIT)
    assert built == [5]  # four states were never even built
    assert saved(w, 42)["position"] == 5


def test_a_delete_after_a_save_wins_and_a_save_after_a_delete_wins(writer):
    w = writer()
    w.save(1, lambda: snapshot(guild_id=1))
    w.save(2, lambda: snapshot(guild_id=2))
    assert w.flush(WAIT)
    _, release = gate(w)
    w.save(1, lambda: snapshot(guild_id=1, position=7))
    w.delete(1)
    w.delete(2)
    w.save(2, lambda: snapshot(guild_id=2, position=8))
    release.set()
    assert w.flush(WAIT)
    assert not w.store.path(1).exists()
    assert saved(w, 2)["position"] == 8


def test_writes_of_one_guild_never_reorder(writer, monkeypatch):
    w = writer()
    written: list[tuple[int, int]] = []
    real_save = w.store.save

    def recording_save(s):
        real_save(s)
        written.append((s.guild_id, s.position))

    monkeypatch.setattr(w.store, "save", recording_save)
    for position in range(300):  # submitted while the thread writes: some coalesce, none may go backwards
        for guild_id in (1, 2, 3):
            w.save(guild_id, lambda g=guild_id, p=position: snapshot(guild_id=g, position=p))
    assert w.flush(WAIT)
    for guild_id in (1, 2, 3):
        positions = [p for g, p in written if g == guild_id]
        assert positions == sorted(set(positions)) and positions[-1] == 299
        assert saved(w, guild_id)["position"] == 299


def test_a_reader_never_sees_half_a_file(writer):
    w = writer()
    big_queue = [{"encoded": "x" * 2000, "info": {"n": i}, "pluginInfo": {}, "userData": {}} for i in range(300)]
    w.save(42, lambda: snapshot(queue=big_queue, position=0))
    assert w.flush(WAIT)
    stop = threading.Event()
    seen, errors = [], []

    def read():
        while not stop.is_set():
            try:
                seen.append(saved(w, 42)["position"])
            except ValueError as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for position in range(1, 40):
            w.save(42, lambda p=position: snapshot(queue=big_queue, position=p))
            assert w.flush(WAIT)
    finally:
        stop.set()
        reader.join()
    assert not errors and seen and saved(w, 42)["position"] == 39
    assert not list(w.store.directory.glob("*.tmp"))


def test_a_failing_write_logs_once_keeps_the_old_file_and_the_thread_goes_on(writer, monkeypatch, caplog):
    failures: list[int] = []
    w = writer(on_failure=failures.append)
    w.save(42, lambda: snapshot(position=1))
    assert w.flush(WAIT)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("utils.atomic_file.os.fsync", full_disk)
    with caplog.at_level("INFO", logger="utils.snapshot_writer"):
        for position in (2, 3):
            w.save(42, lambda p=position: snapshot(position=p))
            assert w.flush(WAIT)
        assert saved(w, 42)["position"] == 1  # the previous snapshot is intact
        assert not list(w.store.directory.glob("*.tmp"))
        assert failures == [42, 42]  # the sampler is told, so it tries again
        monkeypatch.undo()
        w.save(42, lambda: snapshot(position=4))
        assert w.flush(WAIT)
    assert saved(w, 42)["position"] == 4
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "could not save" in m and "No space left" in m]) == 1
    assert any("saved again" in m for m in messages)


def test_a_build_that_raises_does_not_kill_the_thread(writer, caplog):
    w = writer()

    def broken():
        raise KeyError("info")

    with caplog.at_level("WARNING", logger="utils.snapshot_writer"):
        w.save(42, broken)
        assert w.flush(WAIT)
    w.save(43, lambda: snapshot(guild_id=43))
    assert w.flush(WAIT)
    assert saved(w, 43)["guild_id"] == 43
    assert any("could not save" in r.getMessage() for r in caplog.records)


def test_flush_gives_up_after_its_timeout(writer):
    w = writer()
    _, release = gate(w)
    w.save(42, lambda: snapshot())
    assert w.flush(0.05) is False
    release.set()
    assert w.flush(WAIT) is True


def test_heartbeat_is_touched_while_running(writer, tmp_path):
    store = SnapshotStore(tmp_path / "bot-1")
    store.save(snapshot())
    touched = threading.Event()
    real = store.heartbeat
    store.heartbeat = lambda: (real(), touched.set())
    w = SnapshotWriter(store, heartbeat_every=0.01)
    w.start()
    try:
        assert touched.wait(WAIT)
        assert store.last_alive() is not None
    finally:
        w.close(WAIT)
