"""Preconditions of the music commands, raising MusicError subclasses with the user-facing reason.

Commands and the now-playing panel's buttons both call `ensure_can_control`, so a button and the
matching command always follow the same rules.
"""

from __future__ import annotations

import discord

from utils.errors import BadInput, NotConnected, NotDJ, NothingPlaying, NotInMyChannel, NotInVoice
from utils.player import MusicPlayer, requester_id


def get_player(interaction: discord.Interaction) -> MusicPlayer | None:
    guild = interaction.guild
    voice = guild.voice_client if guild else None
    return voice if isinstance(voice, MusicPlayer) and voice.connected else None


def member_voice_channel(interaction: discord.Interaction) -> discord.abc.GuildChannel | None:
    member = interaction.user
    state = getattr(member, "voice", None)
    return state.channel if state is not None and state.channel is not None else None


def is_dj(member: discord.Member, dj_role: str | None) -> bool:
    if dj_role is None:
        return True
    if member.guild_permissions.manage_guild:
        return True
    wanted = dj_role.lower()
    return any(role.name.lower() == wanted or str(role.id) == dj_role for role in member.roles)


def ensure_listener(interaction: discord.Interaction, *, need_track: bool = False) -> MusicPlayer:
    """The member must be with the bot in its voice channel (the same-channel rule, without the DJ rule)."""
    player = get_player(interaction)
    if player is None:
        raise NotConnected()
    channel = member_voice_channel(interaction)
    if channel is None:
        raise NotInVoice()
    if player.channel is None or channel.id != player.channel.id:
        raise NotInMyChannel(player.channel.mention if player.channel else "my voice channel")
    if need_track and player.current is None:
        raise NothingPlaying()
    return player


def configured_dj_role(interaction: discord.Interaction) -> str | None:
    return getattr(getattr(interaction.client, "settings", None), "dj_role", None)


def may_skip_at_once(interaction: discord.Interaction, player: MusicPlayer) -> bool:
    """The requester of the current song and DJs skip without a vote: with DJ_ROLE set, members with that role;
    either way, members with Manage Server. Everyone else votes (utils/votes.py)."""
    member = interaction.user
    if requester_id(player.current) == member.id:
        return True
    if not isinstance(member, discord.Member):
        return False
    dj_role = configured_dj_role(interaction)
    return member.guild_permissions.manage_guild or (dj_role is not None and is_dj(member, dj_role))


def ensure_can_control(interaction: discord.Interaction, *, need_track: bool = False) -> MusicPlayer:
    """The member must be with the bot in its voice channel; with a DJ role set, also DJ, requester or alone."""
    player = ensure_listener(interaction, need_track=need_track)
    dj_role = configured_dj_role(interaction)
    member = interaction.user
    if dj_role and isinstance(member, discord.Member) and not is_dj(member, dj_role):
        alone = [m.id for m in player.listeners()] == [member.id]
        if not alone and requester_id(player.current) != member.id:
            raise NotDJ(dj_role)
    return player


def preflight(channel: discord.abc.GuildChannel, me: discord.Member) -> None:
    """Refuse clearly before joining, instead of timing out silently."""
    if isinstance(channel, discord.StageChannel):
        raise BadInput(f"I can't play in stage channels like {channel.mention}; use a voice channel.")
    perms = channel.permissions_for(me)
    if not perms.view_channel or not perms.connect:
        raise BadInput(f"I don't have permission to join {channel.mention} (Connect). Ask an admin to allow it.")
    if not perms.speak:
        raise BadInput(f"I can join {channel.mention} but I'm not allowed to speak there (Speak permission).")
    limit = getattr(channel, "user_limit", 0)
    if limit and len(channel.members) >= limit and not perms.move_members:
        raise BadInput(f"{channel.mention} is full ({limit} members). Make room or raise its user limit.")
