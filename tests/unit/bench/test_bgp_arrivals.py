"""bench.bgp_announce reads BIRD's kernel table through ``ip -ts -o monitor route``: the stamp
ip put on each line is the arrival time, whatever table or form the line has."""

from __future__ import annotations

import datetime

from bench.bgp_announce import RouteChange, parse_monitor_line


def stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def test_an_added_host_route_of_the_table_with_ips_stamp() -> None:
    line = (
        "[2026-12-01T15:33:54.295747] 198.19.0.5 via 198.18.0.13 dev eth0 table 100 "
        "proto bird metric 32 \n"
    )
    assert parse_monitor_line(line, 100) == RouteChange(
        "198.19.0.5/32", False, stamp("2026-12-01T15:33:54.295747")
    )


def test_a_deleted_route_and_an_ipv6_host() -> None:
    line = (
        "[2026-12-01T15:33:54.620220] Deleted 2001:db8:50::7 via 2001:db8::13 dev eth0 "
        "table 100 proto bird metric 32 pref medium"
    )
    change = parse_monitor_line(line, 100)
    assert change == RouteChange("2001:db8:50::7/128", True, stamp("2026-12-01T15:33:54.620220"))


def test_a_prefix_with_its_length_is_kept() -> None:
    line = (
        "[2026-12-01T15:33:54.000001] 198.19.0.0/16 via 198.18.0.11 dev eth0 table 100 proto bird"
    )
    change = parse_monitor_line(line, 100)
    assert change is not None and change.prefix == "198.19.0.0/16"


def test_other_tables_and_lines_without_a_stamp_are_not_ours() -> None:
    assert (
        parse_monitor_line("[2026-12-01T15:33:54.288856] local 127.0.0.1 dev lo table local", 100)
        is None
    )
    assert (
        parse_monitor_line(
            "[2026-12-01T15:33:54.288856] 10.0.0.1 dev lo table 1000 scope link", 100
        )
        is None
    )
    assert parse_monitor_line("198.19.0.5 dev eth0 table 100 proto bird", 100) is None
