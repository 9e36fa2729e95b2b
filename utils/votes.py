"""Vote skip: a member who is neither the requester of the current song nor a DJ votes to skip it, and the
song is skipped once more than half of the human listeners in the bot's channel voted.

The votes live on the player (MusicPlayer.skip_votes: member ids) and belong to the current song: they are
cleared when a track starts (commands/panel.py) and a voter's vote goes when they leave the channel
(commands/votes.py). Only humans still in the channel count, so the tally is recomputed from the channel's
members every time rather than trusted from memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from utils.player import MusicPlayer


@dataclass(frozen=True)
class Tally:
    votes: int
    needed: int

    @property
    def passed(self) -> bool:
        return self.votes >= self.needed

    def __str__(self) -> str:
        return f"{self.votes}/{self.needed} votes"


def votes_needed(listeners: int) -> int:
    """More than half of the human listeners (the bot and other bots are not listeners)."""
    return listeners // 2 + 1


def tally(player: MusicPlayer) -> Tally:
    """The open vote as it stands: votes of members still listening, against the listeners now."""
    listening = {m.id for m in player.listeners()}
    player.skip_votes &= listening  # a voter who left (even unseen, e.g. during a reconnect) no longer counts
    return Tally(len(player.skip_votes), votes_needed(len(listening)))


def cast(player: MusicPlayer, member_id: int) -> tuple[Tally, bool]:
    """Record `member_id`'s vote; returns the tally and whether it is a new vote (False: voted already)."""
    new = member_id not in player.skip_votes
    player.skip_votes.add(member_id)
    return tally(player), new
