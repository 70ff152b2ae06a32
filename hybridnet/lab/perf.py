"""Measuring the lab's paths: TCP throughput (iperf3), round-trip times (ping), and the moments
FDB entries come and go in a namespace's kernel (``bridge monitor fdb``).

The benchmarks use these. Each starts its own processes inside the namespaces and ends them by
PID; the parsers are plain functions over the tools' output.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from hybridnet.lab.errors import TestbedError
from hybridnet.lab.netns import Namespace
from hybridnet.lab.processes import Process

IPERF3_PORT = 5201


# --------------------------------------------------------------------------- iperf3


@dataclasses.dataclass(frozen=True)
class Throughput:
    """One iperf3 TCP run, as its JSON report says."""

    bits_per_second: float
    """Received by the server over the whole run."""
    retransmits: int
    """Segments the sender sent again (many hint at drops, e.g. an MTU black hole)."""

    @property
    def gbit_per_second(self) -> float:
        return self.bits_per_second / 1e9


def parse_iperf3(text: str) -> Throughput:
    """The figures of an ``iperf3 -c ... -J`` report; TestbedError when the run failed."""
    try:
        report: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise TestbedError(f"iperf3 printed no JSON report: {text[:400]!r}") from exc
    if "error" in report:
        raise TestbedError(f"iperf3 failed: {report['error']}")
    try:
        end = report["end"]
        received = float(end["sum_received"]["bits_per_second"])
        retransmits = int(end["sum_sent"].get("retransmits", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise TestbedError(f"iperf3 report without its totals: {exc}") from exc
    return Throughput(received, retransmits)


def iperf3_tcp(
    client: Namespace, server: Namespace, address: str, seconds: int, port: int = IPERF3_PORT
) -> Throughput:
    """One TCP run of ``seconds`` from ``client`` to ``address`` (an address in ``server``).

    The server serves exactly this one test (``-1``) and exits; it is stopped by its PID if it
    lingers after a failure. Whole seconds only: iperf3 reads ``-t 0.5`` as 0, which runs
    without end."""
    if seconds < 1:
        raise ValueError(f"an iperf3 run lasts at least 1 s, not {seconds}")
    argv = ["iperf3", "-s", "-1", "-B", address, "-p", str(port), "--forceflush"]
    process = server.spawn(argv)
    try:
        process.wait_for_line("Server listening", timeout=10)
        done = client.exec(
            ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"],
            check=False,
            timeout=seconds + 30,
        )
    finally:
        process.stop()
        server.processes.remove(process)
    return parse_iperf3(done.stdout)


# --------------------------------------------------------------------------- ping

_REPLY = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms(?! \(DUP!\))")


@dataclasses.dataclass(frozen=True)
class PingResult:
    sent: int
    rtts_ms: list[float]
    """One round-trip time per answered request (duplicates left out)."""

    @property
    def lost(self) -> int:
        return self.sent - len(self.rtts_ms)


def parse_ping_rtts(text: str) -> list[float]:
    """Round-trip times (ms) of the replies in iputils ping's output, one per sequence number."""
    seen: dict[int, float] = {}
    for match in _REPLY.finditer(text):
        seen.setdefault(int(match.group(1)), float(match.group(2)))
    return [seen[seq] for seq in sorted(seen)]


def ping_rtts(
    namespace: Namespace, address: str, count: int = 200, interval: float = 0.01
) -> PingResult:
    """``count`` echo requests from ``namespace`` to ``address``, ``interval`` seconds apart
    (below 0.2 s needs root, which the lab has)."""
    done = namespace.exec(
        ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", address],
        check=False,
        timeout=count * interval + 30,
    )
    return PingResult(count, parse_ping_rtts(done.stdout))


# --------------------------------------------------------------------------- FDB events


@dataclasses.dataclass(frozen=True)
class FdbEvent:
    at: float
    """Wall-clock seconds (``time.time()``'s clock) at which ``bridge`` got the notification."""
    deleted: bool
    mac: str
    dev: str | None
    dst: str | None


_STAMP = re.compile(r"^Timestamp: (.+) (\d+) usec$")
"""``bridge -timestamp``: ctime() in local time, then the microseconds, not zero-padded."""


def parse_fdb_monitor(text: str) -> list[FdbEvent]:
    """The events in ``bridge -timestamp monitor fdb`` output (a stamp line, then the entry);
    an entry line without a stamp before it is skipped."""
    events: list[FdbEvent] = []
    stamp: float | None = None
    for line in text.splitlines():
        if line.startswith("Timestamp:"):
            match = _STAMP.match(line.strip())
            stamp = _stamp_seconds(match.group(1), match.group(2)) if match else None
            continue
        words = line.split()
        if stamp is None or not words:
            continue
        deleted = words[0] == "Deleted"
        if deleted:
            words = words[1:]
        if not words:
            continue
        events.append(
            FdbEvent(stamp, deleted, words[0], _after(words, "dev"), _after(words, "dst"))
        )
        stamp = None
    return events


def _after(words: list[str], key: str) -> str | None:
    """The word after ``key`` (``dev X``, ``dst Y``), None when absent."""
    if key in words[1:-1]:
        return words[words.index(key, 1) + 1]
    return None


def _stamp_seconds(ctime_text: str, microseconds: str) -> float:
    # split() folds the double space ctime() puts before a one-digit day.
    wall = time.strptime(" ".join(ctime_text.split()), "%a %b %d %H:%M:%S %Y")
    return time.mktime(wall) + int(microseconds) / 1e6


class FdbMonitor:
    """``bridge -timestamp monitor fdb`` in a namespace, its output appended to a file.

    The stamps come from ``bridge`` itself, taken as each notification arrives (microseconds),
    so how soon the file is read does not change the measured moments."""

    def __init__(self, namespace: Namespace, log_path: Path):
        self.namespace = namespace
        self.log_path = log_path
        argv = ["bridge", "-timestamp", "monitor", "fdb"]
        self.process = Process(argv, netns=namespace.name, log_path=log_path)
        self._wait_until_subscribed()

    def _wait_until_subscribed(self, timeout: float = 10.0) -> None:
        """The positive signal that no later change is missed: the process's netlink socket
        is listed with multicast groups (``/proc/PID/net/netlink``; ``ip netns exec`` execs
        ``bridge``, so its PID is the port id of its first socket)."""
        pid = self.process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                table = Path(f"/proc/{pid}/net/netlink").read_text()
            except OSError:
                table = ""
            for row in table.splitlines()[1:]:
                columns = row.split()
                if len(columns) > 3 and columns[2] == str(pid) and int(columns[3], 16) != 0:
                    return
            time.sleep(0.005)
        self.process.stop()
        raise TestbedError(f"bridge monitor in {self.namespace.name} did not subscribe")

    def events(self) -> list[FdbEvent]:
        return parse_fdb_monitor(self.log_path.read_text(errors="replace"))

    def stop(self) -> None:
        self.process.stop()
