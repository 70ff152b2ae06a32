"""hybridnet-manager's /metrics as the README documents it, scraped from the real process (on the
embedded store) over IPv4 and IPv6 loopback and read with prometheus_client's parser."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, Node, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Network, NetworkSpec, Subnet, SubnetSpec
from hybridnet.metrics import LATENCY_BUCKETS
from hybridnet.store.sqlite import SQLiteStore
from tests.scrape import scrape, value
from tests.store_contract import wait_until

RUN = "m1"


class _Log:
    """The process's JSON log lines, read on a thread as they come."""

    def __init__(self, stream: IO[str]):
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.port = 0
        self._stream = stream
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == "metrics server listening":
                self.port = int(record["port"])
                self._listening.set()

    def close(self) -> None:
        """Once the process has exited: the reader is at the end of the stream."""
        self._reader.join(timeout=30)
        self._stream.close()

    def wait_listening(self, timeout: float) -> int:
        if not self._listening.wait(timeout):
            raise AssertionError("no 'metrics server listening' line:\n" + "".join(self.lines))
        return self.port


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[int, _Log]]:
    """A manager on a store that already has an underlay network, a subnet, a node and a pod."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    rack = {"hybridnet.test/rack": RUN}
    for namespace in ("kube-system", f"ns-{RUN}"):
        store.create(Namespace(ObjectMeta(name=namespace)))
    store.create(Node(ObjectMeta(name=f"node-{RUN}", labels=rack)))
    network = NetworkSpec(type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, node_selector=rack)
    store.create(Network(ObjectMeta(name=f"u-{RUN}"), network))
    subnet = SubnetSpec(network=f"u-{RUN}", range=AddressRange(version="4", cidr="198.19.20.0/24"))
    store.create(Subnet(ObjectMeta(name=f"s-{RUN}"), subnet))
    pod = {"spec": {"nodeName": f"node-{RUN}", "containers": [{"name": "c", "image": "i"}]}}
    store.create(Pod(ObjectMeta(name="web", namespace=f"ns-{RUN}"), body=pod))
    store.close()
    argv = [sys.executable, "-m", "hybridnet.manager.main", "--store", str(path),
            "--no-leader-elect", "--metrics-address", ":0"]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    log = _Log(process.stderr)
    try:
        # Bound only for a manager that never starts (a broken build): start-up takes ~1 s.
        yield log.wait_listening(timeout=60), log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def hosts() -> list[str]:
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        return ["127.0.0.1"]  # no IPv6 in this kernel: the empty host binds 0.0.0.0
    return ["127.0.0.1", "::1"]


def test_every_documented_metric_is_served_with_its_labels(manager: tuple[int, _Log]) -> None:
    port, _ = manager
    subnet = f"s-{RUN}"

    def pod_counted() -> bool:
        """The status writer reports a subnet after its first flush, the pod's address in it."""
        used = value(scrape("127.0.0.1", port), "hybridnet_subnet_addresses", subnet=subnet,
                     state="used")  # fmt: skip
        return used == 1

    wait_until(pod_counted, "the subnet gauge counting the pod")
    for host in hosts():
        families = scrape(host, port)
        assert value(families, "hybridnet_manager_leader") == 1
        assert families["hybridnet_manager_leader"].documentation == "1 while this replica leads."
        usage = families["hybridnet_subnet_addresses"]
        assert (usage.type, usage.documentation) == ("gauge", "Addresses per subnet by state.")
        states = {s.labels["state"]: s.value for s in usage.samples if s.labels["subnet"] == subnet}
        assert states == {"total": 254, "used": 1, "available": 253}  # /24 less network, broadcast
        latency = families["hybridnet_manager_allocation_seconds"]
        assert latency.type == "histogram"
        assert latency.documentation == "Time to allocate and persist a pod's addresses."
        assert value(families, "hybridnet_manager_allocation_seconds_count") == 1
        bounds = [s.labels["le"] for s in latency.samples if s.name.endswith("_bucket")]
        assert bounds == [*(repr(b) for b in LATENCY_BUCKETS), "+Inf"]
