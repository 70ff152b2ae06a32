"""nftables through the ``nft`` command's JSON interface (``nft -j``), one table at a time.

``replace_table`` hands nft one transaction that creates the table if missing, deletes it and
builds it again, so the kernel switches from the old ruleset to the new one atomically and a
failure leaves the old one in place. Nothing outside the named table is ever listed or
changed. ``nft`` runs in the calling thread's network namespace.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

NFT = "nft"
TIMEOUT_SECONDS = 30.0


class NftError(Exception):
    """nft refused a command or could not run; the message carries what it printed."""


class NftUnavailable(NftError):
    """There is no nftables here: no ``nft`` command, or a kernel without nf_tables."""


KERNEL_WITHOUT_NFTABLES = "Protocol not supported"
"""What nft prints when the kernel has no nf_tables netlink family (EPROTONOSUPPORT)."""


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [NFT, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise NftUnavailable(f"{NFT} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise NftError(f"{NFT} {' '.join(args)} did not finish in {TIMEOUT_SECONDS}s") from exc


def list_table(family: str, name: str) -> list[dict[str, Any]] | None:
    """The table's objects as nft lists them (``{"table": ...}``, ``{"set": ...}``,
    ``{"chain": ...}``, ``{"rule": ...}``), None when there is no such table."""
    done = _run(["-j", "list", "table", family, name])
    if done.returncode != 0:
        if "No such file or directory" in done.stderr:
            return None
        failure = f"nft list table {family} {name}: {done.stderr.strip()}"
        if KERNEL_WITHOUT_NFTABLES in done.stderr:
            raise NftUnavailable(failure)
        raise NftError(failure)
    listing = json.loads(done.stdout)["nftables"]
    return [item for item in listing if "metainfo" not in item]


def replace_table(family: str, name: str, content: list[dict[str, Any]]) -> None:
    """Make the table exactly ``content`` (objects as :func:`list_table` returns them,
    without handles) in one atomic transaction."""
    table = {"family": family, "name": name}
    commands: list[dict[str, Any]] = [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
        *({"add": item} for item in content),
    ]
    transaction(commands, f"replace table {family} {name}")


def delete_table(family: str, name: str) -> None:
    """Remove the table; absent is fine (created empty first, in the same transaction)."""
    table = {"family": family, "name": name}
    transaction(
        [{"add": {"table": table}}, {"delete": {"table": table}}], f"delete {family} {name}"
    )


def script(text: str, what: str) -> None:
    """Run a script in nft's own syntax (``nft -f``) as one transaction: all of it takes
    effect, or none. (Not echoed: a large transaction's echo overflows the netlink socket and
    fails it with ENOBUFS.)"""
    done = _run(["-f", "-"], stdin=text)
    if done.returncode != 0:
        failure = f"nft {what}: {done.stderr.strip()}"
        if KERNEL_WITHOUT_NFTABLES in done.stderr:
            raise NftUnavailable(failure)
        raise NftError(failure)


def list_counters(family: str, table: str) -> list[dict[str, Any]] | None:
    """The named counters of a table (``{"counter": {"name", "packets", "bytes", ...}}``),
    None when there is no such table."""
    done = _run(["-j", "list", "counters", "table", family, table])
    if done.returncode != 0:
        if "No such file or directory" in done.stderr:
            return None
        raise NftError(f"nft list counters table {family} {table}: {done.stderr.strip()}")
    listing = json.loads(done.stdout)["nftables"]
    return [item for item in listing if "metainfo" not in item]


def transaction(commands: list[dict[str, Any]], what: str) -> None:
    """Run nft JSON commands as one transaction: all of them take effect, or none."""
    done = _run(["-j", "-f", "-"], stdin=json.dumps({"nftables": commands}))
    if done.returncode != 0:
        raise NftError(f"nft {what}: {done.stderr.strip()}")
