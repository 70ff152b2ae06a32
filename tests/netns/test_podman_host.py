"""hybridnet on a plain container host, without Kubernetes, done the way a user does it: the
daemon started with the command lines of ``deploy/systemd/hybridnet-daemon.service`` (and the
flags of its example ``daemon.env``): ``hybridnet-daemon install``, then ``serve`` on the
embedded store; ``hybridnet-ctl --store`` creating a network and a subnet; podman 4 on its CNI
backend running containers on the ``hybridnet`` network; ``hybridnet-ctl ip`` and ``ipam
check`` showing who holds what; ``podman rm`` giving it back.

Where this differs from a host: the unit's paths (the console scripts, the socket, the store,
the CNI directories) are moved into the test's directories, and ``%H`` is a fixed name; the
daemon serves from a node namespace of the test bed, not the root namespace (it sets
ip_forward, routes, rules and a VXLAN device, which no test may do to this machine), and
without systemd's sandbox (systemd is not PID 1 here; ``systemd-analyze verify`` checks the
unit itself). podman is confined as :mod:`tests.netns.podman_harness` says.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from hybridnet import lab as testbed
from hybridnet.lab.processes import Process
from tests.netns.podman_harness import IMAGE, Podman, confined_podman

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = SYSTEMD / "hybridnet-daemon.service"
ENVIRONMENT = SYSTEMD / "daemon.env"
SCRIPTS = Path(sys.executable).parent
"""This installation's console scripts (``hybridnet-daemon``, ``hybridnet-ctl``)."""

HOSTNAME = "podman-host"
"""What ``%H`` (the host name) stands for in the unit: the daemon's node name."""
NETWORK, SUBNET, CIDR = "containers", "containers-v4", "198.19.70.0/24"
PINNED = "198.19.70.50"
"""The address a container asks for with ``podman run --ip``."""
PORT, GREETING = 7000, "hello from web"
READY_SECONDS = 30.0
"""How long the daemon may take to answer ``probe --ready`` (the unit gives it 60 s): it
lists five kinds from a local SQLite file and reconciles the node once, about a second here
unless the machine is starved; the wait ends at the first ready answer."""
STOP_SECONDS = 30.0
"""How long a SIGTERMed daemon may take to exit: its informers' watches end at their next
5-second re-check (README, the node daemon), then it closes the store."""


def service_settings(path: Path) -> dict[str, str]:
    """The ``[Service]`` section's ``Key=value`` lines (each key once in this unit)."""
    settings: dict[str, str] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            assert key not in settings, f"{key} twice in {path.name}"
            settings[key] = value
    return settings


def environment(path: Path) -> dict[str, str]:
    """An ``EnvironmentFile``: ``KEY=value`` lines, the value the rest of the line."""
    lines = (line.strip() for line in path.read_text().splitlines())
    pairs = (line.partition("=") for line in lines if line and not line.startswith("#"))
    return {key: value.strip() for key, _, value in pairs}


def unit_command(key: str, paths: Mapping[str, str]) -> list[str]:
    """The unit's ``key`` command line as systemd runs it: the ``+`` (no sandbox) prefix
    dropped, each host path replaced by the test's, ``%H`` and ``$VARIABLE`` (split into
    words, as systemd does without braces) expanded from the example environment file."""
    settings = service_settings(UNIT)
    named = " ".join(settings[k] for k in ("ExecStartPre", "ExecStart", "ExecStartPost"))
    missing = [path for path in paths if path not in named]
    assert not missing, f"the unit no longer names {missing}"
    command = settings[key].lstrip("+")
    for host_path, test_path in paths.items():
        command = command.replace(host_path, test_path)
    variables = environment(ENVIRONMENT)
    argv: list[str] = []
    for word in shlex.split(command.replace("%H", HOSTNAME)):
        argv += variables[word[1:]].split() if word.startswith("$") else [word]
    return argv


class HostPaths:
    """The unit's places on a host, moved into one test's directory."""

    def __init__(self, root: Path, conf_dir: Path):
        self.store = root / "var" / "lib" / "hybridnet" / "store.db"
        self.socket = root / "run" / "hybridnet" / "daemon.sock"
        self.cni_bin = root / "opt" / "cni" / "bin"
        self.conf_dir = conf_dir
        self.store.parent.mkdir(mode=0o700, parents=True)  # systemd's StateDirectory=

    def mapping(self) -> dict[str, str]:
        return {
            "/usr/local/bin/hybridnet-daemon": str(SCRIPTS / "hybridnet-daemon"),
            "/run/hybridnet/daemon.sock": str(self.socket),
            "/var/lib/hybridnet/store.db": str(self.store),
            "/opt/cni/bin": str(self.cni_bin),
            "/etc/cni/net.d": str(self.conf_dir),
        }


class Daemon:
    """``hybridnet-daemon serve`` as the unit starts it, in the test's node namespace, and
    waited for as the unit's ExecStartPost waits (``probe --ready`` until it says so)."""

    def __init__(self, node: testbed.Node, paths: Mapping[str, str]):
        self.node = node
        self.argv = unit_command("ExecStart", paths)
        self.ready = unit_command("ExecStartPost", paths)
        self.process: Process | None = None

    def start(self) -> None:
        self.process = self.node.spawn(self.argv)
        try:
            subprocess.run(self.ready, check=True, timeout=READY_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"not ready:\n{self.process.read_remaining()}") from exc

    def restart(self) -> None:
        """``systemctl restart``: SIGTERM, a clean exit, a new process."""
        assert self.process is not None
        code = self.process.stop(timeout=STOP_SECONDS)
        assert code == 0, f"exit {code}:\n{self.process.read_remaining()}"
        self.start()

    def crash(self) -> None:
        """Killed outright (SIGKILL), then started again as ``Restart=on-failure`` does."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.stop() == -signal.SIGKILL
        self.start()


def ctl(store: Path, *args: str, expect: int = 0) -> Any:
    """``hybridnet-ctl --store STORE ARGS``; the parsed JSON when ``-o json`` is among them."""
    argv = [str(SCRIPTS / "hybridnet-ctl"), "--store", str(store), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == expect, f"{' '.join(args)}: exit {done.returncode}\n{done.stderr}"
    return json.loads(done.stdout) if "json" in args else done.stdout


def held(store: Path) -> dict[str, str]:
    """Address -> container, as ``hybridnet-ctl ip list`` shows the store's allocations."""
    return {r["address"]: r["pod"] for r in ctl(store, "ip", "list", "-o", "json")}


def audit_clean(host: HostPaths) -> None:
    """``ipam check`` against the daemon's attachments finds nothing (exit 0)."""
    report = ctl(host.store, "ipam", "check", "--socket", str(host.socket), "-o", "json")
    assert report["findings"] == [], report


def run_detached(podman: Podman, name: str, *command: str) -> str:
    """A container on the ``hybridnet`` network that stays up (``command``, else a sleep);
    its address as it sees it itself."""
    podman("run", "--detach", "--name", name, "--network", "hybridnet", IMAGE,
           *(command or ("sleep", "600")))  # fmt: skip
    return podman.address(name)


def serve_tcp(podman: Podman, name: str) -> str:
    """A container answering every TCP connection on :data:`PORT` with a greeting, once it
    listens (its /proc/net/tcp or tcp6 shows the socket); its address."""
    address = run_detached(podman, name, "nc", "-ll", "-p", str(PORT), "-e", "echo", GREETING)
    deadline = time.monotonic() + READY_SECONDS
    while not listens(podman, name):
        assert time.monotonic() < deadline, f"{name} does not listen on {PORT}"
        time.sleep(0.05)
    return address


def listens(podman: Podman, name: str) -> bool:
    sockets = podman("exec", name, "cat", "/proc/net/tcp", "/proc/net/tcp6").stdout
    rows = (line.split() for line in sockets.splitlines()[1:])
    # local address, remote address, state: 0A is LISTEN
    return any(r[1].endswith(f":{PORT:04X}") and r[3] == "0A" for r in rows if len(r) > 3)


def talks_tcp(podman: Podman, source: str, address: str) -> None:
    done = podman("exec", source, "nc", "-w", "5", address, str(PORT), check=False)
    assert done.stdout.strip() == GREETING, done.stdout + done.stderr


def pings(podman: Podman, source: str, address: str) -> None:
    done = podman("exec", source, "ping", "-c", "1", "-W", "5", address, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_plain_container_host(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> None:
    fabric = fabric_factory(1)
    node = fabric.nodes[0]
    root_before = testbed.root_links()
    with confined_podman(tmp_path / "podman", tmp_path / "opt" / "cni" / "bin") as podman:
        host = HostPaths(tmp_path, podman.conf_dir)
        installed = subprocess.run(
            unit_command("ExecStartPre", host.mapping()), capture_output=True, text=True, check=True
        )
        assert "00-hybridnet.conflist" in installed.stdout
        daemon = Daemon(node, host.mapping())
        daemon.start()
        assert host.store.is_file()  # made by the daemon; ctl never makes one

        ctl(host.store, "network", "create", NETWORK, "--type", "Overlay", "--net-id", "7")
        ctl(host.store, "subnet", "create", SUBNET, "--network", NETWORK, "--cidr", CIDR,
            "--auto-nat-outgoing")  # fmt: skip

        web = serve_tcp(podman, "web")
        client = run_detached(podman, "client")
        subnet = ipaddress.ip_network(CIDR)
        for address in (web, client):
            assert ipaddress.ip_interface(address).ip in subnet
        web_ip, client_ip = (str(ipaddress.ip_interface(a).ip) for a in (web, client))
        assert web_ip != client_ip
        assert held(host.store) == {web_ip: "web", client_ip: "client"}
        (shown,) = [r for r in ctl(host.store, "ip", "list", "-o", "json") if r["pod"] == "web"]
        assert (shown["network"], shown["subnet"], shown["node"]) == (NETWORK, SUBNET, HOSTNAME)
        assert ctl(host.store, "ip", "get", web_ip, "-o", "json")["state"] == "allocated"
        audit_clean(host)
        pings(podman, "client", web_ip)
        pings(podman, "web", client_ip)
        talks_tcp(podman, "client", web_ip)
        # The host's LAN (the fabric's gateway) has no route to the subnet: the answer comes
        # back because the host masquerades what leaves it (--auto-nat-outgoing).
        lan_routes = fabric.gateway.ip("-4", "route").stdout
        assert "default" not in lan_routes and "198.19.70." not in lan_routes, lan_routes
        pings(podman, "client", fabric.gateway_ipv4)

        # podman passes --ip as CNI_ARGS IP= (with IgnoreUnknown=1): hybridnet cannot honour
        # it, so ADD fails saying so rather than giving the container another address.
        refused = podman("run", "--rm", "--name", "pinned", "--network", "hybridnet",
                         "--ip", PINNED, IMAGE, "ip", "-o", "-4", "addr", "show", "eth0",
                         check=False)  # fmt: skip
        assert refused.returncode != 0 and f"IP={PINNED}" in refused.stderr, refused.stderr
        assert held(host.store) == {web_ip: "web", client_ip: "client"}
        assert ctl(host.store, "ip", "get", PINNED, "-o", "json")["state"] == "free"

        daemon.restart()
        late = run_detached(podman, "late")
        late_ip = str(ipaddress.ip_interface(late).ip)
        assert late_ip not in (web_ip, client_ip)
        assert held(host.store) == {web_ip: "web", client_ip: "client", late_ip: "late"}
        audit_clean(host)
        pings(podman, "late", web_ip)
        talks_tcp(podman, "late", web_ip)
        talks_tcp(podman, "client", web_ip)

        daemon.crash()
        audit_clean(host)
        pings(podman, "web", late_ip)
        talks_tcp(podman, "late", web_ip)
        podman("rm", "--force", "--time", "0", "web", "client", "late")
        assert held(host.store) == {}
        assert ctl(host.store, "ip", "get", web_ip, "-o", "json")["state"] == "free"
        audit_clean(host)
        assert [link for link in node.links() if link.startswith("hyb")] == []
    assert testbed.root_links() == root_before


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """``systemd-analyze verify`` loads the unit as systemd would (every key known, values
    that parse, executables that exist) and says nothing: it exits 0 even for an unknown key,
    so silence is the check. The executable is this installation's, not /usr/local/bin's."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    here = str(SCRIPTS / "hybridnet-daemon")
    text = UNIT.read_text()
    assert "/usr/local/bin/hybridnet-daemon" in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/usr/local/bin/hybridnet-daemon", here))
    verified = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert (verified.returncode, verified.stderr) == (0, ""), verified.stderr
    # The same check hears a mistake: a misspelt key.
    unit.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSytem="))
    misspelt = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert "ProtectSytem" in misspelt.stderr
