"""Fixtures of the netns tier: a hybridnet-daemon serving in a node namespace."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Network, NetworkSpec, Subnet, SubnetSpec
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.store.sqlite import SQLiteStore
from tests.netns import testbed


@pytest.fixture(params=["IPv4"])
def daemon(
    request: pytest.FixtureRequest, fabric: testbed.Fabric, tmp_path: Path
) -> Iterator[tuple[testbed.Node, pb_grpc.DaemonStub, Path]]:
    node = fabric.nodes[0]
    node.sysctl("net.ipv4.ip_forward", "1")
    store_path = tmp_path / "store.db"
    store = SQLiteStore(store_path)
    store.create(
        Network(ObjectMeta(name="pods"), NetworkSpec(type="Overlay", mode="VXLAN", net_id=5))
    )
    store.create(
        Subnet(
            ObjectMeta(name="pods-v4"),
            SubnetSpec(network="pods", range=AddressRange(version="4", cidr="198.19.50.0/24")),
        )
    )
    store.create(
        Subnet(
            ObjectMeta(name="pods-v6"),
            SubnetSpec(network="pods", range=AddressRange(version="6", cidr="2001:db8:50::/64")),
        )
    )
    store.close()
    socket = tmp_path / "run" / "daemon.sock"
    process = node.spawn(
        [
            sys.executable,
            "-m",
            "hybridnet.daemon.main",
            "--node-name",
            "node1",
            "--store",
            str(store_path),
            "--network",
            "pods",
            "--socket",
            str(socket),
            "--ip-family",
            request.param,
        ]
    )
    deadline = time.monotonic() + 20
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert socket.exists(), process.read_remaining()
    channel = grpc.insecure_channel(f"unix:{socket}")
    try:
        yield node, pb_grpc.DaemonStub(channel), socket  # type: ignore[no-untyped-call]
    finally:
        channel.close()
