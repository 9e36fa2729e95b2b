"""Point discord.py at another REST base / gateway (a REST proxy, or the sandbox in tests)."""

from __future__ import annotations

import logging

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

log = logging.getLogger(__name__)


def apply_endpoint_overrides(api_base: str | None, gateway_url: str | None) -> None:
    """Must run before the client logs in. `Route.BASE` also serves interaction webhooks."""
    if api_base:
        Route.BASE = api_base.rstrip("/")
        log.info("Discord REST base overridden: %s", Route.BASE)
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
        log.info("Discord gateway overridden: %s", gateway_url)
