"""The XSTATE shim UML runs with: untouched calls where sizes fit, a faithful pad where not.

Runs on any x86-64 host, AMX or not, without root (a process may trace its own child). The
padding path is driven by the kernel's own rule: xstateregs_set refuses a PTRACE_SETREGSET
NT_X86_XSTATE whose buffer is shorter than the full XSAVE size with EFAULT on every CPU, which
is exactly what an AMX host answers UML's 2,696 bytes. xstate_probe.c issues such calls against
a traced child, with and without the shim preloaded, and reports what the kernel did.
"""

from __future__ import annotations

import errno
import platform
from pathlib import Path

import pytest

from tests.netns import native, uml_xstate

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="NT_X86_XSTATE is an x86-64 regset"
)

SHORT_LENGTHS = (576, 1024)  # the legacy area + XSAVE header; and a cut inside AVX-512 state


@pytest.fixture(scope="module")
def shim() -> Path:
    try:
        return uml_xstate.shim_library()
    except native.NativeBuildError as error:
        pytest.fail(str(error), pytrace=False)


def probe(*args: str, preload: Path | None = None, shim_log: Path | None = None) -> dict[str, str]:
    try:
        return uml_xstate.run_probe(*args, preload=preload, shim_log=shim_log)
    except native.NativeBuildError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def full_size() -> int:
    return int(probe("facts")["ptrace_xstate_bytes"])


def short_length(length: int, full_size: int) -> str:
    if length >= full_size:
        pytest.skip(f"this CPU's XSAVE area is only {full_size} bytes")
    return str(length)


def test_full_size_calls_reach_the_kernel_unchanged(
    shim: Path, full_size: int, tmp_path: Path
) -> None:
    log = tmp_path / "shim.log"
    found = probe("set", "0", preload=shim, shim_log=log)
    assert found["shim"] == "present"
    assert found["length"] == str(full_size)
    assert (found["get_rc"], found["get_length"]) == ("0", str(full_size))
    assert (found["set_rc"], found["set_errno"]) == ("0", "0")
    assert found["prefix_round_trip"] == "yes"
    assert found["shim_padded_sets"] == "0"
    assert found["shim_full_size"] == str(full_size)
    assert uml_xstate.read_shim_log(log) == {"full_size": str(full_size)}


@pytest.mark.parametrize("length", SHORT_LENGTHS)
def test_without_the_shim_the_kernel_refuses_a_short_set(length: int, full_size: int) -> None:
    found = probe("set", short_length(length, full_size))
    assert found["shim"] == "absent"
    # A short GETREGSET is fine (the kernel writes the prefix); the SETREGSET is not.
    assert (found["get_rc"], found["get_length"]) == ("0", str(length))
    assert (found["set_rc"], found["set_errno"]) == ("-1", str(errno.EFAULT))
    assert found["prefix_round_trip"] == "no"


@pytest.mark.parametrize("length", SHORT_LENGTHS)
def test_the_shim_pads_a_short_set_and_the_prefix_lands(
    shim: Path, length: int, full_size: int, tmp_path: Path
) -> None:
    log = tmp_path / "shim.log"
    found = probe("set", short_length(length, full_size), preload=shim, shim_log=log)
    assert (found["set_rc"], found["set_errno"]) == ("0", "0")
    assert found["set_length"] == str(length), "the caller's iovec must be left as it was"
    assert found["prefix_round_trip"] == "yes"
    assert found["shim_padded_sets"] == "1"
    assert found["shim_full_size"] == str(full_size)
    assert uml_xstate.read_shim_log(log) == {
        "full_size": str(full_size),
        "first_padded_set_bytes": str(length),
    }


@pytest.mark.parametrize("length", SHORT_LENGTHS)
def test_the_shim_keeps_the_state_past_the_callers_buffer(
    shim: Path, length: int, full_size: int
) -> None:
    found = probe("set", short_length(length, full_size), preload=shim)
    if found["tail_component"] == "0":
        pytest.skip(f"no AVX register component lies past {length} bytes on this CPU")
    assert (found["seed_rc"], found["seed_errno"]) == ("0", "0")
    assert found["set_rc"] == "0"
    assert found["tail_kept"] == "yes"
