"""Does uvicorn close slow-header and silent connections by itself? Plain uvicorn h11 vs DeadlineH11Protocol.

    .venv/bin/python bench/serve_slow_clients.py    (about 35 s; loopback only)

One trivial ASGI app, uvicorn 0.54 with timeout_keep_alive=1; a client dripping one header byte per second,
and one that connects and sends nothing, each watched for 15 s. The result is why serve/protocol.py exists.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import uvicorn  # noqa: E402
from lepton_trainer.serve.protocol import protocol  # noqa: E402

from tests.serve.support import free_port, trickle  # noqa: E402


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    http_classes: list[tuple[str, Any]] = [("uvicorn h11", "h11"), ("DeadlineH11Protocol(2 s)", protocol(2.0))]
    for name, http in http_classes:
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http=http, timeout_keep_alive=1, log_level="error", lifespan="off"
        )
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.05)
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        reply, secs = trickle("127.0.0.1", port, head, every=1.0, limit=15)
        state = "closed" if secs < 15 else "still open"
        print(f"{name}: slow headers (1 byte/s): {state} after {secs:.1f} s, reply {reply[:30]!r}")
        reply, secs = trickle("127.0.0.1", port, b"", every=1.0, limit=15)
        print(f"{name}: connection sending nothing: {'closed' if secs < 15 else 'still open'} after {secs:.1f} s")
        srv.should_exit = True
        thread.join(5)


if __name__ == "__main__":
    main()
