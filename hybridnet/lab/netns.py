"""The network-namespace test bed: throwaway hosts on the real kernel, and traffic between them.

Every netns- and cluster-tier test builds its world here: a fabric namespace whose Linux bridge
is the L2 switch, a gateway namespace behind it (the ToR router), node namespaces with an
``eth0`` on the fabric, and pod namespaces for the CNI plugin to fill.

Rules the bed keeps so that tests can never cut off the machine:

* the root namespace is never changed: every link is created directly inside a namespace of
  ours (``ip link add ... netns A type veth peer ... netns B``);
* every namespace carries the run's prefix (``hnt`` + six hex digits); a lock file held for the
  life of the run tells a live run from the leftovers of a crashed one, which the next run
  removes (see :func:`remove_stale_runs`);
* only ``ip`` from iproute2 touches the kernel, so the bed shares no code (and no bugs) with
  hybridnet's own netlink layer.

The same file is also a small command-line tool (``python testbed.py tcp-echo-server ...``) that
the bed runs *inside* namespaces for its traffic helpers; that part imports only the standard
library (and scapy for ``sniff``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

PREFIX_ROOT = "hnt"
"""Every namespace the bed creates starts with this, then six hex digits naming the run."""

RUN_PREFIX_PATTERN = re.compile(rf"^({PREFIX_ROOT}[0-9a-f]{{6}})-")
LOCK_DIR = Path(os.environ.get("HYBRIDNET_TESTBED_LOCK_DIR", "/run/hybridnet-testbed"))

# Address plan of the fabric segment that node namespaces share (TEST-NET 198.18.0.0/15 and the
# documentation IPv6 prefix: never the host's own ranges).
FABRIC_V4 = ipaddress.ip_network("198.18.0.0/24")
FABRIC_V6 = ipaddress.ip_network("2001:db8::/64")
GATEWAY_HOST_INDEX = 1
FIRST_NODE_HOST_INDEX = 10

TESTBED_FILE = Path(__file__).resolve()


class TestbedError(RuntimeError):
    """A bed operation failed; the message carries the command and what it printed."""

    __test__ = False  # not a test class, despite the name


# --------------------------------------------------------------------------- running commands


def run(
    args: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, inside ``netns`` when given, and capture its output."""
    argv = [*(["ip", "netns", "exec", netns] if netns else []), *args]
    try:
        done = subprocess.run(
            argv,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and done.returncode != 0:
        raise TestbedError(
            f"exit {done.returncode}: {' '.join(argv)}\n"
            f"stdout: {done.stdout.strip()}\nstderr: {done.stderr.strip()}"
        )
    return done


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` with the given arguments (use ``-n NS`` to act inside a namespace)."""
    return run(["ip", *args], check=check)


class Process:
    """A long-lived process we started (in a namespace or not), ended by its own PID only."""

    def __init__(self, argv: Sequence[str], *, netns: str | None, env: dict[str, str] | None):
        self.argv = [*(["ip", "netns", "exec", netns] if netns else []), *argv]
        self.netns = netns
        # A new session makes the process the leader of its own group, so stop() can end it
        # and its children (and nothing else) by that group id.
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._buffer = b""
        self.output_lines: list[str] = []

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        """Block until a line of output matches ``pattern`` and return it."""
        regex = re.compile(pattern)
        for seen in self.output_lines:
            if regex.search(seen):
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._read_line(deadline - time.monotonic())
            if line is None:
                if self.poll() is not None:
                    break
                continue
            if regex.search(line):
                return line
        raise TestbedError(
            f"no output matching {pattern!r} within {timeout}s from {' '.join(self.argv)}; "
            f"exit={self.poll()} output:\n" + "\n".join(self.output_lines[-40:])
        )

    def _read_line(self, timeout: float) -> str | None:
        stream = self._output()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([stream], [], [], max(timeout, 0))
            if not ready:
                return None
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                if not self._buffer:
                    return None
                self._buffer += b"\n"
                break
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = raw.decode(errors="replace")
        self.output_lines.append(line)
        return line

    def read_remaining(self) -> str:
        """Drain whatever the (finished) process printed and return all of its output."""
        while self._read_line(0.05) is not None:
            pass
        return "\n".join(self.output_lines)

    def _output(self) -> IO[bytes]:
        if self._popen.stdout is None:
            raise TestbedError(f"no output pipe from {' '.join(self.argv)}")
        return self._popen.stdout

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the process group, SIGKILL it if it lingers; return the exit code."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        return self._popen.returncode


# --------------------------------------------------------------------------- namespaces


@dataclasses.dataclass
class Namespace:
    """A network namespace of ours; ``lo`` is up from the start."""

    name: str
    processes: list[Process] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        """The bind-mount path a CNI runtime passes as ``CNI_NETNS``."""
        return f"/run/netns/{self.name}"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return ip("-n", self.name, *args, check=check)

    def exec(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run(args, netns=self.name, **kwargs)

    def spawn(self, args: Sequence[str], env: dict[str, str] | None = None) -> Process:
        """Start a long-lived process inside the namespace; it is stopped with the namespace."""
        process = Process(args, netns=self.name, env=env)
        self.processes.append(process)
        return process

    def sysctl(self, key: str, value: str) -> None:
        self.exec(["sysctl", "-q", "-w", f"{key}={value}"])

    def addresses(self, ifname: str) -> list[str]:
        """The global addresses on ``ifname``, in CIDR form."""
        out = self.ip("-j", "addr", "show", "dev", ifname).stdout
        return [
            f"{a['local']}/{a['prefixlen']}"
            for link in json.loads(out)
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        ]

    def links(self) -> list[str]:
        return [link["ifname"] for link in json.loads(self.ip("-j", "link", "show").stdout)]

    def delete(self) -> None:
        """Stop our processes in it, then remove it; tolerates a namespace already gone."""
        for process in self.processes:
            process.stop()
        self.processes.clear()
        delete_namespace(self.name)


def create_namespace(name: str) -> Namespace:
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    return Namespace(name)


def delete_namespace(name: str) -> None:
    """Kill what still runs inside ``name`` (it is ours), then delete it; absent is fine."""
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "delete", name, check=False)


def list_namespaces() -> list[str]:
    out = ip("-j", "netns", "list").stdout.strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


def root_links() -> list[str]:
    """Names of the links in the root namespace (read only)."""
    return [link["ifname"] for link in json.loads(ip("-j", "link", "show").stdout)]


def connect(a: Namespace, a_ifname: str, b: Namespace, b_ifname: str) -> None:
    """A veth pair created directly between two namespaces: never visible in the root one."""
    spec = f"link add {a_ifname} netns {a.name} type veth peer name {b_ifname} netns {b.name}"
    ip(*spec.split())
    a.ip("link", "set", a_ifname, "up")
    b.ip("link", "set", b_ifname, "up")


# --------------------------------------------------------------------------- runs and leftovers


class TestbedRun:
    """One run of the bed: its name prefix and the lock that marks it alive."""

    __test__ = False

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix or f"{PREFIX_ROOT}{secrets.token_hex(3)}"
        if not RUN_PREFIX_PATTERN.match(self.prefix + "-"):
            raise ValueError(f"run prefix {self.prefix!r} must be {PREFIX_ROOT} + 6 hex digits")
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self.lock_path = LOCK_DIR / f"{self.prefix}.lock"
        self._lock: IO[str] | None = self.lock_path.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._counter = 0

    def name(self, role: str) -> str:
        """A namespace name unique within the run, e.g. ``hnt1a2b3c-node1``."""
        return f"{self.prefix}-{role}"

    def unique(self, role: str) -> str:
        self._counter += 1
        return self.name(f"{role}{self._counter}")

    def namespaces(self) -> list[str]:
        return [n for n in list_namespaces() if n.startswith(self.prefix + "-")]

    def close(self) -> None:
        """Remove every namespace of this run and release its lock."""
        for name in self.namespaces():
            delete_namespace(name)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
            self.lock_path.unlink(missing_ok=True)


def _run_is_alive(prefix: str) -> bool:
    lock_path = LOCK_DIR / f"{prefix}.lock"
    if not lock_path.exists():
        return False
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def remove_stale_runs() -> list[str]:
    """Delete namespaces (and lock files) left by runs that are no longer alive.

    A run holds an exclusive flock on its lock file for as long as it lives; the kernel drops
    the lock when the process dies however it dies, so a lock we can take is a dead run.
    Returns the namespaces removed.
    """
    removed = []
    for name in list_namespaces():
        match = RUN_PREFIX_PATTERN.match(name)
        if match and not _run_is_alive(match.group(1)):
            delete_namespace(name)
            removed.append(name)
    if LOCK_DIR.is_dir():
        for lock_path in LOCK_DIR.glob(f"{PREFIX_ROOT}*.lock"):
            if not _run_is_alive(lock_path.stem):
                lock_path.unlink(missing_ok=True)
    return removed


def leftovers() -> list[str]:
    """Everything of the bed's still on the machine: namespaces and root-namespace links."""
    found = [f"netns {n}" for n in list_namespaces() if n.startswith(PREFIX_ROOT)]
    found += [f"link {n}" for n in root_links() if n.startswith(PREFIX_ROOT)]
    return found


# --------------------------------------------------------------------------- the fabric


@dataclasses.dataclass(frozen=True)
class NodeAddresses:
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface


def _host(network: ipaddress.IPv4Network | ipaddress.IPv6Network, index: int) -> str:
    return f"{network.network_address + index}/{network.prefixlen}"


@dataclasses.dataclass
class Node(Namespace):
    """A node namespace: ``eth0`` on the fabric, default routes through the gateway."""

    addresses_on_fabric: NodeAddresses | None = None

    @property
    def ipv4(self) -> str:
        return str(self._on_fabric().ipv4.ip)

    @property
    def ipv6(self) -> str:
        return str(self._on_fabric().ipv6.ip)

    def _on_fabric(self) -> NodeAddresses:
        if self.addresses_on_fabric is None:
            raise TestbedError(f"node {self.name} is not attached to the fabric yet")
        return self.addresses_on_fabric


class Fabric:
    """A switch (bridge ``br0`` in the fabric namespace), a gateway router, nodes and pods.

    Layout, all addresses from the test ranges::

        gateway ns  eth0 198.18.0.1/24, 2001:db8::1/64 (forwarding on)
              |
        fabric ns   br0 (the L2 switch), one port per attached namespace
              |
        node i ns   eth0 198.18.0.(10+i)/24, 2001:db8::(10+i)/64, default via the gateway
    """

    def __init__(self, run: TestbedRun):
        self.run = run
        self.namespaces: list[Namespace] = []
        self.nodes: list[Node] = []
        self._ports = 0
        try:
            self.switch = self._own(create_namespace(run.unique("fabric")))
            self.switch.ip("link", "add", "br0", "type", "bridge")
            self.switch.ip("link", "set", "br0", "up")
            self.gateway = self._own(create_namespace(run.unique("gw")))
            self.attach(self.gateway, "eth0")
            self._assign(self.gateway, "eth0", GATEWAY_HOST_INDEX)
            self.gateway.sysctl("net.ipv4.ip_forward", "1")
            self.gateway.sysctl("net.ipv6.conf.all.forwarding", "1")
        except BaseException:
            self.teardown()
            raise

    @property
    def gateway_ipv4(self) -> str:
        return str(FABRIC_V4.network_address + GATEWAY_HOST_INDEX)

    @property
    def gateway_ipv6(self) -> str:
        return str(FABRIC_V6.network_address + GATEWAY_HOST_INDEX)

    def _own(self, namespace: Namespace) -> Namespace:
        self.namespaces.append(namespace)
        return namespace

    def attach(self, namespace: Namespace, ifname: str) -> None:
        """Plug ``ifname`` of ``namespace`` into a new port of the fabric switch."""
        self._ports += 1
        port = f"port{self._ports}"
        connect(namespace, ifname, self.switch, port)
        self.switch.ip("link", "set", port, "master", "br0")

    def _assign(self, namespace: Namespace, ifname: str, host_index: int) -> NodeAddresses:
        v4, v6 = _host(FABRIC_V4, host_index), _host(FABRIC_V6, host_index)
        namespace.ip("addr", "add", v4, "dev", ifname)
        # nodad: the address is usable at once instead of after duplicate address detection.
        namespace.ip("-6", "addr", "add", v6, "dev", ifname, "nodad")
        return NodeAddresses(ipaddress.IPv4Interface(v4), ipaddress.IPv6Interface(v6))

    def add_node(self) -> Node:
        """Add a node namespace with ``eth0`` on the fabric and default routes via the gateway."""
        index = len(self.nodes) + 1
        node = Node(self.run.name(f"node{index}"))
        ip("netns", "add", node.name)
        self._own(node)
        node.ip("link", "set", "lo", "up")
        self.attach(node, "eth0")
        node.addresses_on_fabric = self._assign(node, "eth0", FIRST_NODE_HOST_INDEX + index - 1)
        node.ip("route", "add", "default", "via", self.gateway_ipv4)
        node.ip("-6", "route", "add", "default", "via", self.gateway_ipv6)
        self.nodes.append(node)
        return node

    def add_pod(self, role: str = "pod") -> Namespace:
        """An empty pod namespace (only ``lo``), for a CNI plugin to attach."""
        return self._own(create_namespace(self.run.unique(role)))

    def teardown(self) -> None:
        """Delete everything the fabric made, in reverse order; safe to call twice."""
        while self.namespaces:
            self.namespaces.pop().delete()


# --------------------------------------------------------------------------- traffic


def ping(namespace: Namespace, address: str, count: int = 3, timeout: float = 10.0) -> bool:
    """True when at least one of ``count`` echo requests from ``namespace`` got a reply."""
    done = namespace.exec(
        ["ping", "-c", str(count), "-i", "0.2", "-W", "1", address],
        check=False,
        timeout=timeout,
    )
    return done.returncode == 0


def _helper_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "utf8", str(TESTBED_FILE), *args]


def start_tcp_echo_server(namespace: Namespace, address: str, port: int) -> Process:
    """Start a TCP echo server in ``namespace``; each reply is prefixed by the peer's address."""
    server = namespace.spawn(_helper_argv("tcp-echo-server", address, str(port)))
    server.wait_for_line("^ready$")
    return server


def tcp_echo(namespace: Namespace, address: str, port: int, payload: str) -> EchoReply:
    """Send ``payload`` from ``namespace`` to an echo server; return what came back."""
    done = namespace.exec(_helper_argv("tcp-send", address, str(port), payload), timeout=15)
    peer, _, echoed = done.stdout.strip().partition(" ")
    return EchoReply(seen_source=peer, payload=echoed)


@dataclasses.dataclass(frozen=True)
class EchoReply:
    seen_source: str
    """The client address as the server's socket saw it (after any NAT)."""
    payload: str


@dataclasses.dataclass(frozen=True)
class CapturedPacket:
    source: str
    destination: str
    protocol: str


def capture_source(
    namespace: Namespace,
    ifname: str,
    protocol: str,
    trigger: Callable[[], object],
    timeout: float = 20.0,
) -> CapturedPacket:
    """Sniff ``ifname`` with scapy, run ``trigger``, and return the first ``protocol`` packet.

    The source address as it arrives on the wire shows whether anything rewrote it (NAT).
    ``protocol`` is ``icmp`` (IPv4 or IPv6 echo request), ``tcp`` or ``udp``.
    """
    sniffer = namespace.spawn(_helper_argv("sniff", ifname, protocol, str(timeout)))
    try:
        sniffer.wait_for_line("^ready$", timeout=timeout)
        trigger()
        line = sniffer.wait_for_line(r"^\{", timeout=timeout)
    finally:
        sniffer.stop()
        namespace.processes.remove(sniffer)
    fields = json.loads(line)
    return CapturedPacket(fields["source"], fields["destination"], fields["protocol"])


# --------------------------------------------------------------------------- in-namespace helpers


def _serve_tcp_echo(address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(16)
        print("ready", flush=True)
        while True:
            conn, peer = listener.accept()
            with conn:
                data = conn.recv(65536)
                conn.sendall(f"{peer[0]} ".encode() + data)


def _send_tcp(address: str, port: int, payload: str) -> None:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(payload.encode())
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    print(reply.decode(), flush=True)


def _sniff(ifname: str, protocol: str, timeout: float) -> None:
    # Imported here: only the sniff helper pays for scapy's slow import.
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: PLC0415
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6  # noqa: PLC0415
    from scapy.sendrecv import sniff  # noqa: PLC0415

    def matches(packet: Any) -> bool:
        if protocol == "icmp":
            return bool(packet.haslayer(ICMP) and packet[ICMP].type == 8) or bool(
                packet.haslayer(ICMPv6EchoRequest)
            )
        return bool(packet.haslayer({"tcp": TCP, "udp": UDP}[protocol]))

    found = sniff(
        iface=ifname,
        lfilter=matches,
        count=1,
        timeout=timeout,
        store=True,
        started_callback=lambda: print("ready", flush=True),
    )
    if not found:
        print(f"no {protocol} packet on {ifname} within {timeout}s", file=sys.stderr, flush=True)
        sys.exit(1)
    layer = IP if found[0].haslayer(IP) else IPv6
    packet = found[0][layer]
    print(json.dumps({"source": packet.src, "destination": packet.dst, "protocol": protocol}))


def main(argv: Sequence[str] | None = None) -> int:
    """Helpers the bed runs inside namespaces, plus ``leftovers`` / ``clean`` for people."""
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("tcp-echo-server")
    server.add_argument("address")
    server.add_argument("port", type=int)
    send = commands.add_parser("tcp-send")
    send.add_argument("address")
    send.add_argument("port", type=int)
    send.add_argument("payload")
    sniffer = commands.add_parser("sniff")
    sniffer.add_argument("ifname")
    sniffer.add_argument("protocol", choices=["icmp", "tcp", "udp"])
    sniffer.add_argument("timeout", type=float)
    commands.add_parser("demo", help="build a fabric with two nodes, show it carries traffic")
    commands.add_parser("leftovers", help="list namespaces/links of ours; exit 1 if any")
    commands.add_parser("clean", help="remove leftovers of runs that are no longer alive")
    args = parser.parse_args(argv)

    if args.command == "tcp-echo-server":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _serve_tcp_echo(args.address, args.port)
    elif args.command == "tcp-send":
        _send_tcp(args.address, args.port, args.payload)
    elif args.command == "sniff":
        _sniff(args.ifname, args.protocol, args.timeout)
    elif args.command == "demo":
        return _demo()
    elif args.command == "leftovers":
        found = leftovers()
        print("\n".join(found) if found else "no leftovers")
        return 1 if found else 0
    elif args.command == "clean":
        for name in remove_stale_runs():
            print(f"removed {name}")
    return 0


def _demo() -> int:
    """Build the bed's standard topology, show it and its traffic, and take it down again."""
    with testbed_run() as bed:
        fabric = Fabric(bed)
        try:
            for _ in range(2):
                fabric.add_node()
            print(
                f"fabric switch {fabric.switch.name}, gateway {fabric.gateway.name} "
                f"({fabric.gateway_ipv4}, {fabric.gateway_ipv6})"
            )
            for node in fabric.nodes:
                print(f"node {node.name}: eth0 {', '.join(node.addresses('eth0'))}")
            first, second = fabric.nodes
            failures = 0
            for address in (second.ipv4, second.ipv6, fabric.gateway_ipv4):
                ok = ping(first, address)
                failures += not ok
                print(f"ping {first.name} -> {address}: {'ok' if ok else 'FAILED'}")
        finally:
            fabric.teardown()
    print("torn down; leftovers:", ", ".join(leftovers()) or "none")
    return 1 if failures else 0


@contextlib.contextmanager
def testbed_run() -> Iterator[TestbedRun]:
    """A run for scripts outside pytest (bench, demo): cleans stale runs, removes its own."""
    remove_stale_runs()
    bed = TestbedRun()
    try:
        yield bed
    finally:
        bed.close()


if __name__ == "__main__":
    sys.exit(main())
