"""hybridnet-ctl end to end on the embedded store (SQLite): the shared scenarios."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.lab.manager import IPAM_NAMESPACE
from hybridnet.store.sqlite import SQLiteStore
from tests.ctl_scenarios import CtlScenarios


class TestCtlOnEmbeddedStore(CtlScenarios):
    @pytest.fixture
    def store_path(self, tmp_path: Path) -> Path:
        return tmp_path / "store.db"

    @pytest.fixture
    def store(self, store_path: Path) -> Iterator[SQLiteStore]:
        store = SQLiteStore(store_path, recheck_interval=0.2)
        yield store
        store.close()

    @pytest.fixture
    def where(self, store: SQLiteStore, store_path: Path) -> list[str]:
        return ["--store", str(store_path), "--ipam-namespace", IPAM_NAMESPACE]
