"""Parsing what pods send (replies, termination messages): one error type for every way it can be bad."""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes) -> Any:
    """JSON from an untrusted source; ValueError when it is not JSON, not UTF-8, or nested too deep to parse
    (json raises RecursionError for that: 64 KiB of brackets would otherwise escape every handler)."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
