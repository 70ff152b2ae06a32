"""A packet socket on one interface, in the calling thread's network namespace.

Why raw ``AF_PACKET`` sockets and not scapy's ``sendp``/``srp``/``AsyncSniffer``: scapy's
Linux socket resolves the interface through ``conf.ifaces``, a global list read once in the
namespace that imported scapy (wrong for a thread that entered a node's namespace), turns the
interface promiscuous by default (``conf.sniff_promisc``), compiles filters by running tcpdump,
and ``srp``/``AsyncSniffer`` start threads of their own whose answer matching does not model
RFC 5227 (a concurrent probe from another host is a conflict, not an answer). Each probe here
owns one socket, opened in the caller's thread, so it lives in that thread's namespace, and
closed when the probe ends (by a short-lived thread: see :func:`_close_in_background`), which
also drops the multicast memberships it took.

The IPv6 socket carries a classic BPF program that passes only ICMPv6 Neighbor Solicitations
and Advertisements, so a busy interface's traffic never reaches Python (nor fills the socket's
buffer while the probe waits). The filter is attached before the socket is bound, so nothing
unfiltered is queued first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import socket
import struct
import threading
import time
from collections.abc import Iterator

from hybridnet.daemon.addrprobe.errors import ProbeFailed
from hybridnet.daemon.addrprobe.frames import ETH_P_IPV6, ICMPV6, ND_ADVERTISEMENT, ND_SOLICITATION

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
"""``sll_pkttype`` of a frame this host sent (packet sockets see those too)."""
SO_ATTACH_FILTER = 26
ARPHRD_ETHER = 1
MAX_FRAME = 2048
"""ARP and neighbor discovery frames are far smaller; a longer frame is cut, and not ours."""


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


BPF_LD_H_ABS, BPF_LD_B_ABS, BPF_JEQ_K, BPF_RET_K = 0x28, 0x30, 0x15, 0x06
NEIGHBOR_DISCOVERY_FILTER = b"".join(
    [
        _bpf(BPF_LD_H_ABS, 0, 0, 12),  # EtherType
        _bpf(BPF_JEQ_K, 0, 5, ETH_P_IPV6),
        _bpf(BPF_LD_B_ABS, 0, 0, 20),  # IPv6 next header: ICMPv6 with no extension header
        _bpf(BPF_JEQ_K, 0, 3, ICMPV6),
        _bpf(BPF_LD_B_ABS, 0, 0, 54),  # ICMPv6 type
        _bpf(BPF_JEQ_K, 2, 0, ND_SOLICITATION),
        _bpf(BPF_JEQ_K, 1, 0, ND_ADVERTISEMENT),
        _bpf(BPF_RET_K, 0, 0, 0),  # drop
        _bpf(BPF_RET_K, 0, 0, MAX_FRAME),  # accept (up to MAX_FRAME bytes)
    ]
)
"""``ip6 and icmp6 and (icmp6[0] == 135 or icmp6[0] == 136)`` without extension headers, which
neighbor discovery does not use."""


class PacketLink:
    """An open packet socket bound to ``ifname`` for one EtherType."""

    def __init__(self, ifname: str, sock: socket.socket):
        self.ifname = ifname
        self._sock = sock
        _, _, _, hatype, mac = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(mac) != 6:
            raise ProbeFailed(ifname, "it is not an Ethernet interface")
        self.mac = ":".join(f"{byte:02x}" for byte in mac)
        """The interface's MAC: the sender of everything this link sends."""

    def join(self, multicast_mac: str) -> None:
        """Receive frames sent to ``multicast_mac`` (a NIC may filter groups nobody joined).
        The membership belongs to the socket and ends when it closes."""
        request = struct.pack(
            "iHH8s",
            _ifindex(self.ifname),
            PACKET_MR_MULTICAST,
            6,
            bytes.fromhex(multicast_mac.replace(":", "")),
        )
        with _translated(self.ifname, "joining a multicast group"):
            self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, request)

    def send(self, frame: bytes) -> None:
        with _translated(self.ifname, "sending"):
            self._sock.send(frame)

    def receive_until(self, deadline: float) -> Iterator[bytes]:
        """Frames other hosts sent, as they arrive, until ``deadline`` (``time.monotonic``)."""
        while (remaining := deadline - time.monotonic()) > 0:
            self._sock.settimeout(remaining)
            try:
                with _translated(self.ifname, "receiving"):
                    frame, (_, _, pkttype, _, _) = self._sock.recvfrom(MAX_FRAME)
            except TimeoutError:
                return
            if pkttype != PACKET_OUTGOING:
                yield frame


@contextlib.contextmanager
def open_link(ifname: str, ethertype: int, bpf: bytes | None = None) -> Iterator[PacketLink]:
    """A packet socket on ``ifname`` for ``ethertype`` frames (0: send only, receive nothing),
    filtered by ``bpf`` when given. Raises ProbeFailed when the socket cannot be had."""
    with _translated(ifname, "opening a packet socket"):
        # Protocol 0 until bound: the socket receives nothing before its filter is in place.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        with _translated(ifname, "binding a packet socket"):
            if bpf is not None:
                _attach_filter(sock, bpf)
            sock.bind((ifname, ethertype))
        yield PacketLink(ifname, sock)
    finally:
        _close_in_background(sock)


def _close_in_background(sock: socket.socket) -> None:
    """Close ``sock`` without making the caller wait: the kernel's packet_release waits for an
    RCU grace period (``synchronize_net``), 7-15 ms on a busy two-core machine, and nothing
    the probe answers depends on it. The socket stops receiving when the thread closes it,
    moments later; its multicast memberships go with it."""
    threading.Thread(target=sock.close, name="packet-socket-close", daemon=True).start()


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    instructions = ctypes.create_string_buffer(program)
    fprog = struct.pack("HP", len(program) // 8, ctypes.addressof(instructions))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError as exc:
        raise _failure(ifname, "looking up the interface", exc) from exc


@contextlib.contextmanager
def _translated(ifname: str, doing: str) -> Iterator[None]:
    """Turn the kernel's refusals into ProbeFailed with a reason an operator can act on."""
    try:
        yield
    except TimeoutError:
        raise
    except OSError as exc:
        raise _failure(ifname, doing, exc) from exc


def _failure(ifname: str, doing: str, exc: OSError) -> ProbeFailed:
    reasons = {
        errno.EPERM: "packet sockets need CAP_NET_RAW (run the daemon privileged)",
        errno.EACCES: "packet sockets need CAP_NET_RAW (run the daemon privileged)",
        errno.ENODEV: "there is no such interface in this network namespace",
        errno.ENXIO: "there is no such interface in this network namespace",
        errno.ENETDOWN: "the interface is down",
    }
    reason = reasons.get(exc.errno or 0, f"{doing} failed: {exc.strerror or exc}")
    return ProbeFailed(ifname, reason, exc.errno)
