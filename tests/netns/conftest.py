"""Fixtures of the netns tier: a hybridnet-daemon serving in a node namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from tests.daemon_harness import POD_NETWORK, embedded_store, start_daemon
from tests.netns import testbed


@pytest.fixture(params=["IPv4"])
def daemon(
    request: pytest.FixtureRequest, fabric: testbed.Fabric, tmp_path: Path
) -> Iterator[tuple[testbed.Node, pb_grpc.DaemonStub, Path]]:
    node = fabric.nodes[0]
    node.sysctl("net.ipv4.ip_forward", "1")
    store_path = embedded_store(tmp_path / "store.db", "198.19.50.0/24", "2001:db8:50::/64")
    socket = tmp_path / "run" / "daemon.sock"
    start_daemon(
        node,
        socket,
        "--node-name",
        "node1",
        "--store",
        str(store_path),
        "--network",
        POD_NETWORK,
        "--ip-family",
        request.param,
    )
    channel = grpc.insecure_channel(f"unix:{socket}")
    try:
        yield node, pb_grpc.DaemonStub(channel), socket  # type: ignore[no-untyped-call]
    finally:
        channel.close()
