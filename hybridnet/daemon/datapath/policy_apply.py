"""Write the NetworkPolicy table: the minimal difference when the kernel's table is one the
daemon wrote, else the whole table; each one nft transaction, so the kernel switches from the
old table to the new one at once, and a refused write leaves the old one whole.

Called by the applier (hybridnet.daemon.datapath.apply) only. Runs in the calling thread's
network namespace, like every nft call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hybridnet.daemon.datapath.policy_table import FAMILY, KernelForms, PolicyTable
from hybridnet.logs import fields
from hybridnet.netlink import nftables
from hybridnet.policy import render
from hybridnet.policy.render import NftChain

__all__ = ["FAMILY", "write"]

log = logging.getLogger(__name__)


def write(target: PolicyTable, current: PolicyTable | None, forms: KernelForms) -> None:
    """Make the kernel's table ``target``; ``current`` is the kernel's table as observed
    (None: there is none). Raises nftables.NftError when even the whole table is refused
    (the kernel then holds what it held before)."""
    if current is not None and current.base_intact:
        try:
            _update(current, target, forms)
        except (render.RenderError, nftables.NftError) as exc:
            # The table changed since it was observed, or a set's type did: start over.
            log.info(
                "policy table not updated in place, replacing it",
                extra=fields(table=target.name, reason=str(exc)),
            )
        else:
            return
    script = render.full_script(target.ruleset)
    nftables.script(script, f"replace table {FAMILY} {target.name}")
    _learn(target, target.ruleset.chains, full=True, forms=forms)


def _update(current: PolicyTable, target: PolicyTable, forms: KernelForms) -> None:
    script = render.update_script(current.ruleset, target.ruleset)
    if not script:
        return
    nftables.script(script, f"update table {FAMILY} {target.name}")
    held = {chain.name: chain.rules for chain in current.ruleset.chains}
    written = [c for c in target.ruleset.chains if held.get(c.name) != c.rules]
    _learn(target, written, full=False, forms=forms)


def _learn(
    target: PolicyTable, written: Sequence[NftChain], *, full: bool, forms: KernelForms
) -> None:
    """Teach ``forms`` how nft lists the chains just written (one listing of the table; a
    failure to list only leaves them unknown, and the next reconcile refills them)."""
    try:
        listing = nftables.list_table(FAMILY, target.name) or []
    except nftables.NftError as exc:
        log.warning("cannot list the policy table just written", extra=fields(error=str(exc)))
        return
    forms.learn(written, listing, full=full)
    forms.keep_only(target.ruleset.chains)
