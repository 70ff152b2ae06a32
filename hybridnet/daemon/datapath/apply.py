"""Carry out a plan: the only writer of the node-wide datapath (links, sysctls, FDB and
neighbour entries, routes, rules, the nftables table).

Operations run in the plan's order. Routes, rules, neighbour and FDB entries of one kind go
to the kernel together on one netlink socket (see ``hybridnet.netlink.rtnl.sock``); links,
sysctls and the packet filter one at a time. A failed operation is reported, typed and
naming its object, and the rest still run: an object whose link is missing fails alone.

A link is created down, then marked (alias) and brought up; if marking or bringing up
fails it is deleted again, so no half-made device is ever left behind.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
from collections.abc import Callable, Iterator, Sequence

from hybridnet.daemon.datapath import packetfilter, policy_apply
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.errors import (
    ERROR_BY_KIND,
    ApplyError,
    DatapathError,
    PacketFilterError,
    PolicyTableError,
    SysctlError,
)
from hybridnet.daemon.datapath.model import (
    FdbEntry,
    KernelObject,
    Kind,
    Link,
    Neighbour,
    PacketFilter,
    Route,
    Rule,
    Sysctl,
    VlanLink,
    VxlanLink,
)
from hybridnet.daemon.datapath.plan import Action, Operation, Plan
from hybridnet.daemon.datapath.policy_table import KernelForms, PolicyTable
from hybridnet.netlink import nftables, sysctl
from hybridnet.netlink.rtnl import devices, fdb, neighbours, routes, rules, vlan, vxlan, wire
from hybridnet.netlink.rtnl.sock import NetlinkError, RtnlSocket

FAMILY = {4: wire.AF_INET, 6: wire.AF_INET6}
GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV})
"""What the kernel answers a delete of something already gone: the goal is met."""


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    applied: tuple[Operation, ...]
    failures: tuple[ApplyError, ...]


def apply(plan: Plan, config: NodeConfig, forms: KernelForms | None = None) -> ApplyResult:
    """Apply every operation it can; raises DatapathError only when netlink itself is
    unusable (nothing could be tried). ``forms`` learns how the policy chains it writes are
    listed."""
    if plan.empty:
        return ApplyResult((), ())
    try:
        with RtnlSocket() as sock:
            return _Applier(sock, config, forms or KernelForms()).run(plan.operations)
    except OSError as exc:  # the socket, not one request
        raise DatapathError(f"netlink is unusable: {exc}") from exc


def _groups(operations: Sequence[Operation]) -> Iterator[list[Operation]]:
    """Runs of operations of one kind on the same side (deletes, or creates and updates)."""
    for _, group in itertools.groupby(operations, key=_side_and_kind):
        yield list(group)


def _side_and_kind(op: Operation) -> tuple[bool, Kind]:
    return (op.action is Action.DELETE, op.target.kind)


def _error(op: Operation, message: str, code: int | None = None) -> ApplyError:
    cls = ERROR_BY_KIND[op.target.kind]
    return cls(op.target.describe(), f"cannot {op.action}: {message}", code)


class _Applier:
    def __init__(self, sock: RtnlSocket, config: NodeConfig, forms: KernelForms):
        self.sock = sock
        self.forms = forms
        self.protocol = config.numbers.route_protocol
        self.index = {link.name: link.index for link in devices.list_links(sock)}
        self.applied: list[Operation] = []
        self.failures: list[ApplyError] = []

    def run(self, operations: Sequence[Operation]) -> ApplyResult:
        for group in _groups(operations):
            kind = group[0].target.kind
            if kind is Kind.LINK:
                self._one_by_one(group, self._link)
            elif kind is Kind.SYSCTL:
                self._one_by_one(group, self._sysctl)
            elif kind is Kind.PACKET_FILTER:
                self._one_by_one(group, self._packet_filter)
            elif kind is Kind.NETWORK_POLICY:
                self._one_by_one(group, self._policy_table)
            else:
                self._batch(group)
        return ApplyResult(tuple(self.applied), tuple(self.failures))

    def _one_by_one(self, group: list[Operation], action: Callable[[Operation], None]) -> None:
        for op in group:
            try:
                action(op)
            except ApplyError as exc:
                self.failures.append(exc)
            else:
                self.applied.append(op)

    # ------------------------------------------------------------------ batched kinds

    def _batch(self, group: list[Operation]) -> None:
        requests, sent = [], []
        for op in group:
            try:
                requests.append(self._request(op))
            except ApplyError as exc:
                self.failures.append(exc)
            else:
                sent.append(op)
        for op, failure in zip(sent, self.sock.execute(requests), strict=True):
            if failure is None or _tolerated(op, failure.errno or 0):
                self.applied.append(op)
            else:
                self.failures.append(_error(op, str(failure), failure.errno))

    def _index_of(self, op: Operation, name: str) -> int:
        found = self.index.get(name)
        if found is None:
            raise _error(op, f"link {name} does not exist", errno.ENODEV)
        return found

    def _request(self, op: Operation) -> wire.Request:
        target = op.target
        if isinstance(target, Route):
            return self._route(op, target)
        if isinstance(target, Rule):
            return self._rule(op, target)
        if isinstance(target, Neighbour):
            return self._neighbour(op, target)
        if isinstance(target, FdbEntry):
            return self._fdb(op, target)
        raise _error(op, f"no netlink request for {target.kind}")

    def _route(self, op: Operation, route: Route) -> wire.Request:
        if op.action is Action.DELETE:
            return routes.delete(dst=route.dst, table=route.table, protocol=self.protocol)
        return routes.add(
            dst=route.dst,
            table=route.table,
            protocol=self.protocol,
            scope=route.scope,
            kind=route.type,
            oif=None if route.oif is None else self._index_of(op, route.oif),
            gateway=route.gateway,
            prefsrc=route.prefsrc,
            onlink=route.onlink,
            replace=op.action is Action.UPDATE,
        )

    def _rule(self, op: Operation, rule: Rule) -> wire.Request:
        record = rules.RuleRecord(
            family=FAMILY[rule.family],
            priority=rule.priority,
            table=rule.table,
            action=rule.action,
            src=rule.src,
            dst=rule.dst,
            iifname=rule.iifname,
            oifname=rule.oifname,
            fwmark=rule.fwmark,
            fwmask=rule.fwmask,
            tos=rule.tos,
            invert=rule.invert,
        )
        if op.action is Action.DELETE:
            return rules.delete(record)
        return rules.add(record, protocol=self.protocol)

    def _neighbour(self, op: Operation, entry: Neighbour) -> wire.Request:
        ifindex = self._index_of(op, entry.link)
        if op.action is Action.DELETE:
            return neighbours.delete(ifindex=ifindex, address=entry.address, proxy=entry.proxy)
        return neighbours.add(
            ifindex=ifindex,
            address=entry.address,
            lladdr=entry.lladdr,
            protocol=self.protocol,
            replace=op.action is Action.UPDATE,
        )

    def _fdb(self, op: Operation, entry: FdbEntry) -> wire.Request:
        ifindex = self._index_of(op, entry.link)
        if op.action is Action.DELETE:
            return fdb.delete(ifindex=ifindex, mac=entry.mac, dst=entry.dst)
        return fdb.add(ifindex=ifindex, mac=entry.mac, dst=entry.dst)

    # ------------------------------------------------------------------ one at a time

    def _link(self, op: Operation) -> None:
        target = op.target
        if not isinstance(target, Link):
            raise _error(op, "not a link")
        if op.action is Action.DELETE:
            self._netlink(op, devices.delete(self._index_of(op, target.name)), tolerate=GONE)
            self.index.pop(target.name, None)
        elif op.action is Action.UPDATE:
            self._update_link(op, target)
        else:
            self._create_link(op, target)

    def _netlink(
        self, op: Operation, request: wire.Request, tolerate: frozenset[int] = frozenset()
    ) -> None:
        try:
            self.sock.request(request)
        except NetlinkError as exc:
            if exc.errno not in tolerate:
                raise _error(op, str(exc), exc.errno) from exc

    def _update_link(self, op: Operation, link: Link) -> None:
        current = op.current
        mtu = mac = None
        if isinstance(link, VxlanLink) and isinstance(current, VxlanLink):
            mtu = link.mtu if link.mtu != current.mtu else None
            mac = link.mac if link.mac != current.mac else None
        up = link.up if isinstance(link, VxlanLink | VlanLink) else None
        self._netlink(op, devices.configure(self._index_of(op, link.name), up=up, mtu=mtu, mac=mac))

    def _create_link(self, op: Operation, link: Link) -> None:
        if isinstance(link, VxlanLink):
            parent = self._index_of(op, link.parent)
            info = vxlan.encode(vni=link.vni, local=link.local, parent_index=parent, port=link.port)
            request = devices.create(
                name=link.name, kind="vxlan", info_data=info, mtu=link.mtu, mac=link.mac
            )
        elif isinstance(link, VlanLink):
            parent = self._index_of(op, link.parent)
            info = vlan.encode(vlan_id=link.vlan_id)
            request = devices.create(
                name=link.name, kind="vlan", info_data=info, parent_index=parent
            )
        else:
            raise _error(op, f"hybridnet never creates {link.describe()}")
        self._netlink(op, request)
        try:
            created = devices.find(self.sock, link.name)
            if created is None:
                raise _error(op, "the kernel created the link but does not list it")
            self._netlink(op, devices.configure(created.index, up=True, alias=link.alias))
        except BaseException:
            self._remove_half_made(link.name)
            raise
        self.index[link.name] = created.index

    def _remove_half_made(self, name: str) -> None:
        """Best effort: the error being raised is the one worth reporting."""
        try:
            found = devices.find(self.sock, name)
            if found is not None:
                self.sock.request(devices.delete(found.index))
        except NetlinkError:
            pass

    def _sysctl(self, op: Operation) -> None:
        target = op.target
        if not isinstance(target, Sysctl):
            raise _error(op, "not a sysctl")
        try:
            sysctl.write_path(target.path, target.value)
        except OSError as exc:
            raise SysctlError(target.describe(), f"cannot set: {exc}", exc.errno) from exc

    def _packet_filter(self, op: Operation) -> None:
        target = op.target
        if not isinstance(target, PacketFilter):
            raise _error(op, "not a packet filter")
        try:
            if op.action is Action.DELETE:
                nftables.delete_table(target.family, target.name)
                return
            if isinstance(op.current, PacketFilter) and self._change_elements(op.current, target):
                return
            nftables.replace_table(target.family, target.name, packetfilter.to_nft(target))
        except nftables.NftError as exc:
            raise PacketFilterError(target.describe(), str(exc)) from exc

    def _policy_table(self, op: Operation) -> None:
        target = op.target
        if not isinstance(target, PolicyTable):
            raise _error(op, "not a policy table")
        current = op.current if isinstance(op.current, PolicyTable) else None
        try:
            if op.action is Action.DELETE:
                nftables.delete_table(policy_apply.FAMILY, target.name)
            else:
                policy_apply.write(target, current, self.forms)
        except nftables.NftError as exc:
            raise PolicyTableError(target.describe(), str(exc)) from exc

    def _change_elements(self, current: PacketFilter, target: PacketFilter) -> bool:
        """Only set elements differ: delete and add just those, in one transaction. False
        when more differs, or when nft refuses (the table is then replaced whole)."""
        commands = packetfilter.element_changes(current, target)
        if commands is None:
            return False
        try:
            nftables.transaction(commands, f"update sets of {target.describe()}")
        except nftables.NftError:
            return False
        return True


def _tolerated(op: Operation, code: int) -> bool:
    if op.action is Action.DELETE:
        return code in GONE
    # An identical rule, or a proxy entry for the address, already exists: the goal is met.
    target: KernelObject = op.target
    proxy = isinstance(target, Neighbour) and target.proxy
    return code == errno.EEXIST and (isinstance(target, Rule) or proxy)
