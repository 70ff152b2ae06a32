"""Fixtures of the netns tier: a hybridnet-daemon serving in a node namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hybridnet import lab as testbed
from hybridnet.lab.daemon import start_embedded_daemon
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc


@pytest.fixture(params=["IPv4"])
def daemon(
    request: pytest.FixtureRequest, fabric: testbed.Fabric, tmp_path: Path
) -> Iterator[tuple[testbed.Node, pb_grpc.DaemonStub, Path]]:
    node = fabric.nodes[0]
    node.sysctl("net.ipv4.ip_forward", "1")
    _, socket = start_embedded_daemon(
        node, tmp_path, "198.19.50.0/24", "2001:db8:50::/64", "--ip-family", request.param
    )
    channel = grpc.insecure_channel(f"unix:{socket}")
    try:
        yield node, pb_grpc.DaemonStub(channel), socket  # type: ignore[no-untyped-call]
    finally:
        channel.close()
