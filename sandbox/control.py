"""The sandbox as one object: emulated Discord + emulated Lavalink, and how to point bots at them.

    async with Sandbox() as sb:
        apps = sb.add_bots(2)                      # "Music 1", "Music 2"
        world = await sb.create_world(apps)        # a guild with text/voice channels and members
        env = sb.bot_env(apps)                     # BOT_TOKEN_n + endpoint variables for bot.py

Voice is as strict as production: the Lavalink node plays only with the voice token, endpoint and session
id the emulated Discord last issued to that bot in that guild (`verify_voice`); otherwise its voice
connection closes (WebSocketClosedEvent 4004/4006) and no audio plays. A moderator's disconnect closes the
bot's player with 4014; `drop_voice` simulates the node losing Discord's voice server (4006 or 1006),
`vanish_voice` Discord forgetting the bot's voice state (no moderator), `refuse_voice` a voice server that
turns the bot's next connections away (its rejoins fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_voice import VoiceModeration
from sandbox.lavalink import LavalinkEmulator

LAVALINK_PASSWORD = "sandbox-lavalink-password"

# Discord's voice gateway close codes (discord.com/developers/docs/topics/opcodes-and-status-codes, "Voice
# Close Event Codes"); the reasons are what Lavalink passes on in WebSocketClosedEvent.
VOICE_AUTH_FAILED = (4004, "Authentication failed.")
VOICE_SESSION_INVALID = (4006, "Session is no longer valid.")
VOICE_DISCONNECTED = (4014, "Disconnected.")
ABNORMAL_CLOSURE = 1006  # the TCP connection died without a close frame: no reason


@dataclass
class World:
    """A ready-made guild: ids of what the demo and the tests use most."""

    name: str
    guild_id: int
    text_id: int
    voice_ids: dict[str, int]
    member_ids: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    def __init__(self, *, host: str = "127.0.0.1", discord_port: int = 0, lavalink_port: int = 0,
                 heartbeat_interval: int = 41250, interaction_deadline: float | None = 3.0,
                 lavalink_speed: float = 1.0, player_update_interval: float = 1.0,
                 lyrics_plugin: bool = True) -> None:
        self.discord = DiscordEmulator(host=host, port=discord_port, heartbeat_interval=heartbeat_interval,
                                       interaction_deadline=interaction_deadline)
        self.lavalink = LavalinkEmulator(host=host, port=lavalink_port, password=LAVALINK_PASSWORD,
                                         speed=lavalink_speed, player_update_interval=player_update_interval,
                                         lyrics_plugin=lyrics_plugin)
        self.apps: list[Any] = []
        self._revoked_voice_tokens: set[str] = set()
        self._voice_refusals: dict[tuple[int, int], int] = {}  # (user id, guild id) -> connections still refused
        self.lavalink.voice_verifier = self.verify_voice
        self.discord.on_voice_moderation(self._on_voice_moderation)

    async def start(self) -> None:
        await self.discord.start()
        try:
            await self.lavalink.start()
        except BaseException:
            await self.discord.stop()
            raise

    async def stop(self) -> None:
        try:
            await self.lavalink.stop()
        finally:
            await self.discord.stop()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        await self.stop()
        if exc_type is None:  # never hide the test's own failure behind this one
            self.discord.assert_all_emulated()

    # -- voice: what ties a Lavalink player to the voice session Discord issued ------------------------------

    def verify_voice(self, user_id: int, guild_id: int, voice: dict[str, str]) -> tuple[int, str] | None:
        """None when Discord's voice server would accept these credentials from this bot, else the close
        (code, reason) it answers with: no voice session issued, a stale session id, or a session Discord
        invalidated -> 4006; a token or endpoint that is not the one last issued -> 4004. Give it to another
        LavalinkEmulator (``node.voice_verifier = sandbox.verify_voice``) to make that node as strict."""
        refusals = self._voice_refusals.get((int(user_id), int(guild_id)), 0)
        if refusals:
            self._voice_refusals[(int(user_id), int(guild_id))] = refusals - 1
            return VOICE_SESSION_INVALID
        issued = self.discord.voice_server(int(user_id), int(guild_id))
        if issued is None or voice.get("sessionId") != issued["session_id"] \
                or issued["token"] in self._revoked_voice_tokens:
            return VOICE_SESSION_INVALID
        if voice.get("token") != issued["token"] or voice.get("endpoint") != issued["endpoint"]:
            return VOICE_AUTH_FAILED
        return None

    def _on_voice_moderation(self, event: VoiceModeration) -> None:
        # Discord closes a disconnected member's voice websocket with 4014. A moved bot keeps its voice
        # session and gets a new VOICE_SERVER_UPDATE: its node keeps playing until the client sends the new
        # token (then it reconnects); the old token is simply no longer the one issued.
        if event.disconnected:
            self.lavalink.close_voice(event.user_id, event.guild_id, *VOICE_DISCONNECTED, by_remote=True)

    def drop_voice(self, app: Any, guild_id: int, code: int = VOICE_SESSION_INVALID[0]) -> None:
        """Fault: the node loses its voice connection to Discord for this bot's player in ``guild_id``.

        1006: a network drop (no close frame); the issued credentials stay valid, so sending them again
        reconnects. 4006: Discord invalidated the voice session; the bot stays in the channel as far as the
        gateway is concerned (no VOICE_STATE_UPDATE, as Discord sends none when only the voice websocket
        dies), but the node accepts those credentials no more: the bot must rejoin (op 4) to get new ones,
        as discord.py's own voice client does on 4006 (disconnect, then connect again). Either way the
        player gets WebSocketClosedEvent (byRemote true) and plays no audio. Raises LookupError when the
        bot has no connected player there.
        """
        if code == ABNORMAL_CLOSURE:
            reason = ""
        elif code == VOICE_SESSION_INVALID[0]:
            reason = VOICE_SESSION_INVALID[1]
            issued = self.discord.voice_server(app, guild_id)
            if issued is not None:
                self._revoked_voice_tokens.add(issued["token"])
        else:
            raise ValueError(f"drop_voice emulates 4006 or 1006, not {code}")
        if not self.lavalink.close_voice(app.user_id, guild_id, code, reason, by_remote=True):
            raise LookupError(f"{app.name} has no connected player in guild {guild_id}")

    def vanish_voice(self, app: Any, guild_id: int, close_code: int | None = ABNORMAL_CLOSURE) -> None:
        """Fault: Discord drops the bot's voice state without anyone asking (a Discord-side hiccup): the guild
        gets VOICE_STATE_UPDATE with channel_id null for the bot and its voice credentials are void, as after
        a moderator's disconnect, but the node reports no 4014: with ``close_code`` (default 1006, the
        connection dying without a close frame) its voice connection closes with that code, with None the
        node is told nothing. Raises LookupError when the bot is not in voice there."""
        guild = self.discord.state.guild(guild_id)
        if guild.voice_states.get(app.user_id) is None:
            raise LookupError(f"{app.name} is not in voice in guild {guild_id}")
        self.discord.gateway.leave_voice(guild, app.user_id)
        self.discord.gateway.notify()
        if close_code is not None:
            reason = VOICE_SESSION_INVALID[1] if close_code == VOICE_SESSION_INVALID[0] else ""
            self.lavalink.close_voice(app.user_id, guild_id, close_code, reason, by_remote=True)

    def refuse_voice(self, app: Any, guild_id: int, times: int) -> None:
        """Fault: Discord's voice server turns away the bot's next ``times`` voice connections in this guild
        (whatever credentials the node brings): each closes at once with 4006 and plays no audio, so the
        bot's tries to rejoin fail. 0 lifts the fault."""
        if times < 0:
            raise ValueError("times must be 0 or more")
        self._voice_refusals[(app.user_id, guild_id)] = times

    def voice_refusals_left(self, app: Any, guild_id: int) -> int:
        return self._voice_refusals.get((app.user_id, guild_id), 0)

    def add_bots(self, count: int, *, prefix: str = "Music") -> list[Any]:
        """Register `count` more bot applications, named "<prefix> <n>" with n continuing the numbering."""
        new = [self.discord.add_bot(f"{prefix} {len(self.apps) + i + 1}") for i in range(count)]
        self.apps.extend(new)
        return new

    def bot_number(self, app: Any) -> int:
        return self.apps.index(app) + 1

    def endpoint_env(self) -> dict[str, str]:
        """Variables that point bot.py / process_manager.py / register_commands.py at this sandbox."""
        return {
            "DISCORD_API_BASE": self.discord.api_base,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "LAVALINK_URI": self.lavalink.uri,
            "LAVALINK_PASSWORD": LAVALINK_PASSWORD,
        }

    def bot_env(self, apps: Sequence[Any] | None = None) -> dict[str, str]:
        """Endpoint variables plus BOT_TOKEN_n for each app (n = its number in this sandbox)."""
        env = self.endpoint_env()
        for app in self.apps if apps is None else apps:
            env[f"BOT_TOKEN_{self.bot_number(app)}"] = app.token
        return env

    async def create_world(self, apps: Sequence[Any] = (), *, name: str = "Sandbox Guild",
                           voice_channels: Sequence[str] = ("Lounge", "Studio"),
                           members: Sequence[str] = ("alice", "bob", "carol")) -> World:
        """A guild with #general, the given voice channels and human members, with `apps` in it."""
        d = self.discord
        guild = d.create_guild(name, owner_name="owner")
        text = d.create_text_channel(guild.id, "general")
        voices = {v: d.create_voice_channel(guild.id, v).id for v in voice_channels}
        people = {m: d.add_member(guild.id, m).id for m in members}
        for app in apps:
            await d.add_bot_to_guild(app, guild.id)
        return World(name=name, guild_id=guild.id, text_id=text.id, voice_ids=voices, member_ids=people)
