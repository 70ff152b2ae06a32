"""The SQLite backend: the shared store contract, plus what only a file-backed store has."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridnet.api.resources import Subnet
from hybridnet.store.errors import Gone, Unavailable
from hybridnet.store.sqlite import SQLiteStore
from tests.store_contract import StoreContract, make_subnet


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "store.db")
    yield store
    store.close()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, sqlite_store: SQLiteStore) -> SQLiteStore:
        return sqlite_store

    @pytest.fixture
    def namespace(self) -> str:
        return "default"

    @pytest.fixture
    def compact(self, sqlite_store: SQLiteStore) -> Callable[[], None]:
        def compact_now() -> None:
            sqlite_store.compact()

        return compact_now


WRITER = """
import sys
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Subnet, SubnetSpec
from hybridnet.store.errors import AlreadyExists
from hybridnet.store.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
won = 0
for i in range(int(sys.argv[2])):
    subnet = Subnet(ObjectMeta(name=f"shared-{i}"),
                    SubnetSpec(network="n", range=AddressRange(version="4", cidr="198.19.0.0/24")))
    try:
        store.create(subnet)
        won += 1
    except AlreadyExists:
        pass
print(won)
"""


def test_processes_sharing_the_file_never_both_claim_a_name(tmp_path: Path) -> None:
    """Four processes race to create the same 200 names: each name is created exactly once."""
    path = tmp_path / "shared.db"
    SQLiteStore(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "200"], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    wins = [int(w.communicate(timeout=120)[0]) for w in writers]
    assert all(w.returncode == 0 for w in writers)
    assert sum(wins) == 200
    store = SQLiteStore(path)
    assert len(store.list(Subnet).items) == 200
    store.close()


def test_a_watcher_sees_writes_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SQLiteStore(path)
    start = store.list(Subnet).resource_version
    subprocess.run([sys.executable, "-c", WRITER, str(path), "3"], check=True, capture_output=True)
    names = []
    for event in store.watch(Subnet, start, timeout_seconds=10):
        names.append(event.object.metadata.name)
        if len(names) == 3:
            break
    assert names == ["shared-0", "shared-1", "shared-2"]
    store.close()


def test_versions_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SQLiteStore(path)
    created = first.create(make_subnet("s1"))
    first.close()
    second = SQLiteStore(path)
    assert second.get(Subnet, "s1").metadata.resource_version == created.metadata.resource_version
    later = second.create(make_subnet("s2", "198.19.1.0/24"))
    assert int(later.metadata.resource_version or 0) > int(created.metadata.resource_version or 0)
    second.close()


def test_history_is_compacted_automatically(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", history=100)
    first = store.create(make_subnet("s0")).metadata.resource_version
    for i in range(1, 1000):
        store.create(make_subnet(f"s{i}"))
    with pytest.raises(Gone, match="compacted"):
        next(iter(store.watch(Subnet, first or "", timeout_seconds=1)))
    store.close()


def test_an_unreachable_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(Unavailable, match="cannot open the store"):
        SQLiteStore(blocker / "store.db")
