"""A real kube-apiserver + etcd for tests, started the way controller-runtime's envtest does.

The binaries come from ``build.sh`` (:mod:`hack.controlplane.binaries`). A :class:`ControlPlane`
makes a throwaway CA, a serving certificate, an admin client certificate (``admin`` in
``system:masters``) and a service-account signing key (:mod:`hack.controlplane.pki`), starts etcd
on loopback with a temporary data directory and kube-apiserver with RBAC, polls ``/readyz``, and
writes an admin kubeconfig. Only these two processes run: no kubelet, scheduler or
controller-manager.

Both are started as :class:`hybridnet.lab.processes.Process` (the lab's, so there is one way
to start and end a child) and stopped through their own process group. What a control plane
records about itself, and the cleanup after an owner that died, are in
:mod:`hack.controlplane.state`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import yaml

from hack.controlplane import crds
from hack.controlplane.binaries import BINARIES, BUILD_SCRIPT, build_binaries
from hack.controlplane.crds import DEFAULT_CRD_DIR
from hack.controlplane.errors import ControlPlaneError, WorkDirInUse
from hack.controlplane.forwarder import Forwarder, listen_in_namespace
from hack.controlplane.pki import (
    CertificateAuthority,
    KeyPair,
    credentials_user,
    kubeconfig_document,
    signing_key_pems,
    write_private,
)
from hack.controlplane.state import LOCK_FILE, STATE_FILE, TEMP_PREFIX, remove_stale_control_planes
from hybridnet.lab.processes import Process

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

DEFAULT_SANS = ("127.0.0.1", "::1", "localhost", "198.18.0.1")
"""Names the serving certificate is valid for; 198.18.0.1 is the test bed's gateway address."""
SERVICE_CLUSTER_IP_RANGE = "198.18.254.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "admin"
ADMIN_GROUPS = ("system:masters",)
STOP_TIMEOUT = 15.0
"""Seconds etcd and kube-apiserver get to exit after SIGTERM before SIGKILL."""


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
        self._etcd: Process | None = None
        self._apiserver: Process | None = None
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
        try:
            self._lock_handle = (self._work_dir / LOCK_FILE).open("w")
            try:
                fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                self._lock_handle.close()
                self._lock_handle = None
                raise WorkDirInUse(f"{self._work_dir} is in use by another control plane") from exc
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
                child.stop(STOP_TIMEOUT)
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
        self._apiserver.stop(STOP_TIMEOUT)
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
        signing_key, verifying_key = signing_key_pems()
        write_private(pki / "sa.key", signing_key)
        (pki / "sa.pub").write_bytes(verifying_key)

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
        write_private(path, yaml.safe_dump(document, sort_keys=False).encode())
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
            self._etcd = Process(argv, log_path=self.log_paths["etcd"])
            self._etcd_port = client_port
            self._write_state()
            if self._wait_etcd_healthy():
                return
            self._etcd.stop(STOP_TIMEOUT)
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
            self._apiserver = Process(argv, log_path=self.log_paths["kube-apiserver"])
            self._write_state()
            failure = self._wait_apiserver_ready()
            if failure is None:
                return
            exited = self._apiserver.poll()
            self._apiserver.stop(STOP_TIMEOUT)
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
        documents = crds.crd_documents(directory or DEFAULT_CRD_DIR)
        if not documents:
            return []
        api_client = self.api_client()
        try:
            return crds.install_crds(api_client, documents, timeout)
        finally:
            close_api_client(api_client)

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
