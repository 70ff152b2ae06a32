"""Netlink sockets for the node's namespace and for a pod's namespace (by path).

pyroute2 reaches another namespace by forking a helper process, which crashes under a threaded
gRPC server. Instead, pod-side work runs in a short-lived thread that enters the pod's
namespace with setns(2): a network namespace belongs to a thread, so the rest of the daemon is
untouched, and the thread ends when the work does.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from pyroute2 import IPRoute

Socket = IPRoute
"""The netlink socket type callers pass around (so only this package names pyroute2)."""

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsGone(Exception):
    """The pod's network namespace does not exist (any more)."""


@contextlib.contextmanager
def node() -> Iterator[IPRoute]:
    """A netlink socket in the caller's own namespace (the node's)."""
    with IPRoute() as ipr:
        yield ipr


def in_pod(path: str, work: Callable[[IPRoute], T]) -> T:
    """Run ``work`` with a netlink socket inside the namespace at ``path``; never creates it.
    Raises NetnsGone when there is no such namespace, and whatever ``work`` raised."""

    def with_socket() -> T:
        with IPRoute() as ipr:
            return work(ipr)

    return run_inside(path, with_socket)


class WrongNamespace(Exception):
    """A worker thread did not end up in the namespace it was sent to."""


def run_inside(path: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a thread that has entered the network namespace at ``path`` (sockets
    it opens, sysctls it reads and commands it starts are that namespace's); never creates
    the namespace. The thread checks it really is inside before ``work`` runs, so a failed
    switch can never act on the caller's namespace. Raises NetnsGone, WrongNamespace, or what
    ``work`` raised."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise NetnsGone(f"network namespace {path} does not exist") from exc
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise NetnsGone(f"cannot enter {path}: {os.strerror(errno)}")
            if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(fd).st_ino:
                raise WrongNamespace(f"worker thread is not inside {path}")
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    try:
        thread = threading.Thread(target=run, name="netns-worker", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if failure:
        raise failure[0]
    return outcome[0]
