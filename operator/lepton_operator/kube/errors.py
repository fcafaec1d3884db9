"""Typed API errors: one class per status the operator acts on (as kopf's _cogs/clients/errors.py).

Callers catch a class, never match substrings of a body: `NotFound`, `Conflict`, `Gone`, `TooManyRequests`
(with the server's Retry-After), `NamespaceTerminating`, and `Refused` (400/403/422: the API server or an
admission plugin said no; the same request will be refused again).
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An API call failed with a status other than the expected ones."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body

    @property
    def details(self) -> dict[str, Any]:
        """The metav1.Status the server sent, or {} when the body is not one."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    @property
    def message(self) -> str:
        """The server's own message (what a person should read), else the start of the body."""
        text = self.details.get("message")
        return str(text)[:1024] if text else self.body[:1024]

    @property
    def namespace_gone(self) -> bool:
        """The namespace is being deleted or is gone: nothing can be created in it any more."""
        return False


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""

    @property
    def namespace_gone(self) -> bool:
        return (self.details.get("details") or {}).get("kind") == "namespaces"


class Conflict(ApiError):
    """409: the object exists already, or its resourceVersion moved since it was read."""


class Gone(ApiError):
    """410: the resourceVersion asked for is too old (list again)."""


class TooManyRequests(ApiError):
    """429: the server is throttling; `retry_after` is its Retry-After in seconds, when given."""

    def __init__(self, status: int, method: str, path: str, body: str, retry_after: float | None = None) -> None:
        super().__init__(status, method, path, body)
        self.retry_after = retry_after


class Refused(ApiError):
    """400, 403 or 422: the request itself was refused (validation, admission, quota, Pod Security)."""


class NamespaceTerminating(Refused):
    """403 NamespaceTerminating: nothing can be created in a namespace being deleted."""

    @property
    def namespace_gone(self) -> bool:
        return True


def api_error(status: int, method: str, path: str, body: str, retry_after: str | None = None) -> ApiError:
    """The typed error for a failed request."""
    if status == 404:
        return NotFound(status, method, path, body)
    if status == 409:
        return Conflict(status, method, path, body)
    if status == 410:
        return Gone(status, method, path, body)
    if status == 429:
        return TooManyRequests(status, method, path, body, _seconds(retry_after))
    if status == 403 and "NamespaceTerminating" in _cause_reasons(body):
        return NamespaceTerminating(status, method, path, body)
    if status in (400, 403, 422):
        return Refused(status, method, path, body)
    return ApiError(status, method, path, body)


def _cause_reasons(body: str) -> set[str]:
    """The causes' reasons of a Status body (NamespaceTerminating is reported there)."""
    details = ApiError(0, "", "", body).details.get("details") or {}
    causes = details.get("causes") if isinstance(details, dict) else None
    return {str(c.get("reason")) for c in causes or [] if isinstance(c, dict)}


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
