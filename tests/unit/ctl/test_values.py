"""Flag values: malformed ones are refused with a message naming what was expected."""

from __future__ import annotations

import argparse

import pytest

from hybridnet.api.resources import BGPPeer
from hybridnet.ctl.values import bgp_peer, flatten, key_value, one_of, seconds


def test_key_value() -> None:
    assert key_value("zone=a") == ("zone", "a")
    assert key_value("k=") == ("k", "")
    with pytest.raises(argparse.ArgumentTypeError, match="is not key=value"):
        key_value("zone")


def test_bgp_peer() -> None:
    assert bgp_peer("address=198.18.0.1,asn=65001") == BGPPeer("198.18.0.1", 65001)
    full = bgp_peer("address=2001:db8::1,asn=65002,password=s,hold-time=90,"
                    "graceful-restart-seconds=120")  # fmt: skip
    assert full == BGPPeer("2001:db8::1", 65002, "s", 120, 90)
    for text, words in (
        ("address=198.18.0.1", "lacks asn="),
        ("asn=1", "lacks address="),
        ("address=198.18.0.1,asn=x", "asn 'x' is not a whole number"),
        ("address=198.18.0.1,asn=1,port=179", "key one of address, asn"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            bgp_peer(text)


def test_one_of_ignores_case_and_names_the_choices() -> None:
    choose = one_of(("Underlay", "Overlay"))
    assert choose("overlay") == "Overlay"
    with pytest.raises(argparse.ArgumentTypeError, match="not one of Underlay, Overlay"):
        choose("vlan")


def test_seconds_takes_zero_to_an_hour_and_names_what_it_refuses() -> None:
    assert (seconds("0"), seconds("2.5"), seconds("3600")) == (0.0, 2.5, 3600.0)
    for bad, why in (("soon", "is not a number of seconds"), ("-1", "is not between"),
                     ("nan", "is not between"), ("inf", "is not between")):  # fmt: skip
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            seconds(bad)


def test_flatten() -> None:
    assert flatten(["a,b", " c ", ""]) == ["a", "b", "c"]
    assert flatten(None) == []
