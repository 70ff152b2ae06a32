"""hybridnet-daemon's command line: what it accepts, and one clear error for what it does not."""

from __future__ import annotations

import pytest

from hybridnet.daemon import main


def test_serve_with_the_kubernetes_store() -> None:
    args = main.parse_args(["serve", "--node-name", "n1", "--kubeconfig", "/k", "--mtu-default",
                            "9000", "--metrics-address", "127.0.0.1:9900"])  # fmt: skip
    assert (args.command, args.node_name, args.kubeconfig, args.mtu_default) == (
        "serve", "n1", "/k", 9000)  # fmt: skip


def test_serve_on_the_embedded_store() -> None:
    args = main.parse_args(["--node-name", "n1", "--store", "/s.db", "--network", "pods"])
    assert (args.store, args.network, args.ip_family) == ("/s.db", "pods", "IPv4")


def test_the_embedded_store_needs_no_default_network() -> None:
    """Pods then choose their network by their Pod objects' annotations."""
    args = main.parse_args(["--node-name", "n1", "--store", "/s.db"])
    assert (args.store, args.network) == ("/s.db", None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "--node-name is required"),
        (["serve", "--node-name", "n", "--network", "pods"], "--network is for the embedded"),
        (["serve", "--node-name", "n", "--store", "/s", "--kubeconfig", "/k"], "not allowed with"),
        (["serve", "--node-name", "n", "--metrics-address", "nope"], "--metrics-address"),
        (["serve", "--node-name", "n", "--mtu-default", "10"], "--mtu-default 10: an MTU"),
        (["serve", "--node-name", "n", "--allocation-timeout", "0"], "above 0 seconds"),
        (["serve", "--node-name", "n", "--ip-family", "IPv5"], "invalid choice"),
        (["serve", "--node-name", "n", "--resync-period", "0"], "--resync-period 0.0: must be"),
        (["serve", "--node-name", "n", "--vxlan-port", "70000"], "VXLAN port 70000 is not in"),
        (["serve", "--node-name", "n", "--vtep-address", "nope"], "VTEP address 'nope'"),
        (["serve", "--node-name", "n", "--overlay-table", "254"], "must differ and not be"),
        (["serve", "--node-name", "n", "--overlay-priority", "1"], "rule priorities must rise"),
        (["install", "--mtu", "70000"], "--mtu 70000: an MTU"),
        (["install", "--mtu", "abc"], "invalid int value"),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main.parse_args(argv)
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], errors


def test_datapath_flags_become_the_node_config() -> None:
    args = main.parse_args(["--node-name", "n1", "--kubeconfig", "/k", "--vtep-interface",
                            "eth1", "--underlay-interface", "bond0", "--vxlan-port", "4789",
                            "--local-pod-table", "500", "--resync-period", "5"])  # fmt: skip
    config = args.node_config
    assert (config.vtep_interface, config.underlay_interface, config.vxlan_port) == (
        "eth1", "bond0", 4789)  # fmt: skip
    assert config.numbers.local_pod_table == 500 and args.resync_period == 5.0
    defaults = main.parse_args(["--node-name", "n1"]).node_config
    assert defaults.vtep_interface is None and defaults.numbers.overlay_table == 40000
