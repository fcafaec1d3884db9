"""RFC 3339 timestamps as Kubernetes writes them (UTC, whole seconds): one format for every module."""

from __future__ import annotations

import calendar
import time
from datetime import datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def rfc3339(now: datetime) -> str:
    return now.strftime(FORMAT)


def epoch_seconds(text: str) -> float:
    """Seconds since the epoch of a timestamp like 2026-11-23T12:00:00Z."""
    return float(calendar.timegm(time.strptime(text, FORMAT)))


def seconds_since(text: str, now: datetime) -> float:
    return now.timestamp() - epoch_seconds(text)
