"""Pure data-model checks: ids, tokens, permission computation, command validation."""

from __future__ import annotations

import base64

from sandbox.discord_commands import validate_command
from sandbox.discord_state import DiscordState, Overwrite, Perm, make_bot_token


def _world() -> tuple[DiscordState, int, int, int, int]:
    state = DiscordState()
    guild = state.create_guild("G")
    role = state.create_role(guild.id, "DJ", Perm.MOVE_MEMBERS)
    user = state.add_user("alice")
    state.add_member(guild.id, user, [role.id])
    voice = state.create_channel(guild.id, "Lounge", 2)
    return state, guild.id, role.id, user.id, voice.id


def test_snowflakes_are_large_ordered_and_deterministic() -> None:
    a, b = DiscordState(), DiscordState()
    ids = [a.ids.next() for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > 10**17
    assert ids == [b.ids.next() for _ in range(5)]


def test_bot_token_shape() -> None:
    token = make_bot_token(1191168914231525377)
    first, second, third = token.split(".")
    assert base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode() == "1191168914231525377"
    assert len(second) == 6 and len(third) >= 27
    assert make_bot_token(1191168914231525377) == token


def test_overwrite_order_everyone_roles_member() -> None:
    state, guild_id, role_id, user_id, voice_id = _world()
    channel = state.channels[voice_id]
    assert state.permissions_for(guild_id, user_id, voice_id) & Perm.CONNECT
    channel.overwrites = [Overwrite(guild_id, 0, deny=Perm.CONNECT)]
    assert not state.permissions_for(guild_id, user_id, voice_id) & Perm.CONNECT
    channel.overwrites.append(Overwrite(role_id, 0, allow=Perm.CONNECT))
    assert state.permissions_for(guild_id, user_id, voice_id) & Perm.CONNECT
    channel.overwrites.append(Overwrite(user_id, 1, deny=Perm.CONNECT))
    assert not state.permissions_for(guild_id, user_id, voice_id) & Perm.CONNECT
    channel.overwrites = [Overwrite(guild_id, 0, deny=Perm.VIEW_CHANNEL)]
    assert state.permissions_for(guild_id, user_id, voice_id) == 0


def test_owner_and_administrator_get_everything() -> None:
    state, guild_id, role_id, user_id, voice_id = _world()
    state.channels[voice_id].overwrites = [Overwrite(guild_id, 0, deny=Perm.VIEW_CHANNEL)]
    owner = state.guilds[guild_id].owner_id
    assert state.permissions_for(guild_id, owner, voice_id) == Perm.ALL
    state.guilds[guild_id].roles[role_id].permissions = Perm.ADMINISTRATOR
    assert state.permissions_for(guild_id, user_id, voice_id) == Perm.ALL
    assert state.permissions_for(guild_id, 12345, voice_id) == 0  # not a member


def test_command_validation_rules() -> None:
    assert validate_command({"name": "play", "description": "Play", "type": 1}) == {}
    assert "name" in validate_command({"name": "Play", "description": "x"})
    assert "name" in validate_command({"name": "a" * 33, "description": "x"})
    assert "description" in validate_command({"name": "play", "description": ""})
    assert validate_command({"name": "Add To Queue", "description": "", "type": 3}) == {}
    bad_order = {"name": "play", "description": "x", "options": [
        {"name": "a", "description": "x", "type": 3},
        {"name": "b", "description": "x", "type": 3, "required": True}]}
    assert "required" in validate_command(bad_order)["options"]["1"]
