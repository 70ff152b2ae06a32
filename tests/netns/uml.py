"""Run tests that need 802.1Q inside a user-mode-linux kernel when this kernel lacks it.

A test marked ``requires_8021q`` runs natively where the kernel can create a VLAN device. Where
it cannot (this machine's kernel has no 8021q), the test item is replaced by a :class:`UmlItem`
of the same node id: it boots a user-mode-linux kernel with the host filesystem as its root,
runs pytest on that one node id inside the guest, and reports the guest's result (pass, fail
with output, or skip) as its own. The guest shares the host's files (hostfs) but has its own
kernel, namespaces and ``/run``.

The kernel is our own build (hack/uml/build.sh, ``make uml-kernel``): Debian's user-mode-linux
configuration with 802.1Q, veth, bridge, VXLAN, nftables' inet/ip/ip6 families, SCTP and the
rest built in, so nothing is loaded. Debian's ``linux.uml`` lacks those nftables families
(NetworkPolicy cannot run there); it is the fallback while our build is missing, with
``8021q``, ``veth`` and ``bridge`` loaded from ``/usr/lib/uml/modules``.

UML always runs with ``uml_xstate_shim.c`` preloaded (see tests/netns/uml_xstate.py): without
it, hosts whose XSAVE area outgrows UML's fixed buffer (AMX CPUs) cannot boot it; both kernels
are 6.1 with that same buffer. A guest that produces no result is a failure reported with its
console and the host's CPU facts.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hybridnet import lab as testbed
from tests.netns import native, uml_xstate

MARKER = "requires_8021q"
GUEST_ENV = "HYBRIDNET_UML_GUEST"
GUEST_KERNEL_ENV = "HYBRIDNET_UML_KERNEL"  # inside the guest: the kernel binary it booted
GUEST_CONFIG_ENV = "HYBRIDNET_UML_KERNEL_CONFIG"  # and that kernel's configuration file
GUEST_OURS_ENV = "HYBRIDNET_UML_KERNEL_OURS"  # "1" when it is hack/uml/build.sh's
UML_KERNEL = "linux.uml"
UML_MODULES = Path("/usr/lib/uml/modules")
GUEST_MODULES = ("8021q", "veth", "bridge")
BOOT_TIMEOUT_SECONDS = 600
REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_BUILD = REPO_ROOT / "hack" / "uml" / "build.sh"
BUILD_TIMEOUT_SECONDS = 60  # with --cached the script only hashes its inputs


class NoUmlKernel(Exception):
    """Neither our user-mode-linux build nor Debian's package is there."""


@dataclass(frozen=True)
class GuestKernel:
    """A user-mode-linux kernel to boot, and the modules it must load (none when built in)."""

    binary: Path
    modules: Path | None
    config: Path  # its kernel configuration (Debian's is gzipped)

    @property
    def self_built(self) -> bool:
        return self.modules is None


@functools.cache
def built_kernel() -> GuestKernel | None:
    """Our own build from hack/uml/build.sh's cache, or None while it is not built."""
    try:
        done = subprocess.run(
            [str(KERNEL_BUILD), "--cached"],
            capture_output=True,
            text=True,
            check=False,
            timeout=BUILD_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    directory = Path(lines[-1])
    binary = directory / "linux"
    if not os.access(binary, os.X_OK):
        return None
    return GuestKernel(binary, None, directory / "config")


def debian_kernel() -> GuestKernel | None:
    """Debian's user-mode-linux package, when installed."""
    found = shutil.which(UML_KERNEL)
    if found is None or not UML_MODULES.is_dir():
        return None
    return GuestKernel(Path(found), UML_MODULES, Path("/usr/share/doc/user-mode-linux/config.gz"))


def guest_kernel() -> GuestKernel | None:
    """The kernel guests boot: ours where it is built, else Debian's, else none."""
    return built_kernel() or debian_kernel()


def in_guest() -> bool:
    return os.environ.get(GUEST_ENV) == "1"


def in_our_kernel() -> bool:
    """Inside a guest booted from hack/uml/build.sh's kernel (not Debian's)."""
    return in_guest() and os.environ.get(GUEST_OURS_ENV) == "1"


@functools.cache
def host_has_8021q() -> bool:
    """Probe by creating a VLAN device on a veth inside a throwaway namespace.

    Every link is named with ``name``: ``ip link add a ...`` reads ``a`` as ``address``.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"{testbed.PREFIX_ROOT}probe{os.getpid()}"
    try:
        testbed.ip("netns", "add", name)
        testbed.ip("-n", name, "link", "add", "name", "trunk", "type", "veth",
                   "peer", "name", "peer")  # fmt: skip
        probe = testbed.ip("-n", name, "link", "add", "link", "trunk", "name", "trunk.2",
                           "type", "vlan", "id", "2", check=False)  # fmt: skip
        return probe.returncode == 0
    except testbed.TestbedError:
        return False
    finally:
        testbed.delete_namespace(name)


def reroute_8021q_items(items: list[pytest.Item]) -> None:
    """Swap every ``requires_8021q`` item for a UmlItem unless 802.1Q is available natively."""
    if in_guest() or not any(item.get_closest_marker(MARKER) for item in items):
        return
    if host_has_8021q():
        return
    for index, item in enumerate(items):
        if item.get_closest_marker(MARKER) and item.parent is not None:
            replacement = UmlItem.from_parent(item.parent, name=item.name, target=item.nodeid)
            replacement.own_markers.extend(item.iter_markers())
            items[index] = replacement


class UmlItem(pytest.Item):
    """Runs ``target`` (a pytest node id) inside a user-mode-linux guest."""

    def __init__(self, *, target: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.target = target

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.target} [user-mode-linux]"

    def runtest(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("802.1Q: needs root")
        kernel = guest_kernel()
        if kernel is None:
            pytest.skip(
                "802.1Q: this kernel lacks it and no user-mode-linux kernel is there "
                "(make uml-kernel, or apt-get install user-mode-linux)"
            )
        outcome = run_in_guest(self.target, kernel)
        if outcome.status == "skipped":
            pytest.skip(f"inside user-mode-linux: {outcome.message}")
        if outcome.status != "passed":
            raise UmlTestFailure(outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        # Both say everything there is to say; a traceback into the runner would only hide it.
        if isinstance(excinfo.value, UmlTestFailure | native.NativeBuildError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))


@dataclass
class GuestOutcome:
    status: str
    message: str
    output: str
    shim_log: dict[str, str] = field(default_factory=dict)  # what the XSTATE shim did
    host: uml_xstate.CpuFacts | None = None  # gathered when the guest left no result


class UmlTestFailure(Exception):
    def __init__(self, outcome: GuestOutcome):
        host = ""
        if outcome.host is not None:
            shim = uml_xstate.describe_shim_log(outcome.shim_log)
            host = f"--- host ---\n{outcome.host.describe()}\n{shim}\n"
        super().__init__(
            f"test {outcome.status} inside user-mode-linux: {outcome.message}\n"
            f"{host}--- guest output ---\n{outcome.output}"
        )


def _init_script(work: Path, target: str, kernel: GuestKernel) -> str:
    """The guest's PID 1: mount what the tests need, load modules, run pytest, power off."""
    pytest_argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rA",
        f"--junitxml={work / 'result.xml'}",
        target,
    ]
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        GUEST_ENV: "1",
        GUEST_KERNEL_ENV: str(kernel.binary),
        GUEST_CONFIG_ENV: str(kernel.config),
        GUEST_OURS_ENV: "1" if kernel.self_built else "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HYBRIDNET_TESTBED_LOCK_DIR": "/run/hybridnet-testbed",
    }
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    loads = _module_loads(work, kernel)
    return f"""#!/bin/sh
{exports}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
{loads}
cd {shlex.quote(str(REPO_ROOT))}
{shlex.join(pytest_argv)} > {work / "output.txt"} 2>&1
echo $? > {work / "exit-code"}
sync
poweroff -f
"""


def _module_loads(work: Path, kernel: GuestKernel) -> str:
    """The init script's modprobe lines: none for our kernel, which has everything built in."""
    if kernel.modules is None:
        return ""
    modules_root = work / "modroot"
    (modules_root / "lib").mkdir(parents=True)
    (modules_root / "lib" / "modules").symlink_to(kernel.modules)
    return "\n".join(
        f"modprobe -d {shlex.quote(str(modules_root))} {m} || echo 'modprobe {m} failed'"
        for m in GUEST_MODULES
    )


def run_in_guest(target: str, kernel: GuestKernel | None = None) -> GuestOutcome:
    """Boot user-mode-linux (``kernel``, by default :func:`guest_kernel`'s), run one pytest node
    id in it, and read back its outcome.

    Raises native.NativeBuildError when the XSTATE shim cannot be compiled, NoUmlKernel when
    there is no kernel to boot.
    """
    kernel = kernel or guest_kernel()
    if kernel is None:
        raise NoUmlKernel("no user-mode-linux kernel (make uml-kernel builds one)")
    shim = uml_xstate.shim_library()
    with tempfile.TemporaryDirectory(prefix="hybridnet-uml-") as tmp:
        work = Path(tmp)
        shim_log = work / "xstate-shim.log"
        env = uml_xstate.with_shim(dict(os.environ), shim, shim_log)
        init = work / "init.sh"
        init.write_text(_init_script(work, target, kernel))
        init.chmod(0o755)
        argv = [
            str(kernel.binary),
            "mem=1G",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            "con=null",
            "con0=null,fd:2",
        ]
        console = work / "console.txt"
        with console.open("w") as console_file:
            guest = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console_file,
                stderr=console_file,
                env=env,
                cwd=work,  # a panicking UML aborts: any core file goes with the temp dir
                start_new_session=True,
            )
            try:
                guest.wait(BOOT_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(guest.pid, 9)
                guest.wait()
        output = _read(work / "output.txt") or _read(console)
        outcome = _outcome(work, output)
        outcome.shim_log = uml_xstate.read_shim_log(shim_log)
        if not (work / "result.xml").exists():
            outcome.host = uml_xstate.cpu_facts()
        return outcome


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _outcome(work: Path, output: str) -> GuestOutcome:
    result = work / "result.xml"
    if not result.exists():
        return GuestOutcome("error", "the guest produced no result (did it boot?)", output)
    # The XML is the guest pytest's own junit report, written into our private temp dir.
    cases = ET.parse(result).getroot().iter("testcase")  # noqa: S314
    statuses = []
    for case in cases:
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                statuses.append((tag, found.get("message", "")))
                break
        else:
            statuses.append(("passed", ""))
    if not statuses:
        return GuestOutcome("error", "no test ran in the guest", output)
    for status, message in statuses:
        if status in {"failure", "error"}:
            return GuestOutcome(status, message, output)
    if all(status == "skipped" for status, _ in statuses):
        return GuestOutcome("skipped", statuses[0][1], output)
    return GuestOutcome("passed", "", output)
