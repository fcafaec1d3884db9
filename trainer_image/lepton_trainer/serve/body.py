"""Read and decode an infer request's body: content type, size and time bounded; JSON errors become 400s."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import ClientDisconnect, Request

from .limits import Limits
from .tensors import InferRequest, InputSpec, RequestError, TensorLimits, parse_infer


class BodyBudget:
    """Bytes of request bodies held at once (being received or parsed), across all requests: beyond it a
    request is refused with 503, so many large bodies at once cannot exhaust memory."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise RequestError(
                503, f"the server already holds {self.used} bytes of request bodies (limit {self.limit})"
            )
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n


def check_content_type(request: Request) -> None:
    """JSON only; a request without a Content-Type is taken as JSON (OIP v2 has no other body)."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise RequestError(415, f"Content-Type {ctype[:80]!r} is not supported; send application/json")


async def read_body(request: Request, limits: Limits, budget: BodyBudget) -> bytes:
    """The whole body: 413 beyond ``max_body_bytes`` (Content-Length or counted), 408 when it takes longer
    than ``body_timeout`` s, 503 when ``budget`` is spent. The caller releases ``len(body)`` from the budget."""
    check_content_type(request)
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body ({declared} bytes) is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.stream():
                if size + len(chunk) > limit:
                    raise RequestError(413, f"the request body is over the limit of {limit} bytes")
                budget.take(len(chunk))
                size += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        budget.release(size)
        raise RequestError(408, f"the request body did not arrive within {limits.body_timeout:g} s") from None
    except ClientDisconnect:
        budget.release(size)
        raise RequestError(400, "the client closed the connection before the body arrived") from None
    except BaseException:
        budget.release(size)
        raise
    return b"".join(chunks)


def decode(body: bytes, spec: InputSpec, outputs: list[str], limits: TensorLimits) -> InferRequest:
    """JSON -> validated request (blocking; large bodies run in a worker thread)."""
    try:
        doc = json.loads(body)
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply to parse") from None
    except ValueError as exc:  # includes UnicodeDecodeError
        raise RequestError(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None
    return parse_infer(doc, spec, outputs, limits)
