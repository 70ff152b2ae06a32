"""BIRD 2 as the fabric's router in a lab namespace: the BGP peer of hybridnet's speaker.

Each instance has its own configuration, control socket, log and PID file in a directory the
caller gives, and is ended by its PID (:class:`~hybridnet.lab.processes.Process`). What it
learned is read back with ``birdc -s SOCKET`` (``show route all``, ``show protocols all``)
and parsed here, so tests and benchmarks see BIRD's view, not the speaker's.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from hybridnet.lab.errors import TestbedError
from hybridnet.lab.netns import Namespace
from hybridnet.lab.processes import Process, run

READY_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class BirdNeighbor:
    """A BGP neighbour BIRD accepts (the speaker): one ``protocol bgp`` named ``name``."""

    name: str
    address: str
    asn: int
    password: str | None = None
    graceful_restart: bool = True
    """BIRD keeps the neighbour's routes (stale) while it restarts, for the restart time
    the neighbour announced."""
    multihop: bool = False
    local_address: str | None = None
    """BIRD's own address for this session (default: the router's ``local_address``)."""


@dataclasses.dataclass(frozen=True)
class BirdRoute:
    """One route in BIRD's table, as ``show route all`` prints it."""

    prefix: str
    protocol: str
    next_hop: str
    """``BGP.next_hop`` (the first address; BIRD adds a link-local one for IPv6)."""
    communities: frozenset[tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class BirdProtocol:
    name: str
    state: str
    """BIRD's BGP state: Idle, Connect, Active, OpenSent, OpenConfirm, Established."""
    graceful_restart_active: bool
    """BIRD holds the neighbour's routes as stale, waiting for it to come back."""
    last_error: str | None


class Bird:
    def __init__(
        self,
        namespace: Namespace,
        directory: Path,
        *,
        router_id: str,
        asn: int,
        neighbors: Sequence[BirdNeighbor],
        local_address: str | None = None,
        kernel_table: int | None = None,
    ):
        self.namespace = namespace
        self.kernel_table = kernel_table
        """Also export what BIRD learns into this kernel routing table of its namespace
        (for watching arrivals as they happen: ``ip monitor route``)."""
        self.directory = directory
        self.router_id = router_id
        self.asn = asn
        self.neighbors = list(neighbors)
        self.local_address = local_address
        self.socket = directory / "bird.ctl"
        self.config = directory / "bird.conf"
        self.pid_file = directory / "bird.pid"
        self.log = directory / "bird.log"
        self._process: Process | None = None

    def render(self) -> str:
        lines = [
            f'log "{self.log}" all;',
            f"router id {self.router_id};",
            "protocol device { scan time 1; }",
        ]
        if self.kernel_table is not None:
            for family in ("ipv4", "ipv6"):
                lines.append(
                    f"protocol kernel {{ {family} {{ import none; export all; }}; "
                    f"kernel table {self.kernel_table}; learn off; }}"
                )
        for neighbor in self.neighbors:
            own = neighbor.local_address or self.local_address
            local = f"local {own} " if own else "local "
            body = [
                f"{local}as {self.asn};",
                f"neighbor {neighbor.address} as {neighbor.asn};",
                f"graceful restart {'on' if neighbor.graceful_restart else 'off'};",
                # Retry a closed session within a second instead of BIRD's default 5 s, so a
                # restarted speaker is not kept waiting by us as well as by itself.
                "connect delay time 1;",
                "error wait time 1, 5;",
            ]
            if neighbor.password is not None:
                body.append(f'password "{neighbor.password}";')
            if neighbor.multihop:
                body.append("multihop;")
            body += ["ipv4 { import all; export none; };", "ipv6 { import all; export none; };"]
            lines.append(
                f"protocol bgp {neighbor.name} {{\n" + "".join(f"  {line}\n" for line in body) + "}"
            )
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Write the configuration, start ``bird -f`` in the namespace, wait until its
        control socket answers."""
        if self._process is not None:
            raise TestbedError("BIRD is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.render())
        argv = ["bird", "-f", "-c", str(self.config), "-s", str(self.socket)]
        self._process = Process([*argv, "-P", str(self.pid_file)], netns=self.namespace.name)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise TestbedError(
                    f"bird exited with {self._process.poll()}:\n{self._process.read_remaining()}"
                )
            if self.socket.exists() and self._birdc("show status", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"bird's control socket {self.socket} did not answer")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise TestbedError("BIRD is not running")
        return self._process.pid

    def _birdc(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["birdc", "-s", str(self.socket), *command.split()], check=check, timeout=10)

    def birdc(self, command: str) -> str:
        """The output of one birdc command (without its banner)."""
        done = self._birdc(command)
        return "\n".join(line for line in done.stdout.splitlines() if "BIRD" not in line[:5])

    def routes(self) -> dict[str, list[BirdRoute]]:
        """Every route in BIRD's tables, by prefix (one prefix may come from several
        protocols)."""
        return parse_routes(self.birdc("show route all"))

    def protocol(self, name: str) -> BirdProtocol:
        return parse_protocol(name, self.birdc(f"show protocols all {name}"))


_ROUTE_HEAD = re.compile(r"^(?P<prefix>\S+)?\s+unicast \[(?P<protocol>\S+) ")
_COMMUNITY = re.compile(r"\((\d+),(\d+)\)")


@dataclasses.dataclass
class _Parsing:
    prefix: str
    protocol: str
    next_hop: str = ""
    communities: frozenset[tuple[int, int]] = frozenset()

    def route(self) -> BirdRoute:
        return BirdRoute(self.prefix, self.protocol, self.next_hop, self.communities)


def parse_routes(text: str) -> dict[str, list[BirdRoute]]:
    """``show route all`` output -> routes by prefix."""
    parsed: list[_Parsing] = []
    prefix = ""
    for line in text.splitlines():
        head = _ROUTE_HEAD.match(line)
        if head is not None:
            prefix = head.group("prefix") or prefix
            parsed.append(_Parsing(prefix, head.group("protocol")))
            continue
        if not parsed:
            continue
        stripped = line.strip()
        if stripped.startswith("BGP.next_hop:"):
            parsed[-1].next_hop = stripped.split(":", 1)[1].split()[0]
        elif stripped.startswith("BGP.community:"):
            parsed[-1].communities = frozenset(
                (int(a), int(b)) for a, b in _COMMUNITY.findall(stripped)
            )
    routes: dict[str, list[BirdRoute]] = {}
    for each in parsed:
        routes.setdefault(each.prefix, []).append(each.route())
    return routes


def parse_protocol(name: str, text: str) -> BirdProtocol:
    """``show protocols all NAME`` output -> the BGP session as BIRD sees it."""
    state = re.search(r"BGP state:\s+(\S+)", text)
    if state is None:
        raise TestbedError(f"no BGP state for protocol {name} in:\n{text}")
    error = re.search(r"Last error:\s+(.+)", text)
    return BirdProtocol(
        name,
        state.group(1),
        "Neighbor graceful restart active" in text,
        error.group(1).strip() if error else None,
    )
