"""The manager's BGP flags: what they become, and what is refused naming the flag."""

from __future__ import annotations

import ipaddress

import pytest

from hybridnet.manager import main


def test_bgp_flags_become_the_speakers_settings() -> None:
    args = main.parse_args(
        [
            "--store", "x.db", "--bgp-router-id", "198.18.0.5",
            "--bgp-local-address", "198.18.0.5", "--bgp-local-address", "2001:db8::5",
            "--bgp-multihop", "3", "--bgp-workdir", "/var/lib/hybridnet/exabgp",
            "--bgp-answer-timeout", "12.5",
        ]
    )  # fmt: skip
    settings = main.bgp_settings(args)
    assert settings.router_id == ipaddress.IPv4Address("198.18.0.5")
    assert settings.speaker.local_addresses == {
        4: ipaddress.ip_address("198.18.0.5"),
        6: ipaddress.ip_address("2001:db8::5"),
    }
    assert settings.speaker.multihop == 3
    assert str(settings.workdir) == "/var/lib/hybridnet/exabgp"
    assert settings.answer_timeout == 12.5


def test_without_bgp_flags_everything_is_derived() -> None:
    settings = main.bgp_settings(main.parse_args(["--store", "x.db"]))
    assert settings.router_id is None and settings.workdir is None
    assert settings.speaker.local_addresses == {} and settings.speaker.multihop is None
    assert settings.answer_timeout == 30.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bgp-router-id", "2001:db8::5"], "is not an IPv4 address"),
        (["--bgp-local-address", "198.18.0.5", "--bgp-local-address", "198.18.0.6"],
         "at most one address per IP version"),
        (["--bgp-multihop", "0"], "--bgp-multihop must be 1-255"),
        (["--bgp-local-address", "nope"], "--bgp-local-address"),
        (["--bgp-answer-timeout", "0"], "--bgp-answer-timeout must be a number of seconds above 0"),
        (["--bgp-answer-timeout", "inf"], "--bgp-answer-timeout must be a number of seconds"),
    ],
)  # fmt: skip
def test_bad_bgp_flags_are_refused(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(["--store", "x.db", *flags])
    assert message in capsys.readouterr().err
