"""Answering an interaction whatever state it is in (fresh, deferred, already answered)."""

from __future__ import annotations

import logging
import math

import discord
from discord import app_commands

from utils import metrics
from utils.errors import MusicError

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Something went wrong on my side; it has been logged. Please try again."
TURNED_OFF = "This command is turned off here."
NO_LONGER_EXISTS = "This command no longer exists here; it disappears from the list once the commands are updated."


async def reply(interaction: discord.Interaction, content: str | None = None, *, ephemeral: bool = True,
                embed: discord.Embed | None = None, view: discord.ui.View | None = None) -> None:
    """Send `content` as the answer; after a public defer, an ephemeral answer replaces the "thinking" message."""
    kwargs: dict = {"content": content, "ephemeral": ephemeral}
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    if not interaction.response.is_done():
        await interaction.response.send_message(**kwargs)
        return
    deferred = interaction.response.type is discord.InteractionResponseType.deferred_channel_message
    if deferred and not ephemeral:
        # The answer replaces the "thinking..." placeholder instead of following it.
        await interaction.edit_original_response(**{k: v for k, v in kwargs.items() if k != "ephemeral"})
        return
    if ephemeral and deferred:
        # Our deferrals are public ("thinking..."); an ephemeral answer replaces that placeholder.
        try:
            await interaction.delete_original_response()
        except discord.HTTPException:
            log.debug("could not delete the deferred response of interaction %s", interaction.id)
    await interaction.followup.send(**kwargs)


async def defer_public(interaction: discord.Interaction) -> None:
    await interaction.response.defer(thinking=True)


def describe_error(error: BaseException) -> str | None:
    """The user-facing text for an expected failure, or None for a bug."""
    original = getattr(error, "original", None) or error
    if isinstance(original, MusicError):
        return str(original)
    if isinstance(error, app_commands.NoPrivateMessage):
        return "Music commands only work in a server."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: try again in {max(1, math.ceil(error.retry_after))} s."
    if isinstance(error, (app_commands.TransformerError, app_commands.CommandSignatureMismatch)):
        return "I didn't understand one of the options; please use the command as Discord suggests it."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use that here."
    return None


def unknown_command_text(error: app_commands.CommandNotFound, disabled: frozenset[str]) -> str:
    """A command Discord still shows but this bot does not have: turned off (DISABLED_COMMANDS) or gone."""
    qualified = [*error.parents, error.name]
    turned_off = any(" ".join(qualified[:n]) in disabled for n in range(1, len(qualified) + 1))
    return TURNED_OFF if turned_off else NO_LONGER_EXISTS


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """The one place where command and button failures become an ephemeral answer (and bugs a log entry)."""
    text = describe_error(error)
    command = interaction.command.qualified_name if interaction.command else (interaction.data or {}).get("custom_id")
    if isinstance(error, app_commands.CommandNotFound):
        disabled = getattr(getattr(interaction.client, "settings", None), "disabled_commands", frozenset())
        text, command = unknown_command_text(error, disabled), " ".join([*error.parents, error.name])
        if interaction.type is discord.InteractionType.autocomplete:  # a stale command's option being typed
            try:
                await interaction.response.autocomplete([])
            except discord.HTTPException as exc:
                log.debug("guild %s: no autocomplete answer for /%s (%s)", interaction.guild_id, command, exc.status)
            return
    if interaction.command is not None:  # slash commands; their successes count in bot.on_app_command_completion
        metrics.INTERACTIONS.labels(interaction.command.qualified_name, "refused" if text else "error").inc()
    if text is None:
        log.error("guild %s: /%s failed", interaction.guild_id, command, exc_info=getattr(error, "original", error))
        text = GENERIC_FAILURE
    else:
        log.info("guild %s: /%s refused: %s", interaction.guild_id, command, text)
    try:
        await reply(interaction, text)
    except discord.HTTPException as exc:
        log.warning("guild %s: could not answer /%s (%s)", interaction.guild_id, command, exc.status)
