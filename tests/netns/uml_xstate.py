"""The XSAVE side of user-mode-linux: the ptrace shim it always runs with, and the CPU facts.

Debian's ``linux.uml`` restores its guest processes' FPU state with a fixed 2,696-byte
``PTRACE_SETREGSET NT_X86_XSTATE``; a host whose XSAVE area is larger (AMX: 11,008 bytes)
answers EFAULT and the guest panics at init. ``uml_xstate_shim.c``, preloaded into UML, pads
those calls to the host's size (it is a pass-through wherever the buffer fits). When a boot
fails anyway, :func:`cpu_facts` says what the host's XSAVE state looks like, via
``xstate_probe.c``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.netns import native

HERE = Path(__file__).resolve().parent
SHIM_SOURCE = HERE / "uml_xstate_shim.c"
PROBE_SOURCE = HERE / "xstate_probe.c"
CPUINFO = Path("/proc/cpuinfo")
SHIM_LOG_ENV = "HYBRIDNET_XSTATE_SHIM_LOG"


class ProbeError(Exception):
    """xstate_probe could not look at the state (it says why on stderr)."""


def shim_library() -> Path:
    return native.build_shared_library(SHIM_SOURCE)


def probe_program() -> Path:
    return native.build_program(PROBE_SOURCE)


def with_shim(env: dict[str, str], shim: Path, log: Path) -> dict[str, str]:
    """``env`` with the shim in LD_PRELOAD and its log (see uml_xstate_shim.c) at ``log``.

    Anything already preloaded stays, in front: the shim goes last, next to libc, so it sees
    each ptrace call exactly as libc would.
    """
    preloaded = env.get("LD_PRELOAD")
    return {
        **env,
        "LD_PRELOAD": f"{preloaded} {shim}" if preloaded else str(shim),
        SHIM_LOG_ENV: str(log),
    }


def read_shim_log(log: Path) -> dict[str, str]:
    """The shim's ``key=value`` lines; the first of each key (forked children may repeat)."""
    entries: dict[str, str] = {}
    if log.exists():
        for line in _key_value_lines(log.read_text(errors="replace")):
            entries.setdefault(*line)
    return entries


def describe_shim_log(entries: dict[str, str]) -> str:
    if "full_size" not in entries:
        return "XSTATE shim: loaded, but UML made no PTRACE_SETREGSET NT_X86_XSTATE call"
    padded = entries.get("first_padded_set_bytes")
    what = f"padded UML's {padded}-byte SETREGSETs" if padded else "no call needed padding"
    return f"XSTATE shim: learned the host's size, {entries['full_size']} bytes; {what}"


def run_probe(
    *args: str, preload: Path | None = None, shim_log: Path | None = None
) -> dict[str, str]:
    """Run xstate_probe (with the shim ``preload``ed, or nothing preloaded) and parse it."""
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    if preload is not None:
        env = with_shim(env, preload, shim_log or Path(os.devnull))
    result = subprocess.run(
        [str(probe_program()), *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise ProbeError(
            f"xstate_probe {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return dict(_key_value_lines(result.stdout))


def _key_value_lines(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, sep, value in (line.partition("=") for line in text.splitlines())
        if sep
    ]


@dataclass(frozen=True)
class CpuFacts:
    """What decides whether UML's fixed-size XSTATE buffer fits this host."""

    kernel_release: str
    cpu_model: str
    amx_tile: bool | None  # None: /proc/cpuinfo had no flags line
    xsave: dict[str, str]  # xstate_probe facts; empty when it could not run
    xsave_unknown_because: str = ""

    def describe(self) -> str:
        amx = {True: "yes", False: "no", None: "unknown"}[self.amx_tile]
        lines = [
            f"host kernel: {self.kernel_release}",
            f"CPU: {self.cpu_model}, amx_tile: {amx}",
        ]
        if self.xsave:
            lines.append(
                "XSAVE size: "
                f"{self.xsave.get('ptrace_xstate_bytes', '?')} bytes by PTRACE_GETREGSET "
                f"NT_X86_XSTATE, {self.xsave.get('cpuid_xsave_enabled_bytes', '?')} by CPUID "
                f"leaf 0xD (max {self.xsave.get('cpuid_xsave_max_bytes', '?')}), "
                f"XCR0 {self.xsave.get('xcr0', '?')}"
            )
        else:
            lines.append(f"XSAVE size: unknown ({self.xsave_unknown_because})")
        return "\n".join(lines)


def cpu_facts() -> CpuFacts:
    model, flags = _cpuinfo()
    xsave: dict[str, str] = {}
    why = ""
    if platform.machine() != "x86_64":
        why = f"not an x86-64 host ({platform.machine()})"
    else:
        try:
            xsave = run_probe("facts")
        except (native.NativeBuildError, ProbeError) as error:
            why = str(error)
    return CpuFacts(
        kernel_release=platform.release(),
        cpu_model=model,
        amx_tile=None if flags is None else "amx_tile" in flags,
        xsave=xsave,
        xsave_unknown_because=why,
    )


def _cpuinfo() -> tuple[str, set[str] | None]:
    """The first CPU's model name and flags (all CPUs of a host share them)."""
    model, flags = "unknown", None
    try:
        text = CPUINFO.read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            flags = set(value.split())
    return model, flags
