"""ExaBGP's entry point as the speaker runs it: ExaBGP's own ``server`` command, with
TCP_NODELAY on the sessions it opens.

ExaBGP 5.0 turns Nagle's algorithm off only on connections it accepts, never on the ones it
opens, and has no setting for it. With Nagle on, a small UPDATE written while the previous
one is unacknowledged waits for the router's delayed ACK (~40 ms on Linux), so a second route
announced right after a first one reaches the fabric 40 ms late. The speaker always opens the
sessions (nothing listens on port 179), so this matters for every route it sends. ExaBGP's
outgoing connections get their socket from ``exabgp.reactor.network.outgoing.create``; this
module wraps that one function, before ExaBGP starts, to set the option on each new socket
(Linux keeps it through connect()). ``tests/unit/bgp/test_launcher.py`` checks the wrapped
function is the one ExaBGP calls, so an ExaBGP upgrade that moves it fails there, not
silently in production.

Runs only in the child process (``python -m hybridnet.bgp.launcher CONFIG``); exabgp is
imported inside the functions, so nothing else in hybridnet needs it installed.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any


def nodelay(create: Callable[..., socket.socket]) -> Callable[..., socket.socket]:
    """``create`` (ExaBGP's socket factory) whose sockets have Nagle's algorithm off."""

    def create_without_nagle(*args: Any, **kwargs: Any) -> socket.socket:
        io = create(*args, **kwargs)
        io.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return io

    return create_without_nagle


def install_nodelay() -> None:
    """Make ExaBGP's outgoing sessions TCP_NODELAY (idempotent)."""
    from exabgp.reactor.network import outgoing  # noqa: PLC0415 - only in the child

    if not getattr(outgoing.create, "hybridnet_nodelay", False):
        wrapped = nodelay(outgoing.create)
        wrapped.hybridnet_nodelay = True  # type: ignore[attr-defined]
        outgoing.create = wrapped


def main(argv: list[str]) -> None:
    install_nodelay()
    from exabgp.application.main import main as exabgp_main  # noqa: PLC0415 - the child

    sys.argv = ["exabgp", "server", *argv]
    exabgp_main()


if __name__ == "__main__":
    main(sys.argv[1:])
