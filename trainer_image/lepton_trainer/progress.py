"""Training progress: a JSON document kept in a file and served on ``GET /progress``.

The operator polls the endpoint (or reads the file) and copies the document into the
TrainingJob's status; neither needs the pod to hold any Kubernetes credentials.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lepton_trainer.atomic import write_atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def parse_listen(value: str, default_port: int) -> tuple[str, int] | None:
    """Parse "host:port", "host" or ":port"; "off"/"" disable the endpoint (None)."""
    value = value.strip()
    if value in ("", "off", "none"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    return host or "0.0.0.0", int(port)


# A refused connection (every thread busy) gets this and is closed.
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\r\n" + (
    b'{"error": "the progress endpoint is busy"}'
)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """At most ``max_threads`` connections served at once (more are answered 503 and closed at once); each
    connection is shut down ``deadline`` s after it was accepted, however slowly its client sends."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_threads: int, deadline: float
    ) -> None:
        super().__init__(address, handler)
        self.deadline, self.refused = deadline, 0
        self._slots = threading.BoundedSemaphore(max_threads)
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="progress-reaper", daemon=True)
        self._reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        with self._lock:
            self._deadlines[request] = time.monotonic() + self.deadline
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: socket.socket) -> None:
        with self._lock:
            if self._deadlines.pop(request, None) is not None:
                self._slots.release()

    def _reap(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                late = [sock for sock, deadline in self._deadlines.items() if deadline < now]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns: its thread ends

    def server_close(self) -> None:
        self._stop.set()
        super().server_close()


class ProgressServer:
    """A tiny threaded HTTP server answering ``GET /progress`` with the latest document.

    Bounded: ``max_threads`` connections at once (503 beyond), ``io_timeout`` s per socket read or write,
    ``deadline`` s per connection in all; HTTP/1.0, one request per connection.
    """

    def __init__(
        self, host: str, port: int, *, max_threads: int = 8, io_timeout: float = 2.0, deadline: float = 5.0
    ) -> None:
        self._body = b"{}"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = io_timeout

            def do_GET(self) -> None:
                if self.path.split("?")[0] in ("/progress", "/"):
                    self._reply(200, owner._body, "application/json")
                elif self.path == "/healthz":
                    self._reply(200, b"ok", "text/plain")
                else:
                    self._reply(404, b'{"error": "not found; GET /progress"}', "application/json")

            def _reply(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = _BoundedHTTPServer((host, port), Handler, max_threads, deadline)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="progress-http", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def refused(self) -> int:
        """Connections answered 503 because every thread was busy."""
        return self._httpd.refused

    def publish(self, body: bytes) -> None:
        self._body = body

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ProgressReporter:
    """Turns step counts into a progress document (rate, ETA) and publishes it."""

    def __init__(
        self,
        *,
        total_steps: int,
        steps_per_epoch: int,
        global_batch: int,
        file: Path | None = None,
        server: ProgressServer | None = None,
        static: dict[str, Any] | None = None,
        min_file_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.global_batch = global_batch
        self.file = file
        self.server = server
        self.min_file_interval = min_file_interval
        self.clock = clock
        self._doc: dict[str, Any] = {"version": SCHEMA_VERSION, "state": "Starting", **(static or {})}
        self._rate: float | None = None  # smoothed steps/s
        self._mark: tuple[float, int] | None = None
        self._last_file_write = float("-inf")
        if server is not None:
            host, port = server.address
            self._doc["endpoint"] = f"http://{host}:{port}/progress"

    @property
    def document(self) -> dict[str, Any]:
        return dict(self._doc)

    def start(self, step: int, last_checkpoint_step: int | None) -> None:
        """Training (re)starts at ``step``; the rate window opens here, not at process start."""
        self._mark = (self.clock(), step)
        self._doc.update(state="Running", lastCheckpointStep=last_checkpoint_step, resumedFromStep=step)
        self._set_step(step)
        self._publish(force=True)

    def step(self, step: int, loss: float | None = None) -> None:
        """Record that ``step`` optimizer steps are done, with the mean loss since the last call."""
        now = self.clock()
        if self._mark is not None:
            t0, s0 = self._mark
            if now > t0 and step > s0:
                rate = (step - s0) / (now - t0)
                self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
            self._mark = (now, step)
        self._set_step(step)
        if loss is not None:
            self._doc["loss"] = round(loss, 6)
        self._publish()

    def checkpointed(self, step: int) -> None:
        if self._doc.get("lastCheckpointStep") != step:
            self._doc["lastCheckpointStep"] = step
            self._publish(force=True)

    def finish(self, state: str, **fields: Any) -> None:
        """The run ended (``Succeeded``/``Failed``/``Stopped``); ``fields`` are added to the document."""
        self._doc.update(state=state, etaSeconds=0.0 if state == "Succeeded" else None, **fields)
        self._publish(force=True)

    def _set_step(self, step: int) -> None:
        rate = self._rate
        remaining = max(self.total_steps - step, 0)
        self._doc.update(
            step=step,
            totalSteps=self.total_steps,
            epoch=step // self.steps_per_epoch if self.steps_per_epoch else 0,
            samplesPerSecond=round(rate * self.global_batch, 1) if rate else None,
            etaSeconds=round(remaining / rate, 1) if rate else None,
        )

    def _publish(self, force: bool = False) -> None:
        self._doc["updatedAt"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        body = json.dumps(self._doc, separators=(",", ":")).encode()
        if self.server is not None:
            self.server.publish(body)
        now = self.clock()
        if self.file is not None and (force or now - self._last_file_write >= self.min_file_interval):
            self._last_file_write = now
            try:
                write_atomic(self.file, body, durable=False)
            except OSError as exc:
                log.warning("cannot write progress file %s: %s", self.file, exc)
                self.file = None
