"""Queue operations with user-facing positions (1-based) and clear refusals, on top of wavelink.Queue.

wavelink's Queue already does loop modes, history, shuffle and loop-all refills; this module adds
the validation and wording a music bot's users expect, and nothing else.
"""

from __future__ import annotations

import enum

import wavelink

from utils.errors import BadInput


class LoopMode(enum.Enum):
    """What users pick in /loop; maps onto wavelink's QueueMode."""

    off = "off"
    track = "track"
    queue = "queue"

    @property
    def queue_mode(self) -> wavelink.QueueMode:
        return {
            LoopMode.off: wavelink.QueueMode.normal,
            LoopMode.track: wavelink.QueueMode.loop,
            LoopMode.queue: wavelink.QueueMode.loop_all,
        }[self]

    @classmethod
    def from_queue_mode(cls, mode: wavelink.QueueMode) -> LoopMode:
        return {wavelink.QueueMode.normal: cls.off, wavelink.QueueMode.loop: cls.track,
                wavelink.QueueMode.loop_all: cls.queue}[mode]

    def next(self) -> LoopMode:
        """The panel's loop button cycles off -> track -> queue -> off."""
        order = list(LoopMode)
        return order[(order.index(self) + 1) % len(order)]


def check_position(queue: wavelink.Queue, position: int, *, what: str = "position") -> int:
    """A 1-based queue position -> a 0-based index, or BadInput saying what is valid."""
    size = len(queue)
    if size == 0:
        raise BadInput("The queue is empty.")
    if not 1 <= position <= size:
        raise BadInput(f"There is no {what} {position} in the queue: pick a number from 1 to {size}.")
    return position - 1


def remove_at(queue: wavelink.Queue, position: int) -> wavelink.Playable:
    index = check_position(queue, position)
    track = queue[index]
    queue.delete(index)
    return track


def move(queue: wavelink.Queue, source: int, target: int) -> wavelink.Playable:
    """Move the track at `source` so it ends up at `target` (both 1-based)."""
    src = check_position(queue, source, what="track at position")
    dst = check_position(queue, target, what="position")
    track = queue[src]
    queue.delete(src)
    queue.put_at(dst, track)
    return track


def skip_to(queue: wavelink.Queue, position: int) -> int:
    """Drop the tracks before `position` so it plays next. Returns how many were dropped."""
    index = check_position(queue, position)
    for _ in range(index):
        queue.delete(0)
    return index


def room_left(queue: wavelink.Queue, limit: int) -> int:
    return max(0, limit - len(queue))


def remaining_ms(queue: wavelink.Queue, current: wavelink.Playable | None, position: int) -> int | None:
    """Total time left (current track remainder + queue), or None if a live stream makes it endless."""
    tracks = list(queue)
    if current is not None:
        if current.is_stream:
            return None
        total = max(0, current.length - position)
    else:
        total = 0
    for track in tracks:
        if track.is_stream:
            return None
        total += track.length
    return total
