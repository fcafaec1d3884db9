"""Fixtures: the digits sample trained and exported once per session, and running servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import ServerProcess, train_digits


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(export directory, trainer result) of a short run of the trainer's digits sample."""
    return train_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test starts (append); stopped afterwards."""
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.stop()
