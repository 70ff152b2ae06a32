"""Reading what iperf3, ping and ``bridge monitor fdb`` print (hybridnet/lab/perf.py)."""

from __future__ import annotations

import json
import time

import pytest

from hybridnet.lab import perf
from hybridnet.lab.errors import TestbedError


def stamp(seconds: float, microseconds: int) -> str:
    """A ``bridge -timestamp`` line for the local time ``seconds`` (microseconds unpadded)."""
    return f"Timestamp: {time.ctime(seconds)} {microseconds} usec"


def test_fdb_events_carry_bridges_own_stamps_even_below_a_tenth_of_a_second() -> None:
    second = float(int(time.mktime((2026, 12, 1, 12, 30, 39, 0, 0, -1))))
    text = "\n".join(
        [
            stamp(second, 992849),
            "00:00:00:00:00:00 dev eth0.vxlan5 dst 198.18.0.200 self permanent",
            stamp(second + 1, 7038),  # "7038 usec": 0.007038 s, not padded to six digits
            "Deleted 02:00:5e:10:00:c8 dev eth0.vxlan5 dst 198.18.0.200 self permanent",
            stamp(second + 1, 7067),
            "33:33:00:00:00:01 dev eth0 self permanent",
        ]
    )
    events = perf.parse_fdb_monitor(text)
    assert [(e.deleted, e.mac, e.dev, e.dst) for e in events] == [
        (False, "00:00:00:00:00:00", "eth0.vxlan5", "198.18.0.200"),
        (True, "02:00:5e:10:00:c8", "eth0.vxlan5", "198.18.0.200"),
        (False, "33:33:00:00:00:01", "eth0", None),
    ]
    assert [round(e.at - second, 6) for e in events] == [0.992849, 1.007038, 1.007067]


def test_an_fdb_line_without_its_stamp_is_left_out() -> None:
    text = "\n".join(
        [
            "52:54:00:00:00:01 dev vx dst 198.18.0.11 self permanent",  # monitor joined mid-way
            "Timestamp: not a time at all usec",
            "52:54:00:00:00:02 dev vx dst 198.18.0.12 self permanent",
        ]
    )
    assert perf.parse_fdb_monitor(text) == []


def test_ping_rtts_are_one_per_sequence_number_without_duplicates() -> None:
    text = """PING 198.19.82.10 (198.19.82.10) 56(84) bytes of data.
64 bytes from 198.19.82.10: icmp_seq=1 ttl=62 time=0.051 ms
64 bytes from 198.19.82.10: icmp_seq=3 ttl=62 time=0.043 ms
64 bytes from 198.19.82.10: icmp_seq=3 ttl=62 time=0.090 ms (DUP!)
64 bytes from 198.19.82.10: icmp_seq=2 ttl=62 time=1.20 ms

--- 198.19.82.10 ping statistics ---
3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 29ms
rtt min/avg/max/mdev = 0.043/0.431/1.200/0.520 ms
"""
    assert perf.parse_ping_rtts(text) == [0.051, 1.2, 0.043]
    assert perf.PingResult(5, perf.parse_ping_rtts(text)).lost == 2


def test_iperf3_throughput_is_what_the_server_received() -> None:
    report = {
        "start": {"version": "iperf 3.12"},
        "end": {
            "sum_sent": {"bits_per_second": 24.7e9, "retransmits": 24},
            "sum_received": {"bits_per_second": 24.6e9},
        },
    }
    run = perf.parse_iperf3(json.dumps(report))
    assert run == perf.Throughput(bits_per_second=24.6e9, retransmits=24)
    assert run.gbit_per_second == pytest.approx(24.6)


def test_a_failed_iperf3_run_says_why() -> None:
    report = {"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}
    with pytest.raises(TestbedError, match="Connection refused"):
        perf.parse_iperf3(json.dumps(report))
    with pytest.raises(TestbedError, match="no JSON report"):
        perf.parse_iperf3("iperf3: error - some usage problem")
    with pytest.raises(TestbedError, match="without its totals"):
        perf.parse_iperf3(json.dumps({"end": {}}))
