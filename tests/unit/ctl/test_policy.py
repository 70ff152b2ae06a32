"""``policy explain``: its argument parsing, and the shared scenarios on the embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.ctl.arguments import parse
from hybridnet.ctl.errors import CtlError
from hybridnet.ctl.policy import parse_pod, parse_port
from hybridnet.policy.model import Protocol
from hybridnet.store.sqlite import SQLiteStore
from tests.ctl_policy_scenarios import PolicyExplainScenarios


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80", (80, Protocol.TCP)), ("53/udp", (53, Protocol.UDP)), ("9/SCTP", (9, Protocol.SCTP))],
)
def test_port_and_protocol(text: str, expected: tuple[int, Protocol]) -> None:
    assert parse_port(text) == expected


@pytest.mark.parametrize("text", ["0", "80/", "/tcp", "80/tcp/x", "-1", "65536"])
def test_bad_ports(text: str) -> None:
    with pytest.raises(CtlError):
        parse_port(text)


def test_pods_by_name_or_namespace_and_name() -> None:
    assert parse_pod("web", "shop") == ("shop", "web")
    assert parse_pod("dev/web", "shop") == ("dev", "web")
    with pytest.raises(CtlError, match="is not a pod"):
        parse_pod("a/b/c", "shop")


def test_the_command_line() -> None:
    args = parse(["policy", "explain", "a", "b", "80/udp", "-n", "x", "--family", "6"], "ctl")
    assert (args.source, args.destination, args.port, args.namespace, args.family) == (
        "a", "b", "80/udp", "x", 6,
    )  # fmt: skip


class TestPolicyExplainOnEmbeddedStore(PolicyExplainScenarios):
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
        return ["--store", str(store_path)]
