"""uvicorn's h11 protocol plus a request-header deadline, and JSON for its protocol-level 400.

uvicorn 0.54 has ``timeout_keep_alive`` (idle between requests), ``h11_max_incomplete_event_size`` (header
bytes) and ``limit_concurrency`` (connections), all used; it has no deadline for the request headers: its
keep-alive timer is cancelled by any byte received and is not armed on a new connection at all. Measured
with bench/serve_slow_clients.py (uvicorn 0.54, timeout_keep_alive=1): a client dripping one header byte
per second and a client sending nothing were both still connected after 15 s with plain h11; with this
class both got a 408 and were closed at the deadline (2.0 s). The body deadline lives in the app
(serve/body.py), where the body is read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


class DeadlineH11Protocol(H11Protocol):
    """Closes a connection (with a 408) whose request headers are not complete ``header_timeout`` s after it
    opened or after its previous response; a request being served is never cut."""

    header_timeout = 10.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size
        why = f"invalid HTTP request (malformed, or request line and headers over {limit} bytes)"
        self.transport.write(_raw_response(400, "Bad Request", why))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being served: its body deadline and the app bound it
        message = f"the request headers did not arrive within {self.header_timeout:g} s"
        self.transport.write(_raw_response(408, "Request Timeout", message))
        self.transport.close()


def protocol(header_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this header deadline."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"header_timeout": header_timeout})
