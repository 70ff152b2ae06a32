"""Start-up waits out a store that is not ready yet and ends on one that never will be.

The store is the embedded SQLite one behind a wrapper that makes its first requests fail as an
API server does right after it (re)starts (``Unavailable``: 429 "storage is (re)initializing",
5xx, connection refused) or when it refuses for good (``Forbidden``: RBAC; ``NotFound``: the CRD
is not installed). The real 429 from a real kube-apiserver is in
tests/cluster/test_manager_startup.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hack.controlplane import CertificateAuthority
from hybridnet.api.builtin import ValidatingWebhookConfiguration
from hybridnet.api.resources import IPInstance
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.manager import main, startup
from hybridnet.manager.startup import StartupAborted, StartupFailed, retry_transient
from hybridnet.metrics import new_registry
from hybridnet.store.errors import Forbidden, NotFound, StoreError, Unavailable
from hybridnet.store.informer import Backoff
from hybridnet.store.sqlite import SQLiteStore
from tests.store_contract import wait_until
from tests.unit.manager.stores import FailingStore

REPO = Path(__file__).resolve().parents[3]
QUICK = Backoff(initial=0.01, maximum=0.05)
WATCH_SECONDS = 1.0
"""Short watches, so that stopping the manager does not wait long for its informers."""


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "STARTUP_BACKOFF", QUICK)


# --------------------------------------------------------------------------- the retry itself


def flaky(failures: list[StoreError]) -> tuple[list[int], Callable[[], str]]:
    """An action that raises each of ``failures`` in turn, then returns "done"."""
    calls: list[int] = []

    def action() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return calls, action


def test_transient_errors_are_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hybridnet.manager.startup")
    calls, action = flaky([Unavailable("storage is (re)initializing")] * 3)
    result = retry_transient("load", action, threading.Event(), QUICK)
    assert result == "done"
    assert len(calls) == 4
    retries = [r for r in caplog.records if r.getMessage() == "start-up step failed, retrying"]
    assert [r.hybridnet_fields["attempt"] for r in retries] == [1, 2, 3]  # type: ignore[attr-defined]
    assert all(r.hybridnet_fields["step"] == "load" for r in retries)  # type: ignore[attr-defined]
    assert "storage is (re)initializing" in retries[0].hybridnet_fields["error"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("error", "named"),
    [
        (Forbidden('networks is forbidden: User "x" cannot list'), "Forbidden: networks"),
        (NotFound("list networks: not found"), "is the CRD installed?"),
    ],
)
def test_a_permanent_error_fails_at_once_naming_it(error: StoreError, named: str) -> None:
    calls, action = flaky([error])
    with pytest.raises(StartupFailed) as failed:
        retry_transient("load", action, threading.Event(), QUICK)
    assert len(calls) == 1
    assert failed.value.step == "load"
    assert named in str(failed.value)


def test_stopping_ends_the_wait() -> None:
    stopping = threading.Event()

    def action() -> None:
        stopping.set()  # a SIGTERM arrives while the store is still unavailable
        raise Unavailable("connection refused")

    with pytest.raises(StartupAborted):
        retry_transient("load", action, stopping, Backoff(initial=60, maximum=60))


# --------------------------------------------------------------------------- the manager


def manager_args(store_path: Path) -> list[str]:
    return ["--store", str(store_path), "--no-leader-elect", "--metrics-address", "",
            "--namespace", IPAM_NAMESPACE]  # fmt: skip


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Path]:
    """A store file with a network, a subnet, a node, and a pod to serve."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    harness = Harness(store, "t")
    harness.namespace(IPAM_NAMESPACE)
    harness.namespace("apps")
    harness.node("node-t")
    harness.underlay("u-t")
    harness.subnet("s-t", "u-t", "198.19.30.0/24")
    harness.pod("apps", "web", node="node-t")
    store.close()
    yield path


@pytest.mark.usefixtures("quick_backoff")
@pytest.mark.parametrize(("verb", "plural"), [("list", "networks"), ("list", "pods")])
def test_the_manager_starts_after_the_store_was_unavailable(
    seeded: Path, verb: str, plural: str
) -> None:
    """``list networks`` fails in the rebuild, ``list pods`` in the pod informer's sync."""
    store = FailingStore(
        SQLiteStore(seeded), verb, plural, 3, lambda: Unavailable("storage is (re)initializing")
    )
    manager = main.Manager(
        store, main.parse_args(manager_args(seeded)), new_registry(), watch_timeout=WATCH_SECONDS
    )
    try:
        manager.start()
        assert store.left == 0
        wait_until(
            lambda: bool(store.inner.list(IPInstance, IPAM_NAMESPACE).items), "web's IPInstance"
        )
    finally:
        manager.stop()
        store.close()


@pytest.mark.parametrize(
    ("verb", "plural", "step"),
    [("list", "networks", "rebuild the IPAM state"), ("list", "nodes", "sync the cache of nodes")],
)
def test_the_manager_refuses_to_start_when_forbidden(
    seeded: Path, verb: str, plural: str, step: str
) -> None:
    store = FailingStore(
        SQLiteStore(seeded), verb, plural, 1, lambda: Forbidden(f"{plural} is forbidden")
    )
    manager = main.Manager(
        store, main.parse_args(manager_args(seeded)), new_registry(), watch_timeout=WATCH_SECONDS
    )
    try:
        with pytest.raises(StartupFailed) as failed:
            manager.start()
        assert failed.value.step == step
        assert isinstance(failed.value.error, Forbidden)
    finally:
        manager.stop()
        store.close()


@pytest.mark.usefixtures("quick_backoff")
def test_the_webhook_registration_waits_out_an_unavailable_store(tmp_path: Path) -> None:
    ca = CertificateAuthority("startup-unit-ca")
    cert, key = ca.issue("webhook", sans=["127.0.0.1"], server=True).write(tmp_path, "serving")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    store = FailingStore(
        SQLiteStore(tmp_path / "store.db"),
        "get",
        "validatingwebhookconfigurations",
        2,
        lambda: Unavailable("storage is (re)initializing"),
    )
    args = main.parse_args(
        [
            *manager_args(tmp_path / "store.db"),
            *("--webhook-address", "127.0.0.1:0", "--webhook-url", "https://127.0.0.1:9443"),
            *("--webhook-cert", str(cert), "--webhook-key", str(key)),
            *("--webhook-ca", str(tmp_path / "ca.crt")),
        ]
    )
    server = main.start_webhook(store, args, threading.Event())
    try:
        assert store.left == 0
        configuration = store.inner.get(ValidatingWebhookConfiguration, "hybridnet-validating")
        assert configuration.body["webhooks"][0]["clientConfig"]["url"].startswith(
            "https://127.0.0.1:9443"
        )
    finally:
        server.stop()
        store.close()


# --------------------------------------------------------------------------- the process


def run_manager(seeded: Path, log: Path, failure: list[str]) -> subprocess.Popen[bytes]:
    """The manager process whose store fails as ``failure`` (VERB PLURAL TIMES ERROR) says."""
    module = "tests.unit.manager.failing_manager"
    argv = [sys.executable, "-m", module, *failure, "--", *manager_args(seeded)]
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def log_lines(log: Path) -> list[dict[str, object]]:
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_the_process_serves_after_429s(seeded: Path, tmp_path: Path) -> None:
    log = tmp_path / "manager.log"
    process = run_manager(seeded, log, ["list", "networks", "2", "Unavailable"])
    try:
        wait_until(
            lambda: any(line["msg"] == "manager serving" for line in log_lines(log)),
            "the manager serving",
        )
        lines = log_lines(log)
        retries = [line for line in lines if line["msg"] == "start-up step failed, retrying"]
        assert [(line["step"], line["attempt"]) for line in retries] == [
            ("rebuild the IPAM state", 1),
            ("rebuild the IPAM state", 2),
        ]
    finally:
        os.kill(process.pid, signal.SIGTERM)
        code = process.wait(30)
    assert code == 0, log.read_text()


@pytest.mark.parametrize(
    ("error", "named"), [("Forbidden", "Forbidden: list networks"), ("NotFound", "CRD installed")]
)
def test_the_process_exits_on_a_permanent_error_with_one_line(
    seeded: Path, tmp_path: Path, error: str, named: str
) -> None:
    log = tmp_path / "manager.log"
    process = run_manager(seeded, log, ["list", "networks", "1", error])
    code = process.wait(60)
    assert code == 1, log.read_text()
    errors = [line for line in log_lines(log) if line["level"] == "error"]
    assert len(errors) == 1, log.read_text()
    assert errors[0]["msg"] == "cannot start"
    assert errors[0]["step"] == "rebuild the IPAM state"
    assert named in str(errors[0]["error"])
