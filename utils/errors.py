"""Errors a user can cause or meet. Each carries the message shown to them (ephemeral)."""

from __future__ import annotations

from discord import app_commands


class MusicError(app_commands.AppCommandError):
    """Base of every expected failure; `str(error)` is the user-facing message."""


class NotInVoice(MusicError):
    def __init__(self) -> None:
        super().__init__("Join a voice channel first, then try again.")


class NotInMyChannel(MusicError):
    def __init__(self, channel_mention: str) -> None:
        super().__init__(f"You need to be in {channel_mention} with me to control the music.")


class NothingPlaying(MusicError):
    def __init__(self) -> None:
        super().__init__("Nothing is playing right now. Use /play to start.")


class NotConnected(MusicError):
    def __init__(self) -> None:
        super().__init__("I'm not in a voice channel here. Use /play to start.")


class AudioUnavailable(MusicError):
    def __init__(self) -> None:
        super().__init__("The audio server is unreachable right now. Please try again in a moment.")


class NotDJ(MusicError):
    def __init__(self, role_name: str) -> None:
        super().__init__(f"Only members with the {role_name} role, the person who requested the song, or someone "
                         "alone with me can do that.")


class BadInput(MusicError):
    """Input that passed Discord's own validation but makes no sense here (bad index, time, ...)."""


class TrackGone(MusicError):
    """The node rejected a track's encoding (after an upgrade, a plugin change) and could not find it again."""

    def __init__(self, title: str) -> None:
        super().__init__(f"The audio server can no longer play **{title}**.")
        self.title = title
