"""Fixtures shared by the tiers: the namespace test bed and 802.1Q-by-user-mode-linux."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from hybridnet import lab as testbed
from tests.netns import uml

# Scenario modules shared by two tiers: pytest explains their failed asserts too.
pytest.register_assert_rewrite("tests.ctl_scenarios")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Send tests that need 802.1Q into user-mode-linux when this kernel lacks it."""
    uml.reroute_8021q_items(items)
    if os.geteuid() != 0:
        needs_root = pytest.mark.skip(reason="needs root (network namespaces)")
        for item in items:
            if item.get_closest_marker("root"):
                item.add_marker(needs_root)


@pytest.fixture(scope="session")
def testbed_run() -> Iterator[testbed.TestbedRun]:
    """The run's name prefix and liveness lock; leftovers of crashed runs are removed first."""
    if os.geteuid() != 0:
        pytest.skip("netns tier: needs root to create network namespaces")
    testbed.remove_stale_runs()
    run = testbed.TestbedRun()
    yield run
    not_cleaned = run.namespaces()
    run.close()
    assert not not_cleaned, f"fixtures left namespaces behind: {not_cleaned}"


@pytest.fixture
def fabric_factory(testbed_run: testbed.TestbedRun) -> Iterator[Callable[[int], testbed.Fabric]]:
    """Build fabrics with N nodes each; all are torn down when the test ends, pass or fail."""
    built: list[testbed.Fabric] = []

    def build(nodes: int = 2) -> testbed.Fabric:
        fabric = testbed.Fabric(testbed_run)
        built.append(fabric)
        for _ in range(nodes):
            fabric.add_node()
        return fabric

    yield build
    for fabric in built:
        fabric.teardown()


@pytest.fixture
def fabric(fabric_factory: Callable[[int], testbed.Fabric]) -> testbed.Fabric:
    """A fabric with a gateway and two nodes."""
    return fabric_factory(2)
