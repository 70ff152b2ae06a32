"""The network configuration on stdin (hybridnet.cni.config), called directly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hybridnet.cni import versions
from hybridnet.cni.config import (
    DEFAULT_SOCKET,
    ValidAttachment,
    parse_config,
    peek_version,
)
from hybridnet.cni.errors import CniError


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_defaults(version: str) -> None:
    conf = parse_config(encode({"cniVersion": version, "name": "pods", "type": "hybridnet"}))
    assert (conf.cni_version, conf.name, conf.type) == (version, "pods", "hybridnet")
    assert (conf.socket, conf.mtu, conf.prev_result, conf.valid_attachments) == (
        DEFAULT_SOCKET,
        0,
        None,
        (),
    )


def test_options_and_gc_list() -> None:
    conf = parse_config(
        encode(
            {
                "cniVersion": "1.1.0",
                "name": "pods",
                "type": "hybridnet",
                "socket": "/run/h/d.sock",
                "mtu": 1450,
                "timeout": 2.5,
                "args": {"labels": {"unknown": "ignored"}},
                "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
            }
        )
    )
    assert (conf.socket, conf.mtu, conf.timeout) == ("/run/h/d.sock", 1450, 2.5)
    assert conf.valid_attachments == (ValidAttachment("c1", "eth0"),)


@pytest.mark.parametrize(
    "attachments", [{}, [1], [{"containerID": "c1"}], [{"containerID": 1, "ifname": "eth0"}]]
)
def test_bad_gc_list(attachments: Any) -> None:
    document = {"cniVersion": "1.1.0", "name": "n", "type": "t",
                "cni.dev/valid-attachments": attachments}  # fmt: skip
    with pytest.raises(CniError) as error:
        parse_config(encode(document))
    assert error.value.code == 7


def test_unknown_version_is_checked_before_the_rest() -> None:
    with pytest.raises(CniError) as error:
        parse_config(encode({"cniVersion": "0.2.0"}))
    assert error.value.code == 1


def test_peek_version() -> None:
    assert peek_version(b"{") == versions.LATEST
    assert peek_version(encode({"cniVersion": "0.3.1"})) == "0.3.1"
    assert peek_version(encode({"cniVersion": "7.0.0"})) == versions.LATEST
    assert peek_version(encode([])) == versions.LATEST
