"""GET /healthz and GET /metrics, served on the bot's own event loop (on when METRICS_PORT is set).

aiohttp's low-level server (aiohttp.web_server.Server) rather than aiohttp.web: no router or application
is needed for two paths, and it costs 0.6 MB instead of 1.6 MB per bot. The exposition is prometheus_client's
own (generate_latest, or OpenMetrics when the scraper asks for it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from aiohttp import web_request, web_response, web_server
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from utils import metrics
from utils.health import HealthInput, health_payload

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, snapshot: Callable[[], HealthInput], host: str, port: int) -> None:
        self.snapshot, self.host, self.port = snapshot, host, port
        self._server: asyncio.base_events.Server | None = None

    def health(self) -> tuple[int, dict[str, object]]:
        """The /healthz verdict; also refreshes the gauges that mirror it."""
        info = self.snapshot()
        status, body = health_payload(info)
        metrics.READY.set(status == 200)
        metrics.GATEWAY_LATENCY.set(info.gateway_latency)
        metrics.LOOP_LAG.set(info.loop_lag)
        return status, body

    async def handle(self, request: web_request.BaseRequest) -> web_response.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web_response.Response(status=405, text="GET only\n", headers={"Allow": "GET, HEAD"})
        if request.path == "/healthz":
            status, body = self.health()
            return web_response.Response(status=status, text=json.dumps(body), content_type="application/json")
        if request.path == "/metrics":
            self.health()
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            return web_response.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})
        return web_response.Response(status=404, text="not found: try /healthz or /metrics\n")

    async def start(self) -> None:
        """Listen; a port already in use is logged and the bot runs on without the endpoints."""
        loop = asyncio.get_running_loop()
        server = web_server.Server(self.handle, access_log=None)  # no access log: scrapes would flood the log
        try:
            self._server = await loop.create_server(server, self.host, self.port)
        except OSError as exc:
            log.error("cannot serve /healthz and /metrics on %s:%d (%s); running without them", self.host,
                      self.port, exc.strerror or exc)
            return
        log.info("serving /healthz and /metrics on http://%s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
