"""SQLite watchers sleep until a commit wakes them, in this process or another, and never poll.

The bounds below are generous on purpose and are not timing claims: where a watcher's periodic
re-check is set to an hour, an event that arrives at all can only have come from the
notification, and the bound only keeps a broken build from hanging the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.resources import Subnet
from hybridnet.store.errors import Unavailable
from hybridnet.store.sqlite import SAFETY_POLL_SECONDS, SQLiteStore
from hybridnet.store.sqlite_wakeup import CommitNotifier
from tests.store_contract import WAIT_SECONDS, make_subnet, wait_until

AN_HOUR = 3600.0
"""A re-check period no test outlives: whatever wakes a watcher sooner is a notification."""
CHILD_SECONDS = 60.0
"""How long a child process may take to start Python, import and answer (normally ~1 s)."""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path, recheck_interval=AN_HOUR)
    yield opened
    opened.close()


@pytest.fixture
def other(path: Path) -> Iterator[SQLiteStore]:
    """A second store on the same file: as far as waking goes, another process."""
    opened = SQLiteStore(path, recheck_interval=AN_HOUR)
    yield opened
    opened.close()


CHILD_WATCHER = """
import sys
from hybridnet.api.resources import Subnet
from hybridnet.store.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1], recheck_interval=3600)
for event in store.watch(Subnet, sys.argv[2]):
    print(event.type, event.object.metadata.name, flush=True)
    if event.object.metadata.name == "second":
        break
store.close()
"""


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line from the child within {timeout} s")
    return process.stdout.readline().strip()


def own_network_namespace() -> list[str]:
    """A command prefix that runs the child in a network namespace of its own (gone when it
    exits; the host's is not touched): plain ``unshare --net`` as root, inside a user
    namespace otherwise. Skips when this machine can make neither."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux unshare is not installed")
    prefix = (
        [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--user", "--map-root-user", "--net"]
    )
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    return prefix


@pytest.mark.parametrize("namespace", ["same network namespace", "own network namespace"])
def test_a_watcher_in_another_process_wakes_on_a_write(
    store: SQLiteStore, path: Path, namespace: str
) -> None:
    """Also from another network namespace, as a daemon in a node's namespace is: the socket
    is a file, found by its path, not an address in a network namespace."""
    prefix = own_network_namespace() if namespace == "own network namespace" else []
    start = store.list(Subnet).resource_version
    store.create(make_subnet("first"))
    child = subprocess.Popen(
        [*prefix, sys.executable, "-c", CHILD_WATCHER, str(path), start],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # "first" was already in the log, so the child has read the log once and is past
        # that read; "second" is committed after it and can reach it only by a wake-up.
        assert read_line(child, CHILD_SECONDS) == "ADDED first"
        store.create(make_subnet("second", "198.19.1.0/24"))
        assert read_line(child, CHILD_SECONDS) == "ADDED second"
        assert child.wait(CHILD_SECONDS) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_an_idle_watcher_makes_no_queries(path: Path) -> None:
    """One read of the log when the watch starts, then none until its timeout ends it: the
    timeout (the positive signal that the window is over) is shorter than the re-check
    period, so any further read would be polling (the old watcher read 20 times a second)."""
    window = 2.0
    assert window < SAFETY_POLL_SECONDS
    store = SQLiteStore(path)  # the default re-check period
    try:
        start = store.list(Subnet).resource_version
        statements: list[str] = []
        store._conn().set_trace_callback(statements.append)  # the watch reads in this thread
        assert list(store.watch(Subnet, start, timeout_seconds=window)) == []
        log_reads = [s for s in statements if "FROM events" in s]
        assert len(log_reads) == 1, statements
    finally:
        store.close()


def test_closing_the_store_wakes_and_ends_its_watchers(store: SQLiteStore) -> None:
    start = store.list(Subnet).resource_version
    outcomes: list[BaseException | None] = []

    def watch_forever() -> None:
        try:
            for _ in store.watch(Subnet, start):
                pass
            outcomes.append(None)
        except Unavailable as exc:
            outcomes.append(exc)

    watchers = [threading.Thread(target=watch_forever) for _ in range(5)]
    for thread in watchers:
        thread.start()
    wait_until(lambda: store.notifier.waiting == 5, "five waiting watchers")
    listening = store.notifier.listening_path
    assert listening is not None and listening.exists()
    store.close()
    for thread in watchers:
        thread.join(WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in watchers), "close() must end its watchers"
    assert len(outcomes) == 5
    assert all(isinstance(exc, Unavailable) and "closed" in str(exc) for exc in outcomes)
    assert not listening.exists(), "a closed store leaves no socket behind"


@pytest.mark.parametrize("writer", ["same store", "other store"])
def test_many_watchers_all_wake(store: SQLiteStore, other: SQLiteStore, writer: str) -> None:
    """Fifty threads wait on one store; one commit - by that store (condition variable) or by
    another one on the file (datagram, then the condition variable) - wakes them all."""
    count = 50
    start = store.list(Subnet).resource_version
    heard: list[str] = []
    lock = threading.Lock()

    def watch_one_event() -> None:
        # No timeout: however slow the others are to start, this one keeps waiting (a broken
        # wake-up would leave it waiting until the fixture closes the store).
        with contextlib.suppress(Unavailable):
            for event in store.watch(Subnet, start):
                with lock:
                    heard.append(event.object.metadata.name)
                return

    watchers = [threading.Thread(target=watch_one_event, daemon=True) for _ in range(count)]
    for thread in watchers:
        thread.start()
    wait_until(lambda: store.notifier.waiting == count, f"{count} waiting watchers")
    (store if writer == "same store" else other).create(make_subnet("ring"))
    for thread in watchers:
        thread.join(WAIT_SECONDS)
    assert heard == ["ring"] * count


def test_a_store_deep_in_the_filesystem_wakes_the_others_too(tmp_path: Path) -> None:
    """Its socket's path is longer than a unix socket address may be (108 bytes)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "store.db"
    assert len(str(deep.with_name("store.db-watchers"))) > 108
    watcher = SQLiteStore(deep, recheck_interval=AN_HOUR)
    writer = SQLiteStore(deep, recheck_interval=AN_HOUR)
    try:
        start = watcher.list(Subnet).resource_version
        events = iter(watcher.watch(Subnet, start, timeout_seconds=WAIT_SECONDS))
        writer.create(make_subnet("first"))
        assert next(events).object.name == "first"  # the watch is past its first read now
        writer.create(make_subnet("second", "198.19.1.0/24"))
        assert next(events).object.name == "second"
    finally:
        watcher.close()
        writer.close()


def test_a_writer_removes_sockets_whose_owner_is_gone(store: SQLiteStore, path: Path) -> None:
    directory = path.with_name("store.db-watchers")
    directory.mkdir()
    abandoned = directory / "12345-gone"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    leftover.bind(str(abandoned))
    leftover.close()  # its file stays, as after a crash; nobody receives on it
    assert abandoned.exists()
    store.create(make_subnet("s1"))
    assert not abandoned.exists()


def test_a_write_that_wakes_no_one_is_seen_at_the_next_recheck(
    path: Path, other: SQLiteStore
) -> None:
    """Like a write by an older hybridnet: no datagram comes, and the watcher re-checks."""
    watcher = SQLiteStore(path, recheck_interval=0.2)
    try:
        start = watcher.list(Subnet).resource_version
        events = iter(watcher.watch(Subnet, start, timeout_seconds=WAIT_SECONDS))
        other.create(make_subnet("first"))
        assert next(events).object.name == "first"  # the watch is listening and past a read
        listening = watcher.notifier.listening_path
        assert listening is not None
        listening.unlink()  # writers no longer find it
        other.create(make_subnet("unrung", "198.19.1.0/24"))
        assert next(events).object.name == "unrung"
    finally:
        watcher.close()


def test_a_watcher_that_cannot_listen_says_so_and_rechecks(
    path: Path, other: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    path.with_name("store.db-watchers").write_text("in the way of the directory")
    watcher = SQLiteStore(path, recheck_interval=0.2)
    try:
        start = watcher.list(Subnet).resource_version
        with caplog.at_level(logging.WARNING, logger="hybridnet.store.sqlite_wakeup"):
            events = iter(watcher.watch(Subnet, start, timeout_seconds=WAIT_SECONDS))
            other.create(make_subnet("first"))
            assert next(events).object.name == "first"
        assert "cannot listen for other processes' writes" in caplog.text
        assert watcher.notifier.listening_path is None
        other.create(make_subnet("second", "198.19.1.0/24"))
        assert next(events).object.name == "second"
        assert caplog.text.count("cannot listen for other processes' writes") == 1  # once
    finally:
        watcher.close()


def test_a_lost_wake_up_socket_is_replaced_and_wakes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its file removed behind its back (a cleanup of the directory), a listener hears no
    one; the next listen() binds a new one, and the other side's next commit reaches it."""
    directory = tmp_path / "store.db-watchers"
    listening, writing = CommitNotifier(directory), CommitNotifier(directory)
    try:
        listening.listen()
        lost = listening.listening_path
        assert lost is not None
        lost.unlink()
        with caplog.at_level(logging.WARNING, logger="hybridnet.store.sqlite_wakeup"):
            listening.listen()
        assert "wake-up socket lost; listening again" in caplog.text
        again = listening.listening_path
        assert again is not None and again != lost and again.exists()
        seen = listening.generation
        writing.committed()
        listening.wait(seen, CHILD_SECONDS)  # returns at once when the datagram came
        assert listening.generation != seen
    finally:
        listening.close()
        writing.close()


def test_a_watcher_listens_again_after_losing_its_socket(path: Path) -> None:
    watcher = SQLiteStore(path, recheck_interval=0.05)
    try:
        start = watcher.list(Subnet).resource_version
        events = iter(watcher.watch(Subnet, start, timeout_seconds=WAIT_SECONDS))

        def watch() -> None:
            with contextlib.suppress(Unavailable):  # closing the store ends the watch so
                next(events, None)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        wait_until(lambda: watcher.notifier.listening_path is not None, "the first listener")
        lost = watcher.notifier.listening_path
        assert lost is not None
        lost.unlink()
        wait_until(
            lambda: (p := watcher.notifier.listening_path) is not None and p != lost and p.exists(),
            "a new listener",
        )
    finally:
        watcher.close()
        thread.join(WAIT_SECONDS)
