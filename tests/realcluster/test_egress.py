"""The egress proxy's one boundary: which CONNECT requests it dials (test ranges only)."""

from __future__ import annotations

import pytest

from hack.realcluster.egress import parse_connect


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"CONNECT 198.18.0.10:10250 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", ("198.18.0.10", 10250)),
        (b"CONNECT [2001:db8::a]:9898 HTTP/1.1\r\n\r\n", ("2001:db8::a", 9898)),
        (b"CONNECT 198.19.255.1:1 HTTP/1.0\r\n\r\n", ("198.19.255.1", 1)),
    ],
)
def test_a_connect_to_a_test_range_address_is_dialled(
    head: bytes, expected: tuple[str, int]
) -> None:
    assert parse_connect(head) == expected


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"GET http://198.18.0.10/ HTTP/1.1\r\n\r\n", "not a CONNECT"),
        (b"CONNECT node1:10250 HTTP/1.1\r\n\r\n", "does not appear to be an IPv4 or IPv6"),
        (b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n", "outside the test ranges"),
        (b"CONNECT 127.0.0.1:2379 HTTP/1.1\r\n\r\n", "outside the test ranges"),
        (b"CONNECT [2001:db9::1]:443 HTTP/1.1\r\n\r\n", "outside the test ranges"),
        (b"CONNECT 198.18.0.10:0 HTTP/1.1\r\n\r\n", "bad port"),
        (b"CONNECT 198.18.0.10:70000 HTTP/1.1\r\n\r\n", "bad port"),
    ],
)
def test_anything_else_is_refused(head: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_connect(head)
