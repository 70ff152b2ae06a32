"""Closing the store while other threads read, write and watch it: they get Unavailable and the
process lives. Closing a sqlite3 connection while another thread executes on it crashes the
interpreter (a clean-clone test run segfaulted so), which is why close() waits for the
operations under way; the race runs in a child process so that a crash fails this test
instead of ending pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

RACE = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from hybridnet.api.builtin import Lease
    from hybridnet.api.meta import ObjectMeta
    from hybridnet.store.errors import StoreError
    from hybridnet.store.sqlite import SQLiteStore

    def race(store):
        def read():
            try:
                while True:
                    store.list(Lease, "x")
            except StoreError:
                pass
        def write():
            try:
                for i in range(10**9):
                    store.create(Lease(ObjectMeta(name=f"w{i}", namespace="x")))
            except StoreError:
                pass
        def watch():
            try:
                for _ in store.watch(Lease, "0", "x"):
                    pass
            except StoreError:
                pass
        threads = [threading.Thread(target=t) for t in (read, read, read, write, watch)]
        for thread in threads:
            thread.start()
        time.sleep(0.02)
        store.close()
        for thread in threads:
            thread.join()

    for round in range(int(sys.argv[2])):
        store = SQLiteStore(Path(sys.argv[1]) / f"{round}.db")
        for i in range(50):
            store.create(Lease(ObjectMeta(name=f"l{i}", namespace="x")))
        race(store)
    print("survived")
    """
)


def test_closing_under_reads_writes_and_watches_ends_them_and_crashes_nothing(
    tmp_path: Path,
) -> None:
    """30 rounds: before close() waited, the first few crashed the child (SIGSEGV)."""
    done = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path), "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "survived"), done.stderr[-2000:]
