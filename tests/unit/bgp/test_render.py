"""ExaBGP's configuration and environment from peers: the lines that matter, the refusals,
and ExaBGP itself reading what was rendered (``exabgp validate``, ``exabgp env``)."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybridnet.bgp.errors import PeerConfigError
from hybridnet.bgp.model import Family, Peer
from hybridnet.bgp.render import (
    EnvironmentSettings,
    quote,
    render_configuration,
    render_environment,
    scrubbed_environment,
)

ROUTER_ID = ipaddress.ip_address("198.18.0.10")
RELAY = [sys.executable, "-I", "-m", "hybridnet.bgp.relay", "/run/x/api.sock"]
EXABGP = [sys.executable, "-m", "exabgp"]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def neighbor_block(text: str, address: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"neighbor {address} {{")
    end = lines.index("}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_an_ebgp_peer_with_every_option() -> None:
    peer = Peer(
        ip("198.18.0.1"),
        65000,
        65010,
        password="a s3cret\\x",  # noqa: S106
        hold_time=9,
        graceful_restart_seconds=120,
        local_address=ip("198.18.0.10"),
    )
    block = neighbor_block(render_configuration([peer], ROUTER_ID, RELAY), "198.18.0.1")
    assert block == [
        "router-id 198.18.0.10;",
        "local-address 198.18.0.10;",
        "local-as 65010;",
        "peer-as 65000;",
        "hold-time 9;",
        'md5-password "a s3cret\\\\x";',
        "md5-base64 false;",
        "outgoing-ttl 1;",
        "adj-rib-out true;",
        "group-updates true;",
        "manual-eor true;",
        "capability { graceful-restart 120; }",
        "family { ipv4 unicast; ipv6 unicast; }",
        "api { processes [ hybridnet ]; neighbor-changes; fsm; "
        "send { parsed; notification; } receive { parsed; notification; } }",
    ]


def test_ttl_is_1_for_direct_ebgp_the_hop_count_for_multihop_and_left_alone_for_ibgp() -> None:
    peers = [
        Peer(ip("198.18.0.1"), 65000, 65010),
        Peer(ip("198.18.0.2"), 65000, 65010, multihop=4),
        Peer(ip("198.18.0.3"), 65010, 65010),
    ]
    text = render_configuration(peers, ROUTER_ID, RELAY)
    assert "outgoing-ttl 1;" in neighbor_block(text, "198.18.0.1")
    assert "outgoing-ttl 4;" in neighbor_block(text, "198.18.0.2")
    assert not [line for line in neighbor_block(text, "198.18.0.3") if "ttl" in line]


def test_defaults_leave_hold_time_to_exabgp_and_address_to_the_kernel() -> None:
    block = neighbor_block(
        render_configuration([Peer(ip("2001:db8::1"), 65000, 65010)], ROUTER_ID, RELAY),
        "2001:db8::1",
    )
    assert "local-address auto;" in block
    assert not [line for line in block if line.startswith(("hold-time", "md5"))]
    assert "capability { graceful-restart 300; }" in block


def test_graceful_restart_0_announces_no_capability_and_families_can_be_one() -> None:
    peer = Peer(
        ip("198.18.0.1"),
        65000,
        65010,
        graceful_restart_seconds=0,
        families=frozenset({Family.IPV4}),
    )
    block = neighbor_block(render_configuration([peer], ROUTER_ID, RELAY), "198.18.0.1")
    assert not [line for line in block if "graceful" in line]
    assert "family { ipv4 unicast; }" in block


def test_the_api_process_runs_the_relay_with_json_events() -> None:
    text = render_configuration([], ROUTER_ID, ["/usr/bin/python3", "-m", "relay", "/a b/s"])
    assert text.splitlines()[:4] == [
        "process hybridnet {",
        '    run "/usr/bin/python3" "-m" "relay" "/a b/s";',
        "    encoder json;",
        "}",
    ]


def test_refusals() -> None:
    peer = Peer(ip("198.18.0.1"), 65000, 65010)
    with pytest.raises(PeerConfigError, match=re.escape("198.18.0.1 is listed twice")):
        render_configuration([peer, Peer(ip("198.18.0.1"), 65001, 65010)], ROUTER_ID, RELAY)
    with pytest.raises(PeerConfigError, match="router id 2001:db8::a must be an IPv4 address"):
        render_configuration([peer], ip("2001:db8::a"), RELAY)
    with pytest.raises(PeerConfigError, match="must start with a path"):
        render_configuration([peer], ROUTER_ID, ["python3", "-m", "relay"])


@pytest.mark.parametrize("word", ['a"b', "a'b", "tab\t", "\u00e9"])
def test_quote_refuses_what_exabgp_cannot_read_back(word: str) -> None:
    with pytest.raises(PeerConfigError):
        quote(word)


def test_environment_keeps_privileges_and_tunes_the_reactor() -> None:
    text = render_environment(EnvironmentSettings(user="root", reactor_speed=0.25))
    assert '[exabgp.daemon]\nuser = "root"\ndrop = false\n' in text
    assert "[exabgp.reactor]\nspeed = 0.25\n" in text
    assert "[exabgp.api]\nack = true\ncli = false\nrespawn = false\nterminate = true\n" in text
    assert "[exabgp.tcp]\nbind = ''\n" in text


def test_environment_settings_are_checked() -> None:
    with pytest.raises(PeerConfigError, match="log level 'LOUD'"):
        EnvironmentSettings(log_level="LOUD")
    with pytest.raises(PeerConfigError, match="reactor speed 0"):
        EnvironmentSettings(reactor_speed=0)


def test_scrubbed_environment_drops_exabgp_settings_only() -> None:
    kept = scrubbed_environment(
        [
            ("PATH", "/bin"),
            ("exabgp.daemon.user", "x"),
            ("exabgp_api_ack", "false"),
            ("EXABGP_ENVFILE", "/etc/x"),
            ("HOME", "/root"),
        ]
    )
    assert kept == {"PATH": "/bin", "HOME": "/root"}


# --------------------------------------------------------------------------- ExaBGP reads it


def exabgp(args: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    env = scrubbed_environment(os.environ.items())
    env["EXABGP_ENVFILE"] = str(env_file)
    return subprocess.run(
        [*EXABGP, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_exabgp_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    peers = [
        Peer(ip("198.18.0.1"), 65000, 65010, password="a s3cret, with #;{\\", hold_time=9),  # noqa: S106
        Peer(ip("2001:db8::1"), 65010, 65010, multihop=3, local_address=ip("2001:db8::a")),
        Peer(
            ip("198.18.0.2"),
            65000,
            65010,
            graceful_restart_seconds=0,
            families=frozenset({Family.IPV4}),
        ),
    ]
    config = tmp_path / "exabgp.conf"
    config.write_text(render_configuration(peers, ROUTER_ID, RELAY))
    env_file = tmp_path / "exabgp.env"
    env_file.write_text(render_environment(EnvironmentSettings()))
    done = exabgp(["validate", "-n", "-v", str(config)], env_file)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    # What ExaBGP parsed, read back from its own dump of the configuration.
    assert 'md5-password "a s3cret, with #;{\\";' in output, output
    for address in ("198.18.0.1", "2001:db8::1", "198.18.0.2"):
        assert f"\u2713 neighbor  {address}" in output


def test_exabgp_reads_the_rendered_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "exabgp.env"
    env_file.write_text(render_environment(EnvironmentSettings(user="root")))
    done = exabgp(["env", "-d"], env_file)
    assert done.returncode == 0, done.stderr
    differences = done.stdout
    for line in (
        "drop = false",
        "user = 'root'",
        "cli = false",
        "respawn = false",
        "terminate = true",
        "speed = 0.1",
        "level = WARNING",
    ):
        assert line in differences, differences
