"""CNI_* environment parsing and validation (hybridnet.cni.env), called directly."""

from __future__ import annotations

import pytest

from hybridnet.cni.env import PodArgs, parse_cni_args, read_env, validate_ifname
from hybridnet.cni.errors import CniError

ATTACHMENT = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/p", "CNI_IFNAME": "eth0"}


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_commands_without_an_attachment_need_nothing_else(command: str) -> None:
    env = read_env({"CNI_COMMAND": command})
    assert (env.command, env.container_id, env.netns, env.ifname) == (command, "", "", "")


def test_add_reads_everything() -> None:
    env = read_env(
        {
            "CNI_COMMAND": "ADD",
            **ATTACHMENT,
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u;X=y",
            "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        }
    )
    assert env.container_id == "c1" and env.netns == "/run/netns/p" and env.ifname == "eth0"
    assert env.pod == PodArgs(name="p", namespace="ns", uid="u")
    assert env.path == ("/opt/cni/bin", "/usr/lib/cni")


def test_del_tolerates_a_missing_netns() -> None:
    env = read_env({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"})
    assert env.netns == ""


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
@pytest.mark.parametrize("missing", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_and_check_need_the_attachment(command: str, missing: str) -> None:
    environ = {"CNI_COMMAND": command, **ATTACHMENT}
    del environ[missing]
    with pytest.raises(CniError) as error:
        read_env(environ)
    assert error.value.code == 4 and missing in error.value.msg


@pytest.mark.parametrize(
    "ifname", ["", "0123456789abcdef", ".", "..", "a/b", "a:b", "a b", "a\tb", "é" * 8]
)
def test_invalid_ifnames(ifname: str) -> None:
    with pytest.raises(CniError) as error:
        validate_ifname(ifname) if ifname else read_env(
            {"CNI_COMMAND": "ADD", **ATTACHMENT, "CNI_IFNAME": ""}
        )
    assert error.value.code == 4


@pytest.mark.parametrize("ifname", ["eth0", "net1", "0123456789abcde", "a.b", "veth-x_1"])
def test_valid_ifnames(ifname: str) -> None:
    validate_ifname(ifname)


def test_cni_args() -> None:
    assert parse_cni_args("") == PodArgs()
    assert parse_cni_args("K8S_POD_NAME=a;K8S_POD_NAMESPACE=") == PodArgs(name="a")
    assert parse_cni_args("IgnoreUnknown=true;FOO=1;K8S_POD_NAME=a=b").name == "a=b"
    for bad in ("FOO=1", "IgnoreUnknown=0;FOO=1", "K8S_POD_NAME", "=x"):
        with pytest.raises(CniError) as error:
            parse_cni_args(bad)
        assert error.value.code == 4


def test_address_requests_are_kept_for_add_to_refuse() -> None:
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=a;IP=198.19.0.5").address_requests == (
        "IP=198.19.0.5",
    )
    # Known keys: refused at ADD even without IgnoreUnknown, not as "unknown".
    both = parse_cni_args("MAC=02:00:00:00:00:01;IP=198.19.0.5,2001:db8::5")
    assert both.address_requests == ("IP=198.19.0.5,2001:db8::5", "MAC=02:00:00:00:00:01")


def test_add_refuses_a_requested_address_naming_it() -> None:
    """podman passes --ip as IP= (and --mac-address as MAC=) with IgnoreUnknown=1: ignoring
    them would give the container other addresses than it asked for."""
    cni_args = "IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:01;IP=198.19.0.5"
    with pytest.raises(CniError) as error:
        read_env({"CNI_COMMAND": "ADD", **ATTACHMENT, "CNI_ARGS": cni_args})
    assert error.value.code == 4
    assert "IP=198.19.0.5;MAC=02:00:00:00:00:01" in error.value.msg


@pytest.mark.parametrize("command", ["DEL", "CHECK"])
def test_other_commands_take_a_requested_address(command: str) -> None:
    """podman sends DEL the same CNI_ARGS after a refused ADD: it must still clean up."""
    cni_args = "IgnoreUnknown=1;K8S_POD_NAME=web;IP=198.19.0.5"
    env = read_env({"CNI_COMMAND": command, **ATTACHMENT, "CNI_ARGS": cni_args})
    assert env.pod.name == "web"
