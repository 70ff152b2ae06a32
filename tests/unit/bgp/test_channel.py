"""The speaker's end of ExaBGP's API (hybridnet.bgp.channel): its writes are bounded."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

from hybridnet.bgp.channel import ApiConnection


def test_a_write_the_other_side_does_not_read_gives_up_after_its_timeout() -> None:
    """The speaker's end of the API: writing more than the socket holds to a side that reads
    nothing raises TimeoutError (a blocking write would wait for good); once the other side
    reads again, the connection writes as before."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    connection = ApiConnection(ours, os.getpid())
    try:
        line = "x" * 1023
        more_than_any_buffer = 16 * 1024  # lines: 16 MiB, past Linux's 4 MiB socket buffer cap
        with pytest.raises(TimeoutError, match=r"did not take our commands within 0\.2s"):
            connection.send([line] * more_than_any_buffer, 0.2)
        theirs.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while theirs.recv(1 << 20):
                pass
        connection.send(["after"], 5.0)
        theirs.setblocking(True)
        assert theirs.recv(6) == b"after\n"
    finally:
        connection.close()
        theirs.close()
