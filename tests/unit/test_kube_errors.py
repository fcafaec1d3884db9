"""Typed API errors: the class comes from the status and the Status body, never from substring matches."""

from __future__ import annotations

import json

import pytest
from lepton_operator.kube.errors import (
    ApiError,
    Conflict,
    Gone,
    NamespaceTerminating,
    NotFound,
    Refused,
    TooManyRequests,
    api_error,
)


def status(code: int, message: str, **details: object) -> str:
    return json.dumps({"kind": "Status", "code": code, "message": message, "details": details})


TERMINATING = status(
    403, 'pods "a" is forbidden: unable to create new content in namespace ns because it is being terminated',
    kind="pods", causes=[{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
)  # fmt: skip
QUOTA = status(403, 'pods "a" is forbidden: exceeded quota: gpus, requested: nvidia.com/gpu=4', kind="pods")


@pytest.mark.parametrize(
    ("code", "body", "cls", "gone"),
    [
        (404, status(404, 'trainingjobs "a" not found', kind="trainingjobs"), NotFound, False),
        (404, status(404, 'namespaces "ns" not found', kind="namespaces"), NotFound, True),
        (409, status(409, "the object has been modified"), Conflict, False),
        (410, status(410, "too old resource version"), Gone, False),
        (403, TERMINATING, NamespaceTerminating, True),
        (403, QUOTA, Refused, False),
        (422, status(422, "Pod is invalid: spec.tolerations[0].operator"), Refused, False),
        (500, "internal error", ApiError, False),
    ],
)
def test_statuses_map_to_classes(code: int, body: str, cls: type[ApiError], gone: bool) -> None:
    exc = api_error(code, "POST", "/api/v1/namespaces/ns/pods", body)
    assert type(exc) is cls and exc.namespace_gone is gone and exc.status == code


def test_the_servers_message_is_what_a_person_reads() -> None:
    assert api_error(403, "POST", "/x", QUOTA).message.startswith('pods "a" is forbidden: exceeded quota')
    assert api_error(502, "POST", "/x", "<html>bad gateway</html>").message == "<html>bad gateway</html>"


def test_too_many_requests_carries_retry_after() -> None:
    exc = api_error(429, "GET", "/x", "slow down", "3")
    assert isinstance(exc, TooManyRequests) and exc.retry_after == 3.0
    assert api_error(429, "GET", "/x", "", "soon").retry_after is None  # type: ignore[attr-defined]
