"""Moderator voice actions: moving a member to another voice channel, or disconnecting them.

Both the REST route (PATCH /guilds/{guild_id}/members/{user_id} with `channel_id`, what a bot or a
moderator's client sends) and the control API (`DiscordEmulator.move_member` / `disconnect_member`) come
here. What Discord does, and so the sandbox:
- every bot in the guild gets VOICE_STATE_UPDATE for the member (new channel, or channel_id null);
- a bot that is moved keeps its voice session id and gets a new VOICE_SERVER_UPDATE (a new token): its
  Lavalink node must be given the new credentials;
- a bot that is disconnected only gets its VOICE_STATE_UPDATE with channel_id null (its voice connection
  is closed by Discord: a Lavalink node then reports WebSocketClosedEvent 4014).
Every action on a bot is recorded as a `VoiceModeration` and handed to `listeners`, the hook through
which the Lavalink side can react (e.g. close the player's voice connection with 4014).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from .discord_gateway import Gateway
from .discord_state import STAGE, VOICE, DiscordState, VoiceState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceModeration:
    """A bot moved (to_channel_id set) or disconnected (to_channel_id None) by someone else."""

    guild_id: int
    user_id: int
    from_channel_id: int
    to_channel_id: int | None
    by: int | None  # the acting user (None: the control API, "a moderator")
    at: float = field(default_factory=time.monotonic)

    @property
    def disconnected(self) -> bool:
        return self.to_channel_id is None


class NotInVoice(ValueError):
    """Discord's 40032: the target user is not connected to voice."""


class VoiceModerator:
    def __init__(self, state: DiscordState, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway
        self.moderations: list[VoiceModeration] = []
        self.listeners: list[Callable[[VoiceModeration], None]] = []

    def join(self, guild_id: int, user_id: int, channel_id: int) -> None:
        """A human member connects to a voice channel by themself (a new voice session)."""
        guild = self.state.guild(guild_id)
        if self.state.users[user_id].bot:
            raise ValueError("a bot joins voice only by itself (gateway op 4)")
        state = VoiceState(guild_id, user_id, channel_id, f"{user_id:x}{guild_id:x}{self.state.ids.next():x}"[-32:])
        guild.voice_states[user_id] = state
        self.gateway.dispatch_voice_state(guild, state)

    def move(self, guild_id: int, user_id: int, channel_id: int | None, by: int | None = None) -> VoiceState | None:
        """Move a connected member to `channel_id`, or disconnect them with None. Raises NotInVoice."""
        guild = self.state.guild(guild_id)
        current = guild.voice_states.get(user_id)
        if current is None or current.channel_id is None:
            raise NotInVoice(f"user {user_id} is not connected to voice in guild {guild_id}")
        if channel_id is not None and self.state.channels[channel_id].type not in (VOICE, STAGE):
            raise ValueError(f"channel {channel_id} is not a voice channel")
        source = current.channel_id
        is_bot = self.state.users[user_id].bot
        if channel_id is None:
            self.gateway.leave_voice(guild, user_id)
            new_state = None
        else:
            new_state = VoiceState(guild_id, user_id, channel_id, current.session_id,
                                   self_mute=current.self_mute, self_deaf=current.self_deaf)
            guild.voice_states[user_id] = new_state
            self.gateway.dispatch_voice_state(guild, new_state)
            if is_bot:
                sessions = [s for s in self.gateway.live_sessions(user_id) if s.wants_guild(guild_id)]
                same = [s for s in sessions if s.session_id == current.session_id]
                for session in same or sessions:
                    self.gateway.send_voice_server(session, guild_id)
        log.info("voice: user %s %s in guild %s by %s", user_id,
                 "disconnected" if channel_id is None else f"moved {source} -> {channel_id}", guild_id,
                 by or "a moderator")
        if is_bot:
            event = VoiceModeration(guild_id, user_id, source, channel_id, by)
            self.moderations.append(event)
            for listener in list(self.listeners):
                listener(event)
        self.gateway.notify()
        return new_state
