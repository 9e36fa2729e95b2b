"""A wavelink Queue that counts its changes, so the snapshot sampler can tell "unchanged" in O(1).

Commands, panel buttons and wavelink itself (auto-play, loop-all refills, history) mutate a player's queue
directly. Every one of those paths ends in the queue's internal list (`Queue._items`), so the counter lives
there: a list whose mutating methods bump `version`. wavelink has no change hook of its own to use instead.
"""

from __future__ import annotations

from typing import Any, SupportsIndex

import wavelink


class VersionedList(list):
    """A list that bumps `version` on every mutation (reads cost nothing extra)."""

    version: int = 0

    def _bump(self) -> None:
        self.version += 1

    def append(self, item: Any) -> None:
        super().append(item)
        self._bump()

    def extend(self, items: Any) -> None:
        super().extend(items)
        self._bump()

    def insert(self, index: SupportsIndex, item: Any) -> None:
        super().insert(index, item)
        self._bump()

    def pop(self, index: SupportsIndex = -1) -> Any:
        item = super().pop(index)
        self._bump()
        return item

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._bump()

    def clear(self) -> None:
        super().clear()
        self._bump()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._bump()

    def reverse(self) -> None:
        super().reverse()
        self._bump()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._bump()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._bump()

    def __iadd__(self, items: Any) -> VersionedList:
        result = super().__iadd__(items)
        self._bump()
        return result

    def __imul__(self, count: SupportsIndex) -> VersionedList:
        result = super().__imul__(count)
        self._bump()
        return result


class VersionedQueue(wavelink.Queue):
    """wavelink.Queue (history included) whose `version` changes whenever its tracks do."""

    def __init__(self, *, history: bool = True) -> None:
        super().__init__(history=history)
        self._history = VersionedQueue(history=False) if history else None

    @property  # type: ignore[override]
    def _items(self) -> VersionedList:
        return self._versioned

    @_items.setter
    def _items(self, value: list[wavelink.Playable]) -> None:
        """Whatever list wavelink assigns is wrapped, and the version keeps counting up."""
        previous: VersionedList | None = getattr(self, "_versioned", None)
        self._versioned = VersionedList(value)
        self._versioned.version = previous.version + 1 if previous is not None else 0

    @property
    def version(self) -> int:
        return self._versioned.version
