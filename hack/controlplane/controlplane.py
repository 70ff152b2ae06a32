"""A real kube-apiserver + etcd for tests, started the way controller-runtime's envtest does.

The binaries come from ``hack/controlplane/build.sh`` (built once into a cache). A
:class:`ControlPlane` makes a throwaway CA, a serving certificate, an admin client certificate
(``admin`` in ``system:masters``) and a service-account signing key, starts etcd on loopback with
a temporary data directory and kube-apiserver with RBAC, polls ``/readyz``, and writes an admin
kubeconfig. Only these two processes run: no kubelet, scheduler or controller-manager.

Every process it starts is stopped by its own PID. Each control plane's work directory holds a
state file naming its PIDs and a lock held for the life of the owner; a later start ends the
processes of an owner that died without stopping them (after checking that the PID still runs
our binary with our work directory in its arguments) and removes its directory.

The file is also a command-line tool for people::

    python tests/cluster/controlplane.py up --dir /tmp/hybridnet-controlplane
    python tests/cluster/controlplane.py down --dir /tmp/hybridnet-controlplane
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import datetime
import fcntl
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build.sh"
DEFAULT_CRD_DIR = REPO_ROOT / "deploy" / "crds"

DEFAULT_SANS = ("127.0.0.1", "::1", "localhost", "198.18.0.1")
"""Names the serving certificate is valid for; 198.18.0.1 is the test bed's gateway address."""
SERVICE_CLUSTER_IP_RANGE = "198.18.254.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME = "hybridnet-test"
ADMIN_USER = "admin"
ADMIN_GROUPS = ("system:masters",)

TEMP_PREFIX = "hybridnet-cp-"
"""Work directories made by :class:`ControlPlane` itself: ``$TMPDIR/hybridnet-cp-XXXX``."""
STATE_FILE = "controlplane.json"
LOCK_FILE = "controlplane.lock"
BINARIES = ("etcd", "kube-apiserver", "kubectl")
CERT_VALIDITY = datetime.timedelta(days=365)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CLONE_NEWNET = 0x40000000


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used; the message says why."""


# --------------------------------------------------------------------------- binaries


def build_binaries(timeout: float | None = None) -> Path:
    """Run ``build.sh`` (instant when the cache is complete) and return the binaries' directory."""
    try:
        done = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(f"{BUILD_SCRIPT} did not finish within {timeout}s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed (exit {done.returncode}):\n{done.stderr.strip()[-3000:]}"
        )
    bin_dir = Path(lines[-1])
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed {bin_dir}, which lacks {missing}")
    return bin_dir


# --------------------------------------------------------------------------- certificates


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.crt`` and ``stem.key`` (mode 0600) and return their paths."""
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        _write_private(key_path, self.key_pem)
        return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        return x509.DNSName(san)


class CertificateAuthority:
    """A throwaway CA (ECDSA P-256, fast to make) that issues serving and client certificates."""

    def __init__(self, common_name: str = "hybridnet-test-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pair(self) -> KeyPair:
        return KeyPair(self.cert_pem, _key_pem(self.key))

    def issue(
        self,
        common_name: str,
        *,
        organizations: Iterable[str] = (),
        sans: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> KeyPair:
        """A leaf certificate; for a client, CN is the user and each O one of its groups."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ] * client
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        names = [_general_name(san) for san in dict.fromkeys(sans)]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def kubeconfig_document(
    server_url: str, ca_pem: bytes, credentials: KeyPair | str, user: str
) -> dict[str, Any]:
    """A kubeconfig with everything inline: CA data, and client certificate data or a token."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    if isinstance(credentials, str):
        user_entry = {"token": credentials}
    else:
        user_entry = {
            "client-certificate-data": b64(credentials.cert_pem),
            "client-key-data": b64(credentials.key_pem),
        }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server_url, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Child:
    """A process we started, its output appended to a log file; ended by its own PID only."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal of `controlplane.py up` or of pytest
            # does not reach it; we end it ourselves.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it lingers; return the exit status."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        self._log.close()
        return self._popen.returncode

    def forget(self) -> None:
        """Leave the process running (``controlplane.py up``): only close our end of the log."""
        self._log.close()
        # Keep Popen from warning that a process it started is still running.
        self._popen.returncode = 0


def _process_argv(pid: int) -> list[str] | None:
    """The command line of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rpartition(")")[2].split()[0] == "Z":
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int, binary: str, work_dir: Path) -> bool:
    """True when ``pid`` still runs ``binary`` with an argument inside ``work_dir``.

    Guards against a recycled PID: a recorded PID is only ever signalled when it checks out.
    """
    argv = _process_argv(pid)
    if not argv:
        return False
    return argv[0] == binary and any(str(work_dir) in arg for arg in argv[1:])


def stop_recorded(work_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop the processes named in ``work_dir``'s state file; return what was stopped."""
    try:
        state = json.loads((work_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return []
    stopped = []
    processes: dict[str, Any] = state.get("processes", {})
    # kube-apiserver first: without etcd its graceful shutdown waits on etcd until it times out.
    for name in sorted(processes, key=lambda n: n != "kube-apiserver"):
        pid, binary = int(processes[name]["pid"]), str(processes[name]["binary"])
        if not _is_ours(pid, binary, work_dir):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_ours(pid, binary, work_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_ours(pid, binary, work_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped.append(f"{name} (pid {pid})")
    return stopped


def _lock_is_free(lock_path: Path) -> bool:
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def remove_stale_control_planes(grace: float = 60.0) -> list[Path]:
    """Stop and remove control planes in ``$TMPDIR/hybridnet-cp-*`` whose owner has died.

    The owner holds an exclusive flock on the lock file while it lives; the kernel drops it
    however the owner dies. Detached control planes (``controlplane.py up``) are skipped.
    Directories without a lock file younger than ``grace`` seconds are being set up.
    """
    removed = []
    for work_dir in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        lock_path = work_dir / LOCK_FILE
        try:
            if not lock_path.exists():
                if time.time() - work_dir.stat().st_mtime < grace:
                    continue
            elif not _lock_is_free(lock_path):
                continue
            state_path = work_dir / STATE_FILE
            if state_path.exists() and json.loads(state_path.read_text()).get("detached"):
                continue
        except (OSError, ValueError):
            continue
        stop_recorded(work_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        removed.append(work_dir)
    return removed


# --------------------------------------------------------------------------- forwarding


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def listen_in_namespace(netns: str, address: str, port: int = 0) -> socket.socket:
    """A listening TCP socket created inside network namespace ``netns``.

    ``netns`` is a name under ``/run/netns`` or a path to a namespace file. ``setns`` moves only
    the calling thread, so a short-lived thread enters the namespace, makes and binds the socket
    (which keeps the namespace it was created in), and switches back; nothing else of the
    process, and nothing in the root namespace, changes.
    """
    path = netns if "/" in netns else f"/run/netns/{netns}"
    if not Path(path).exists():
        raise ControlPlaneError(f"no network namespace at {path}")
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_listen() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                finally:
                    os.close(target)
                try:
                    family = socket.AF_INET6 if ":" in address else socket.AF_INET
                    listener = socket.socket(family, socket.SOCK_STREAM)
                    try:
                        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        listener.bind((address, port))
                        listener.listen(128)
                    except BaseException:
                        listener.close()
                        raise
                    made.append(listener)
                finally:
                    # If even this failed, the thread ends here and takes the namespace along.
                    _setns(own)
            finally:
                os.close(own)
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    worker = threading.Thread(target=enter_and_listen, name=f"setns-{netns}")
    worker.start()
    worker.join()
    if failed:
        for listener in made:
            listener.close()
        raise ControlPlaneError(
            f"cannot listen on {address}:{port} in namespace {netns}: {failed[0]}"
        ) from failed[0]
    return made[0]


class Forwarder:
    """Relays every connection accepted on ``listener`` to ``target`` (from our own namespace).

    Threads: one accepts, one per connection copies bytes both ways (half-closes are passed on).
    :meth:`close` wakes all of them through a pipe and closes every socket.
    """

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self.listener = listener
        self.target = target
        # A socket pair rather than a pipe: select() then sees sockets only.
        self._wake_read, self._wake_write = socket.socketpair()
        self._closed = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        host, port = listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"forward-{host}:{port}", daemon=True
        )
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while True:
            ready, _, _ = select.select([self.listener, self._wake_read], [], [])
            if self._wake_read in ready:
                return
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            relay = threading.Thread(target=self._relay, args=(conn,), daemon=True)
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(relay)
            relay.start()

    def _relay(self, conn: socket.socket) -> None:
        with conn:
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                peers = {conn: upstream, upstream: conn}
                reading = [conn, upstream]
                try:
                    while reading:
                        ready, _, _ = select.select([*reading, self._wake_read], [], [])
                        if self._wake_read in ready:
                            return
                        for source in ready:
                            data = source.recv(65536)
                            if data:
                                peers[source].sendall(data)
                            else:
                                reading.remove(source)
                                with contextlib.suppress(OSError):
                                    peers[source].shutdown(socket.SHUT_WR)
                except OSError:
                    return

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = [*self._threads, self._acceptor]
        self._wake_write.send(b"x")
        for thread in threads:
            thread.join(5)
        self.listener.close()
        self._wake_read.close()
        self._wake_write.close()


# --------------------------------------------------------------------------- the control plane


def _urlopen(
    request: str | urllib.request.Request, timeout: float, context: ssl.SSLContext | None = None
) -> Any:
    """``urlopen`` for our own http(s) URLs only (etcd's gateway, kube-apiserver)."""
    url = request if isinstance(request, str) else request.full_url
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise ControlPlaneError(f"not a control-plane URL: {url}")
    return urllib.request.urlopen(request, timeout=timeout, context=context)  # noqa: S310


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_") or "x"


class ControlPlane:
    """etcd + kube-apiserver on loopback, with throwaway credentials; see the module docstring.

    ``apiserver_flags`` adds or overrides kube-apiserver flags (``{"v": "2"}``); a value of
    ``None`` removes a default flag. ``watch_cache`` turns kube-apiserver's watch cache on (off
    by default, see :meth:`_apiserver_flags`). Without ``work_dir`` a temporary directory is
    made and removed by :meth:`stop`; a given ``work_dir`` is left in place (logs included).
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        work_dir: Path | None = None,
        extra_sans: Sequence[str] = (),
        watch_cache: bool = False,
        apiserver_flags: Mapping[str, str | None] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self._bin_dir = bin_dir
        self._given_work_dir = work_dir
        self.sans = tuple(dict.fromkeys([*DEFAULT_SANS, *extra_sans]))
        self.watch_cache = watch_cache
        self.extra_apiserver_flags = dict(apiserver_flags or {})
        self.startup_timeout = startup_timeout
        self._work_dir: Path | None = None
        self._lock_handle: IO[str] | None = None
        self._ca: CertificateAuthority | None = None
        self._admin_pair: KeyPair | None = None
        self._etcd: Child | None = None
        self._apiserver: Child | None = None
        self._etcd_port = 0
        self._secure_port = 0
        self._forwarders: dict[str, Forwarder] = {}
        self._detached = False

    # ----------------------------------------------------------------- properties

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = build_binaries()
        return self._bin_dir

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise ControlPlaneError("the control plane is not started")
        return self._work_dir

    @property
    def kubeconfig_path(self) -> Path:
        """The admin kubeconfig (user ``admin``, group ``system:masters``)."""
        return self.work_dir / "kubeconfig"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.secure_port}"

    @property
    def secure_port(self) -> int:
        if not self._secure_port:
            raise ControlPlaneError("the control plane is not started")
        return self._secure_port

    @property
    def etcd_url(self) -> str:
        if not self._etcd_port:
            raise ControlPlaneError("the control plane is not started")
        return f"http://127.0.0.1:{self._etcd_port}"

    @property
    def ca_path(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the processes that run now, by name."""
        children = {"etcd": self._etcd, "kube-apiserver": self._apiserver}
        return {name: c.pid for name, c in children.items() if c and c.poll() is None}

    @property
    def log_paths(self) -> dict[str, Path]:
        return {name: self.work_dir / f"{name}.log" for name in ("etcd", "kube-apiserver")}

    # ----------------------------------------------------------------- life cycle

    def __enter__(self) -> ControlPlane:
        if self._work_dir is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Make credentials, start etcd and kube-apiserver, wait for ``/readyz``."""
        if self._work_dir is not None:
            raise ControlPlaneError("already started")
        remove_stale_control_planes()
        bin_dir = self.bin_dir
        for name in BINARIES:
            if not os.access(bin_dir / name, os.X_OK):
                raise ControlPlaneError(f"{bin_dir / name} is missing; run {BUILD_SCRIPT}")
        if self._given_work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        else:
            self._given_work_dir.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._given_work_dir.resolve()
        self._lock_handle = (self._work_dir / LOCK_FILE).open("w")
        fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            self._write_credentials()
            self._start_etcd()
            self._start_apiserver(self._pick_secure_port)
            self._write_kubeconfig(self.kubeconfig_path, self.server_url, self._admin)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop forwarders, kube-apiserver and etcd (by PID); remove a temporary work dir."""
        for forwarder in self._forwarders.values():
            forwarder.close()
        self._forwarders.clear()
        if self._detached:
            return
        for child in (self._apiserver, self._etcd):
            if child is not None:
                child.stop()
        self._apiserver = self._etcd = None
        self._secure_port = self._etcd_port = 0
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None
        if self._work_dir is not None and self._given_work_dir is None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = None

    def detach(self) -> None:
        """Leave etcd and kube-apiserver running after this process exits (``up``)."""
        for forwarder in self._forwarders.values():
            forwarder.close()
        self._forwarders.clear()
        self._detached = True
        self._write_state()
        for child in (self._apiserver, self._etcd):
            if child is not None:
                child.forget()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd; wait until ready."""
        if self._apiserver is None:
            raise ControlPlaneError("kube-apiserver is not running")
        self._apiserver.stop()
        self._apiserver = None
        self._write_state()
        port = self._secure_port
        self._start_apiserver(lambda: port)

    # ----------------------------------------------------------------- credentials

    def _write_credentials(self) -> None:
        pki = self.work_dir / "pki"
        pki.mkdir(mode=0o700)
        self._ca = CertificateAuthority()
        self._ca.key_pair.write(pki, "ca")
        self._ca.issue("kube-apiserver", sans=self.sans, server=True).write(pki, "apiserver")
        self._admin_pair = self._ca.issue(ADMIN_USER, organizations=ADMIN_GROUPS, client=True)
        self._admin_pair.write(pki, "admin")
        signing_key = ec.generate_private_key(ec.SECP256R1())
        _write_private(pki / "sa.key", _key_pem(signing_key))
        (pki / "sa.pub").write_bytes(
            signing_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @property
    def _admin(self) -> KeyPair:
        if self._admin_pair is None:
            raise ControlPlaneError("the control plane is not started")
        return self._admin_pair

    def _write_kubeconfig(
        self, path: Path, server_url: str, credentials: KeyPair | str, user: str | None = None
    ) -> Path:
        if user is None:
            if isinstance(credentials, str):
                raise ControlPlaneError("a token kubeconfig needs a user name")
            user = credentials_user(credentials)
        if self._ca is None:
            raise ControlPlaneError("the control plane is not started")
        document = kubeconfig_document(server_url, self._ca.cert_pem, credentials, user)
        _write_private(path, yaml.safe_dump(document, sort_keys=False).encode())
        return path

    def kubeconfig_for(self, server_url: str, path: Path | None = None) -> Path:
        """A second admin kubeconfig that points at ``server_url`` (e.g. an exposed URL)."""
        path = path or self.work_dir / f"kubeconfig-{_safe_name(server_url.partition('//')[2])}"
        return self._write_kubeconfig(path, server_url, self._admin)

    def client_kubeconfig(
        self,
        user: str,
        groups: Sequence[str] = (),
        *,
        server_url: str | None = None,
        path: Path | None = None,
    ) -> Path:
        """A kubeconfig with a fresh client certificate for ``user`` in ``groups``."""
        if self._ca is None:
            raise ControlPlaneError("the control plane is not started")
        credentials = self._ca.issue(user, organizations=groups, client=True)
        path = path or self.work_dir / f"kubeconfig-user-{_safe_name(user)}"
        return self._write_kubeconfig(path, server_url or self.server_url, credentials)

    def service_account_kubeconfig(
        self,
        namespace: str,
        name: str,
        *,
        server_url: str | None = None,
        path: Path | None = None,
        expiration_seconds: int = 86400,
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (it must exist).

        The token is a bound one from the TokenRequest API, as a pod's projected token would be;
        what it may do is up to the RBAC rules bound to the ServiceAccount.
        """
        from kubernetes import client  # noqa: PLC0415

        api_client = self.api_client()
        try:
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=expiration_seconds
                )
            )
            reply = client.CoreV1Api(api_client).create_namespaced_service_account_token(
                name, namespace, request
            )
        finally:
            close_api_client(api_client)
        if reply.status is None or not reply.status.token:
            raise ControlPlaneError(f"no token for ServiceAccount {namespace}/{name}: {reply}")
        user = f"system:serviceaccount:{namespace}:{name}"
        path = path or self.work_dir / f"kubeconfig-sa-{_safe_name(namespace)}-{_safe_name(name)}"
        return self._write_kubeconfig(
            path, server_url or self.server_url, reply.status.token, user=user
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts our CA and presents the admin certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        pki = self.work_dir / "pki"
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        return context

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` from ``kubeconfig`` (default: the admin one).

        The caller closes it (``client.close()``).
        """
        from kubernetes import config  # noqa: PLC0415  (only the API users pay for the import)

        load: Any = config.new_client_from_config  # untyped in the client
        api_client: ApiClient = load(config_file=str(kubeconfig or self.kubeconfig_path))
        return api_client

    # ----------------------------------------------------------------- etcd

    def _start_etcd(self) -> None:
        data_dir = self.work_dir / "etcd"
        for attempt in range(3):
            client_port, peer_port = free_port(), free_port()
            client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
            argv = [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--initial-cluster-state=new",
                # Throwaway data: skipping fsync makes every write (and the start) faster.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]
            self._etcd = Child("etcd", argv, self.log_paths["etcd"])
            self._etcd_port = client_port
            self._write_state()
            if self._wait_etcd_healthy():
                return
            self._etcd.stop()
            self._etcd = None
            log = tail(self.log_paths["etcd"])
            if "address already in use" not in log or attempt == 2:
                raise ControlPlaneError(f"etcd did not start; last lines of its log:\n{log}")
            shutil.rmtree(data_dir, ignore_errors=True)

    def _wait_etcd_healthy(self) -> bool:
        if self._etcd is None:
            raise ControlPlaneError("etcd is not running")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and self._etcd.poll() is None:
            with (
                contextlib.suppress(OSError, ValueError),
                _urlopen(f"{self.etcd_url}/health", timeout=2) as response,
            ):
                if json.loads(response.read()).get("health") == "true":
                    return True
            time.sleep(0.05)
        return False

    def _etcd_call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST to etcd's gRPC-JSON gateway; int64 fields travel as strings."""
        request = urllib.request.Request(  # noqa: S310  (our own http:// URL)
            f"{self.etcd_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with _urlopen(request, timeout=10) as response:
                reply: dict[str, Any] = json.loads(response.read())
                return reply
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode(errors="replace")
            raise ControlPlaneError(f"etcd {path}: HTTP {exc.code}: {detail}") from exc

    def etcd_revision(self) -> int:
        """etcd's current revision (what every resourceVersion of ours is drawn from)."""
        reply = self._etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        return int(reply["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd's history at its current revision and return that revision.

        Afterwards a watch or list from an older resourceVersion fails with 410 Gone (through
        etcd; see :meth:`_apiserver_flags` about the watch cache).
        """
        revision = self.etcd_revision()
        try:
            self._etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except ControlPlaneError as exc:
            # Nothing was written since the last compaction: already compacted here.
            if "required revision has been compacted" not in str(exc):
                raise
        return revision

    # ----------------------------------------------------------------- kube-apiserver

    def _pick_secure_port(self) -> int:
        self._secure_port = free_port()
        return self._secure_port

    def _apiserver_flags(self) -> dict[str, str | None]:
        pki = self.work_dir / "pki"
        flags: dict[str, str | None] = {
            "etcd-servers": self.etcd_url,
            "secure-port": str(self._secure_port),
            "bind-address": "127.0.0.1",
            "advertise-address": "127.0.0.1",
            "cert-dir": str(self.work_dir / "apiserver-certs"),
            "tls-cert-file": str(pki / "apiserver.crt"),
            "tls-private-key-file": str(pki / "apiserver.key"),
            "client-ca-file": str(pki / "ca.crt"),
            # RBAC only: the Node authorizer is for kubelets, and none run here.
            "authorization-mode": "RBAC",
            "service-cluster-ip-range": SERVICE_CLUSTER_IP_RANGE,
            "service-account-issuer": SERVICE_ACCOUNT_ISSUER,
            "service-account-key-file": str(pki / "sa.pub"),
            "service-account-signing-key-file": str(pki / "sa.key"),
            "allow-privileged": "true",
            # As envtest does: without a controller-manager no namespace gets its "default"
            # ServiceAccount, and this plugin would reject every pod the harness creates.
            "disable-admission-plugins": "ServiceAccount",
            # etcd's history is compacted only when a test says so (compact_etcd), never by the
            # API server's own 5-minute timer in the middle of a test.
            "etcd-compaction-interval": "0",
            # The watch cache keeps a window of recent events in memory, and a watch from a
            # resourceVersion inside that window is served from memory even after etcd was
            # compacted; whether a client sees 410 Gone then depends on the window's size and
            # age, i.e. on timing. Off, every watch is served by etcd, so after compact_etcd()
            # a watch from an older resourceVersion is always 410: the event that components'
            # informers must survive (relist), reproducible on demand. Tests that want the
            # production read path pass watch_cache=True.
            "watch-cache": "true" if self.watch_cache else "false",
            "profiling": "false",
        }
        flags.update(self.extra_apiserver_flags)
        return flags

    def _start_apiserver(self, choose_port: Callable[[], int]) -> None:
        restarting = bool(self._secure_port)
        for attempt in range(3):
            choose_port()
            flags = self._apiserver_flags()
            argv = [str(self.bin_dir / "kube-apiserver")]
            argv += [f"--{name}={value}" for name, value in flags.items() if value is not None]
            self._apiserver = Child("kube-apiserver", argv, self.log_paths["kube-apiserver"])
            self._write_state()
            failure = self._wait_apiserver_ready()
            if failure is None:
                return
            exited = self._apiserver.poll()
            self._apiserver.stop()
            self._apiserver = None
            self._write_state()
            log = tail(self.log_paths["kube-apiserver"])
            port_taken = exited is not None and "address already in use" in log
            if restarting or not port_taken or attempt == 2:
                raise ControlPlaneError(
                    f"kube-apiserver not ready ({failure}); last lines of its log "
                    f"{self.log_paths['kube-apiserver']}:\n{log}"
                )

    def _wait_apiserver_ready(self) -> str | None:
        """None when ``/readyz`` answers ok, else why not (exit, or the last answer)."""
        if self._apiserver is None:
            raise ControlPlaneError("kube-apiserver is not running")
        context = self.ssl_context()
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        while True:
            code = self._apiserver.poll()
            if code is not None:
                return f"exited with status {code}"
            try:
                with _urlopen(f"{self.server_url}/readyz", timeout=2, context=context) as response:
                    if response.status == 200:
                        return None
            except urllib.error.HTTPError as exc:
                with exc:
                    last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[-1500:]}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                return f"no ready answer within {self.startup_timeout}s; last: {last}"
            time.sleep(0.1)

    def _write_state(self) -> None:
        """Record our PIDs, for ``down`` and for the cleanup after a crashed owner."""
        children = {"etcd": self._etcd, "kube-apiserver": self._apiserver}
        state = {
            "processes": {
                name: {"pid": child.pid, "binary": child.argv[0], "log": str(child.log_path)}
                for name, child in children.items()
                if child is not None
            },
            "detached": self._detached,
            "kubeconfig": str(self.kubeconfig_path),
        }
        (self.work_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    # ----------------------------------------------------------------- CRDs

    def install_crds(self, directory: Path | None = None, timeout: float = 60.0) -> list[str]:
        """Create (or replace) every CustomResourceDefinition in ``directory``'s ``*.yaml``.

        Waits until each is Established and its resources are in discovery. Documents of other
        kinds (a kustomization, say) are skipped. Returns the CRD names.
        """
        from kubernetes import client  # noqa: PLC0415

        directory = directory or DEFAULT_CRD_DIR
        documents = []
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            for document in yaml.safe_load_all(path.read_text()):
                if isinstance(document, dict) and document.get("kind") == (
                    "CustomResourceDefinition"
                ):
                    documents.append(document)
        if not documents:
            return []
        api_client = self.api_client()
        try:
            extensions = client.ApiextensionsV1Api(api_client)
            names = [_apply_crd(extensions, document) for document in documents]
            deadline = time.monotonic() + timeout
            for document in documents:
                _wait_crd_served(api_client, extensions, document, deadline)
        finally:
            close_api_client(api_client)
        return names

    # ----------------------------------------------------------------- reach from namespaces

    def expose_in_namespace(self, netns_name: str, address: str, port: int = 0) -> str:
        """Serve the API server at ``address:port`` inside network namespace ``netns_name``.

        A listening socket made inside the namespace relays to 127.0.0.1 of ours; the root
        namespace is not touched. ``port`` 0 picks a free one. Returns ``https://address:port``;
        the serving certificate must name ``address`` (198.18.0.1 does; others go in
        ``extra_sans``). :meth:`unexpose` or :meth:`stop` ends it.
        """
        if ipaddress.ip_address(address) not in {ipaddress.ip_address(s) for s in self._ip_sans}:
            raise ControlPlaneError(
                f"{address} is not in the serving certificate's SANs {self.sans}; "
                "pass it in extra_sans"
            )
        listener = listen_in_namespace(netns_name, address, port)
        forwarder = Forwarder(listener, ("127.0.0.1", self.secure_port))
        url = f"https://{_url_host(address)}:{forwarder.address[1]}"
        self._forwarders[url] = forwarder
        return url

    @property
    def _ip_sans(self) -> list[str]:
        ips = []
        for san in self.sans:
            with contextlib.suppress(ValueError):
                ips.append(str(ipaddress.ip_address(san)))
        return ips

    @contextlib.contextmanager
    def exposed(self, netns_name: str, address: str, port: int = 0) -> Iterator[str]:
        """:meth:`expose_in_namespace` for a ``with`` block; unexposed on the way out.

        Close it before the namespace is deleted: a listening socket keeps its namespace alive.
        """
        url = self.expose_in_namespace(netns_name, address, port)
        try:
            yield url
        finally:
            self.unexpose(url)

    def unexpose(self, url: str) -> None:
        """Close the listener of an :meth:`expose_in_namespace` URL and its connections."""
        forwarder = self._forwarders.pop(url, None)
        if forwarder is not None:
            forwarder.close()


def close_api_client(api_client: ApiClient) -> None:
    """Close a client's connection pool (``ApiClient.close`` is untyped)."""
    close: Any = api_client.close
    close()


def credentials_user(credentials: KeyPair) -> str:
    """The user name (certificate CN) of a client key pair."""
    cert = x509.load_pem_x509_certificate(credentials.cert_pem)
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()


def _apply_crd(extensions: Any, document: dict[str, Any]) -> str:
    """Create the CRD, or replace the existing one of that name; return its name."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    name = str(document["metadata"]["name"])
    # _preload_content=False throughout: the client's model of CRD status rejects the
    # condition-less status a just-created CRD has.
    try:
        extensions.create_custom_resource_definition(document, _preload_content=False)
    except ApiException as exc:
        if exc.status != 409:
            raise ControlPlaneError(f"creating CRD {name}: {exc.status} {exc.body}") from exc
        current = json.loads(
            extensions.read_custom_resource_definition(name, _preload_content=False).data
        )
        body = json.loads(json.dumps(document))
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        extensions.replace_custom_resource_definition(name, body, _preload_content=False)
    return name


def _discovered(api_client: Any, group: str, version: str) -> set[str]:
    """The resource names that discovery lists for ``group/version`` (empty when unknown)."""
    request = api_client.param_serialize(
        "GET", f"/apis/{group}/{version}", auth_settings=["BearerToken"]
    )
    response = api_client.call_api(*request, _request_timeout=10)
    data = response.read()
    if response.status != 200:
        return set()
    return {str(r.get("name")) for r in json.loads(data).get("resources", [])}


def _wait_crd_served(
    api_client: Any, extensions: Any, document: dict[str, Any], deadline: float
) -> None:
    name = str(document["metadata"]["name"])
    group = document["spec"]["group"]
    plural = document["spec"]["names"]["plural"]
    versions = [v["name"] for v in document["spec"]["versions"] if v.get("served", True)]
    conditions: list[dict[str, Any]] = []
    while True:
        crd = json.loads(
            extensions.read_custom_resource_definition(name, _preload_content=False).data
        )
        conditions = crd.get("status", {}).get("conditions") or []
        by_type = {c["type"]: c for c in conditions}
        names_accepted = by_type.get("NamesAccepted", {})
        if names_accepted.get("status") == "False":
            raise ControlPlaneError(f"CRD {name}: names not accepted: {names_accepted}")
        established = by_type.get("Established", {}).get("status") == "True"
        if established and all(plural in _discovered(api_client, group, v) for v in versions):
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"CRD {name} not established/served in time: {conditions}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- command line


def _up(work_dir: Path, crd_dir: Path | None, install: bool) -> int:
    work_dir = work_dir.resolve()
    state_path = work_dir / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        alive = [
            name
            for name, entry in state.get("processes", {}).items()
            if _is_ours(int(entry["pid"]), str(entry["binary"]), work_dir)
        ]
        if alive:
            print(f"already running in {work_dir}: {', '.join(alive)}; run `down` first")
            return 1
        shutil.rmtree(work_dir)
    elif work_dir.exists() and any(work_dir.iterdir()):
        print(f"{work_dir} exists and is not a control plane's directory; pick another --dir")
        return 1
    started = time.monotonic()
    control_plane = ControlPlane(work_dir=work_dir)
    control_plane.start()
    try:
        crds = control_plane.install_crds(crd_dir) if install else []
    except BaseException:
        control_plane.stop()
        raise
    pids = control_plane.pids
    control_plane.detach()
    print(f"control plane up in {time.monotonic() - started:.1f}s: {control_plane.server_url}")
    print(f"pids: {pids}; logs in {work_dir}")
    if crds:
        print(f"CRDs installed: {', '.join(crds)}")
    print(f"kubectl: {control_plane.kubectl}")
    print(f"kubeconfig: {control_plane.kubeconfig_path}")
    print(f"export KUBECONFIG={control_plane.kubeconfig_path}")
    return 0


def _down(work_dir: Path) -> int:
    work_dir = work_dir.resolve()
    if not (work_dir / STATE_FILE).exists():
        print(f"no control plane in {work_dir}")
        return 0
    stopped = stop_recorded(work_dir)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="controlplane", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start etcd + kube-apiserver and leave them running")
    up.add_argument("--dir", type=Path, required=True, help="work dir (kubeconfig, logs, pids)")
    up.add_argument("--crds", type=Path, default=None, help=f"CRD dir (default {DEFAULT_CRD_DIR})")
    up.add_argument("--no-crds", action="store_true", help="do not install CRDs")
    down = commands.add_parser("down", help="stop what `up` started in --dir and remove it")
    down.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _up(args.dir, args.crds, not args.no_crds)
        return _down(args.dir)
    except ControlPlaneError as exc:
        print(f"controlplane: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
