"""The gateway's plain HTTP side: ``/healthz``, ``/metrics``, 404 and 426, the Origin check,
and where a handshake's token is read from.

Rules of this module:

* Answers are built from the hub's gauges, metrics and config only (synchronously): a health
  check never waits for a channel or the broker.
* A plain GET of ``/`` gets websockets' own 426 Upgrade Required; any other path without an
  upgrade gets 404 with the paths that exist.
* Tokens are secrets: :func:`token_from` reads them (``Authorization: Bearer`` first, then the
  ``token`` query parameter) and nothing here logs them.
"""

from __future__ import annotations

import http
import logging
import urllib.parse

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from rtwidgets import protocol

from .hub import Hub
from .metrics import CONTENT_TYPE

__all__ = ["HttpEndpoints", "token_from"]

log = logging.getLogger("rtwidgets.gateway")


class HttpEndpoints:
    """``process_request`` for ``websockets.serve`` (see the module rules): ``/healthz`` reports
    the hub's ``connections`` and ``channels``, ``/metrics`` renders its metrics, and WebSocket
    handshakes from an ``Origin`` not in ``config.allowed_origins`` (when set) get 403."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if path == "/healthz":
            gauges = self._hub.gauges()
            body = protocol.encode(
                {"status": "ok", "connections": gauges["connections"], "channels": gauges["channels"]}
            )
            return _response(conn, http.HTTPStatus.OK, body, "application/json")
        if path == "/metrics":
            return _response(conn, http.HTTPStatus.OK, self._hub.metrics.render().decode(), CONTENT_TYPE)
        if not upgrade:
            if path == "/":
                return None  # websockets answers 426 Upgrade Required
            return _response(conn, http.HTTPStatus.NOT_FOUND, "Not found. Try /, /healthz or /metrics.\n")
        allowed = self._hub.config.allowed_origins
        if allowed is not None:
            origin = request.headers.get("Origin")
            if origin not in allowed:
                log.info("refused WebSocket handshake from origin %r", origin)
                return _response(conn, http.HTTPStatus.FORBIDDEN, "Origin not allowed.\n")
        return None


def token_from(request: Request | None) -> str | None:
    """The handshake's token: ``Authorization: Bearer <token>``, else the ``token`` query parameter."""
    if request is None:
        return None
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    query = urllib.parse.urlsplit(request.path).query
    values = urllib.parse.parse_qs(query).get("token")
    return values[0] if values else None


def _response(
    conn: ServerConnection, status: http.HTTPStatus, body: str, content_type: str | None = None
) -> Response:
    response = conn.respond(status, body)
    if content_type is not None:
        headers = Headers(response.headers)
        del headers["Content-Type"]
        headers["Content-Type"] = content_type
        response.headers = headers
    return response
