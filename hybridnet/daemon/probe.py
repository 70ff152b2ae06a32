"""``hybridnet-daemon probe``: is the daemon on this node serving? For Kubernetes exec probes,
which cannot speak gRPC over a unix socket themselves.

Both probes make one CNI STATUS call with the plugin's light client (hybridnet.rpc.client): an
answer of any kind shows the process serves its socket (liveness); readiness (``--ready``) also
wants that answer to say ready, which the daemon decides from its informers: once they have
listed and while the store answers their watches (no request to the store per probe). A daemon
whose API server is unreachable is not ready, but restarting it would not help, so it stays
live.

Each kubelet execs both probes every ten seconds, so a probe must cost little: this module and
the command-line path to it import neither grpcio nor the datapath. Through grpcio and the
daemon's own modules a probe took 0.75 s of CPU on a loaded 2-core bed (six of them every ten
seconds on three nodes), passed its 5 s timeout there, and a daemon was restarted in the middle
of a burst of pod starts for failing its liveness probe.
"""

from __future__ import annotations

from pathlib import Path

from hybridnet.rpc.client import DaemonClient, DaemonError


def problem(socket_path: Path, timeout: float, ready: bool) -> str | None:
    """None when the daemon at ``socket_path`` is serving (and ``ready``); else why not."""
    try:
        status = DaemonClient(str(socket_path), timeout).status()
    except DaemonError as exc:
        return str(exc)
    if ready and not status.ready:
        return f"not ready: {status.reason}"
    return None
