"""Shell completion: the scripts offer the commands, flags and choices the parser has."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest

from hybridnet.ctl.main import run


def script(shell: str) -> str:
    out = io.StringIO()
    assert run(["completion", shell], out, io.StringIO()) == 0
    return out.getvalue()


def complete_bash(words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` (the word being typed)."""
    array = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script('bash')}\nCOMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; "
        '_hybridnet_ctl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True, check=True
    )
    assert done.stderr == ""
    return done.stdout.split()


def test_bash_offers_groups_verbs_flags_and_choices() -> None:
    assert complete_bash(["hybridnet-ctl", "n"]) == ["network", "node"]
    assert complete_bash(["hybridnet-ctl", "network", ""]) == [
        "-h", "--help", "create", "list", "get", "delete"
    ]  # fmt: skip
    assert "--auto-nat-outgoing" in complete_bash(["hybridnet-ctl", "subnet", "create", "s", "--"])
    typed = ["hybridnet-ctl", "--store", "x.db", "network", "create", "n", "--type", ""]
    assert complete_bash(typed) == ["Underlay", "Overlay", "GlobalBGP"]
    assert complete_bash(["hybridnet-ctl", "ip", "list", "-o", "j"]) == ["json"]
    assert complete_bash(["kubectl-hybridnet", "ipam", "check", "--net"]) == []


def test_bash_registers_both_commands() -> None:
    done = subprocess.run(
        ["bash", "--norc", "-c", f"{script('bash')}\ncomplete -p"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert set(done.stdout.splitlines()) == {
        "complete -F _hybridnet_ctl hybridnet-ctl",
        "complete -F _hybridnet_ctl kubectl-hybridnet",
    }


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (make deps)")
def test_zsh_loads_it_through_bashcompinit() -> None:
    program = f"{script('zsh')}\nprint -r -- $_comps[hybridnet-ctl]"
    done = subprocess.run(
        ["zsh", "-f", "-c", program], capture_output=True, text=True, check=True,
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert "_hybridnet_ctl" in done.stdout, done
