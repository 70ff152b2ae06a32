"""The virtual cluster's pure parts: tables, the ping matrix's rendering, progress, the layout
a later command reads back, and a pod's addresses. (The cluster itself: tests/netns.)"""

from __future__ import annotations

import io
import logging

import pytest

from hybridnet.lab.cluster_model import ClusterConfig, ClusterLayout, ClusterPod, default_subnets
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.netns import Namespace
from hybridnet.lab.progress import Progress
from hybridnet.lab.reach import Reach, render_matrix
from hybridnet.lab.tables import render


def test_a_table_pads_columns_to_their_widest_cell_and_says_when_it_is_empty() -> None:
    assert render("pods", ["POD", "NODE"], [["overlay-1", "n1"], ["u", "node2"]]) == (
        "pods\nPOD        NODE\noverlay-1  n1\nu          node2"
    )
    assert render("pods", ["POD", "NODE"], []) == "pods\nPOD  NODE\n(none)"
    with pytest.raises(ValueError, match="has 1 cells for 2 columns"):
        render("pods", ["POD", "NODE"], [["only"]])


def fake_pod(name: str, *addresses: str) -> ClusterPod:
    """A pod as the reports see it: only its name and addresses are read."""
    return ClusterPod(name, "default", None, Namespace(name), {}, "", addresses)  # type: ignore[arg-type]


def test_a_pod_gives_its_address_of_each_family_and_names_a_missing_one() -> None:
    pod = fake_pod("p", "198.19.0.1/24", "2001:db8:1::1/64")
    assert (pod.ipv4, pod.ipv6) == ("198.19.0.1", "2001:db8:1::1")
    with pytest.raises(TestbedError, match="pod q has no IPv6 address"):
        _ = fake_pod("q", "198.19.0.2/24").ipv6


def test_the_ping_matrix_marks_each_failed_family() -> None:
    a, b = fake_pod("a", "198.19.0.1/24", "2001:db8:1::1/64"), fake_pod("b", "198.19.0.2/24")
    reaches = [Reach("a", "b", 4, True), Reach("b", "a", 4, False)]
    lines = render_matrix([a, b], reaches).splitlines()
    assert lines[1:] == ["from \\ to  a      b", "a          -      4", "b          FAIL4  -"]


def test_the_layout_survives_its_json_round_trip() -> None:
    layout = ClusterLayout(
        prefix="hnt123abc",
        store="/run/x/store.db",
        switch="hnt123abc-fabric1",
        gateway="hnt123abc-gw2",
        outside="hnt123abc-outside",
        nodes={"node1": "hnt123abc-node1"},
        pods=[{"namespace": "default", "name": "p", "node": "node1", "netns": "hnt123abc-pod"}],
    )
    assert ClusterLayout.from_json(layout.to_json()) == layout


def test_the_overlay_subnets_follow_the_nat_setting_and_the_underlay_never_nats() -> None:
    for nat in (True, False):
        plans = default_subnets(ClusterConfig(overlay_nat=nat))
        assert {p.name: p.nat for p in plans} == {
            "underlay-v4": None, "underlay-v6": None, "overlay-v4": nat, "overlay-v6": nat,
        }  # fmt: skip
        assert {p.name: p.version for p in plans} == {
            "underlay-v4": "4", "underlay-v6": "6", "overlay-v4": "4", "overlay-v6": "6",
        }  # fmt: skip


def test_progress_prints_steps_with_their_items_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    with caplog.at_level(logging.INFO, "hybridnet.lab.progress"):
        with progress.step("daemons"):
            progress.item("node1 ready")
        with pytest.raises(KeyError), progress.step("pods"):
            raise KeyError("boom")
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines[:3] == ["daemons ...", "  node1 ready", lines[2]]
    assert lines[2].startswith("daemons: done in ")
    assert lines[3:] == ["pods ...", "pods: FAILED (KeyError)"]
    assert [r.getMessage() for r in caplog.records] == [
        "step started", "step item", "step done", "step started", "step failed",
    ]  # fmt: skip
