"""DaemonClient (hybridnet's own gRPC client) against the fake daemon, a grpcio server (a
stand-in: see fake_daemon), called directly."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from hybridnet.rpc import messages as m
from hybridnet.rpc.client import DaemonClient, DaemonError, error_from_status
from tests.unit.cni.fake_daemon import Failure, FakeDaemon, standard_reply

Daemon = tuple[FakeDaemon, Path]
POD = m.Attachment(container_id="c1", netns="/run/netns/p", ifname="eth0", pod_name="p")


def test_every_call(daemon: Daemon) -> None:
    fake, socket_path = daemon
    client = DaemonClient(str(socket_path), timeout=5)
    assert client.add(POD, mtu=1400) == standard_reply("/run/netns/p")
    client.delete(POD)
    assert client.check(POD, standard_reply("/run/netns/p")) == []
    assert client.status().ready
    assert client.garbage_collect([("c1", "eth0")]) == ["hyb0123456789a"]
    assert [name for name, _ in fake.requests] == [
        "Add", "Delete", "Check", "Status", "GarbageCollect"]  # fmt: skip
    assert fake.calls("Add")[0].mtu == 1400


def test_nothing_listening(short_dir: Path) -> None:
    with pytest.raises(DaemonError) as error:
        DaemonClient(str(short_dir / "none.sock"), timeout=5).status()
    assert error.value.cni_code == 11 and error.value.unreachable
    assert "UNAVAILABLE" in error.value.details


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (Failure(grpc.StatusCode.UNAVAILABLE, "later", "11"), 11),
        (Failure(grpc.StatusCode.FAILED_PRECONDITION, "netns gone", "4"), 4),
        (Failure(grpc.StatusCode.FAILED_PRECONDITION, "netns «p» gone: 100%", "4"), 4),
        (Failure(grpc.StatusCode.UNAVAILABLE, "no code"), 11),
        (Failure(grpc.StatusCode.NOT_FOUND, "already gone"), 3),
        (Failure(grpc.StatusCode.PERMISSION_DENIED, "no"), 999),
        (Failure(grpc.StatusCode.INTERNAL, "bad code", "x"), 999),
        (Failure(grpc.StatusCode.INTERNAL, "zero is no error code", "0"), 999),
    ],
)
def test_failures_map_to_cni_codes(daemon: Daemon, failure: Failure, code: int) -> None:
    fake, socket_path = daemon
    fake.failures["Delete"] = failure
    with pytest.raises(DaemonError) as error:
        DaemonClient(str(socket_path), timeout=5).delete(POD)
    assert error.value.cni_code == code
    if failure.cni_code is None and failure.status == grpc.StatusCode.UNAVAILABLE:
        # Indistinguishable from a transport failure: answered as "not available".
        assert error.value.unreachable and failure.message in error.value.details
    else:
        assert error.value.msg == failure.message and not error.value.unreachable


def test_a_request_larger_than_the_flow_control_window(daemon: Daemon) -> None:
    """GC with 20,000 valid attachments (~600 kB): the client must wait for the server's
    WINDOW_UPDATEs to send it all."""
    fake, socket_path = daemon
    valid = [(f"container-{n:08d}", "eth0") for n in range(20_000)]
    assert DaemonClient(str(socket_path), timeout=10).garbage_collect(valid) == ["hyb0123456789a"]
    received = fake.calls("GarbageCollect")[0].valid
    assert len(received) == 20_000 and received[-1].container_id == "container-00019999"


@pytest.mark.parametrize("raw", ["0", "²", "-4", "", "11x"])
def test_a_cni_code_that_is_no_code_is_internal(raw: str) -> None:
    """grpcio sends only ASCII metadata; the mapping still refuses whatever is not a positive
    ASCII number instead of failing on it."""
    error = error_from_status(13, "broken", {"cni-code": raw}, "unix:/x")
    assert error.cni_code == 999 and error.msg == "broken"
