"""The manager's scenarios on the embedded SQLite store (no API server needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.store.sqlite import SQLiteStore
from tests.manager_scenarios import ManagerScenarios


class TestManagerOnSQLite(ManagerScenarios):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "store.db")
        yield store
        store.close()
