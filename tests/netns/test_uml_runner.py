"""The user-mode-linux runner carries a guest test's pass, failure and output back out.

UML always runs with the XSTATE shim preloaded (tests/netns/uml_xstate.py); a guest that never
produces a result is a failure reported with its console and the host's CPU facts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import native, uml, uml_xstate

CUT_SOURCE = Path(__file__).resolve().parent / "xstate_cut.c"

GUEST_TESTS = """
import os

from tests.netns import uml

def test_runs_in_the_uml_kernel_with_8021q():
    assert os.environ.get("HYBRIDNET_UML_GUEST") == "1"
    assert uml.host_has_8021q()  # a VLAN device made: built in (ours) or loaded (Debian's)

def test_fails_on_purpose():
    print("guest says hello")
    assert 1 + 1 == 3, "deliberate failure"
"""


@pytest.fixture
def uml_in_use() -> None:
    if uml.host_has_8021q():
        pytest.skip("this kernel has 8021q natively: user-mode-linux is not used here")
    if uml.guest_kernel() is None:
        pytest.skip("no user-mode-linux kernel (make uml-kernel)")


@pytest.fixture
def guest_tests(uml_in_use: None, tmp_path: Path) -> Path:
    path = tmp_path / "test_guest.py"
    path.write_text(GUEST_TESTS)
    return path


@pytest.mark.root
def test_a_passing_guest_test_passes(guest_tests: Path) -> None:
    outcome = uml.run_in_guest(f"{guest_tests}::test_runs_in_the_uml_kernel_with_8021q")
    assert outcome.status == "passed", outcome.output
    # UML ran with the shim, and the shim saw its XSTATE calls and learned the host's size.
    host_size = uml_xstate.run_probe("facts")["ptrace_xstate_bytes"]
    assert outcome.shim_log.get("full_size") == host_size, outcome.shim_log


@pytest.mark.root
def test_a_failing_guest_test_fails_with_its_output(guest_tests: Path) -> None:
    outcome = uml.run_in_guest(f"{guest_tests}::test_fails_on_purpose")
    assert outcome.status == "failure"
    assert "deliberate failure" in outcome.message
    assert "guest says hello" in outcome.output


@pytest.mark.root
def test_a_guest_that_dies_at_init_fails_with_its_console_and_the_cpu_facts(
    guest_tests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real boot failure on any host: an init that exits makes the guest kernel panic, as
    # the AMX failure does ("Attempted to kill init!").
    monkeypatch.setattr(uml, "_init_script", lambda work, target, kernel: DYING_INIT)
    outcome = uml.run_in_guest(f"{guest_tests}::test_runs_in_the_uml_kernel_with_8021q")
    assert outcome.status == "error"
    assert "init ran and exits" in outcome.output
    assert "Attempted to kill init" in outcome.output
    assert outcome.host is not None
    report = str(uml.UmlTestFailure(outcome))
    amx = "yes" if "amx_tile" in Path("/proc/cpuinfo").read_text() else "no"
    assert f"amx_tile: {amx}" in report
    host_size = uml_xstate.run_probe("facts")["ptrace_xstate_bytes"]
    assert f"XSAVE size: {host_size} bytes by PTRACE_GETREGSET" in report
    assert f"host kernel: {os.uname().release}" in report
    assert f"XSTATE shim: learned the host's size, {host_size} bytes" in report


@pytest.fixture
def xstate_cut_below_the_host_size(uml_in_use: None, monkeypatch: pytest.MonkeyPatch) -> int:
    """UML's XSTATE SETREGSETs cut to 8 bytes under this host's XSAVE size (xstate_cut.c):
    what an AMX host's 11,008 bytes do to UML's 2,696, reproduced on this CPU."""
    cut = native.build_shared_library(CUT_SOURCE)
    cut_bytes = int(uml_xstate.run_probe("facts")["ptrace_xstate_bytes"]) - 8
    monkeypatch.setenv("LD_PRELOAD", str(cut))
    monkeypatch.setenv("HYBRIDNET_XSTATE_CUT_BYTES", str(cut_bytes))
    return cut_bytes


@pytest.mark.root
def test_without_the_shim_a_too_short_xstate_buffer_kills_uml_at_init(
    guest_tests: Path, xstate_cut_below_the_host_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test below: the runner's preload of the shim undone, the cut alone.
    monkeypatch.setattr(uml_xstate, "with_shim", lambda env, shim, log: env)
    outcome = uml.run_in_guest(f"{guest_tests}::test_runs_in_the_uml_kernel_with_8021q")
    assert outcome.status == "error"
    assert "ptrace set fp regs failed, errno = 14" in outcome.output
    assert "Attempted to kill init" in outcome.output
    assert outcome.host is not None


@pytest.mark.root
def test_with_the_shim_uml_boots_although_its_xstate_buffer_is_too_short(
    guest_tests: Path, xstate_cut_below_the_host_size: int
) -> None:
    outcome = uml.run_in_guest(f"{guest_tests}::test_runs_in_the_uml_kernel_with_8021q")
    assert outcome.status == "passed", outcome.output
    assert outcome.shim_log.get("first_padded_set_bytes") == str(xstate_cut_below_the_host_size)


DYING_INIT = """#!/bin/sh
echo init ran and exits
exit 3
"""

AMX_HOST_CONSOLE = """Linux version 6.1.0-35-um (debian-kernel@lists.debian.org)
Kernel command line: mem=1G root=/dev/root rootfstype=hostfs rootflags=/ rw init=/tmp/x/init.sh
userspace - ptrace set fp regs failed, errno = 14
Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b
"""


def test_the_report_of_a_guest_that_never_booted_names_the_cpu_facts(tmp_path: Path) -> None:
    outcome = uml._outcome(tmp_path, AMX_HOST_CONSOLE)  # no result.xml: the guest gave none
    outcome.shim_log = {"full_size": "11008", "first_padded_set_bytes": "2696"}
    outcome.host = uml_xstate.CpuFacts(
        kernel_release="6.18.44-test",
        cpu_model="Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
        amx_tile=True,
        xsave={
            "cpuid_xsave_enabled_bytes": "11008",
            "cpuid_xsave_max_bytes": "11008",
            "xcr0": "0x602e7",
            "ptrace_xstate_bytes": "11008",
        },
    )
    report = str(uml.UmlTestFailure(outcome)).splitlines()
    assert (
        report[0]
        == "test error inside user-mode-linux: the guest produced no result (did it boot?)"
    )
    assert report[1:6] == [
        "--- host ---",
        "host kernel: 6.18.44-test",
        "CPU: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, amx_tile: yes",
        "XSAVE size: 11008 bytes by PTRACE_GETREGSET NT_X86_XSTATE, 11008 by CPUID leaf 0xD"
        " (max 11008), XCR0 0x602e7",
        "XSTATE shim: learned the host's size, 11008 bytes; padded UML's 2696-byte SETREGSETs",
    ]
    assert report[6] == "--- guest output ---"
    assert report[7:] == AMX_HOST_CONSOLE.splitlines()


def test_the_report_says_why_the_xsave_size_is_unknown(tmp_path: Path) -> None:
    outcome = uml._outcome(tmp_path, AMX_HOST_CONSOLE)
    outcome.host = uml_xstate.CpuFacts(
        kernel_release="6.18.44-test",
        cpu_model="unknown",
        amx_tile=None,
        xsave={},
        xsave_unknown_because="xstate_probe facts exited 2: fork: Resource temporarily unavailable",
    )
    report = str(uml.UmlTestFailure(outcome))
    assert "CPU: unknown, amx_tile: unknown" in report
    assert "XSAVE size: unknown (xstate_probe facts exited 2: fork:" in report
    assert "XSTATE shim: loaded, but UML made no PTRACE_SETREGSET NT_X86_XSTATE call" in report


@pytest.mark.root
def test_without_a_compiler_the_8021q_test_fails_naming_the_packages(
    uml_in_use: None, tmp_path: Path
) -> None:
    # PATH keeps what collection and the runner need before the build (ip, linux.uml) and
    # lacks cc; an empty HOME means an empty build cache.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("ip", uml.UML_KERNEL):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(tools), "HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/netns/test_vlan_8021q.py",
        ],
        cwd=uml.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "FAILURES" in line) + 2  # past the title
    end = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    # The failure is the one message, not a traceback into the runner.
    assert lines[start:end] == [
        "cannot build uml_xstate_shim.c: no C compiler ('cc' is not on PATH); install the "
        "Debian packages gcc libc6-dev (apt-get install -y gcc libc6-dev; make deps does)"
    ]
