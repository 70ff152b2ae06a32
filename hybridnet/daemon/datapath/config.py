"""The node's datapath settings: interfaces, table and priority numbers, marks.

Every number is configurable so that it never collides with the site's own policy routing;
the defaults keep the pod attachment's (``attachment.DatapathConfig``) local-pod table and
rule, and sit in ranges that distributions and other CNIs leave alone. Nothing here imports
the datapath itself: the daemon's command line (its probes included) reads these defaults.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

LINUX_MAX_TABLE = 0xFFFFFFFF
RESERVED_TABLES = frozenset({0, 253, 254, 255})  # unspec, default, main, local
MAX_RULE_PRIORITY = 32765
"""Rules at 32766 (main) and 32767 (default) are the kernel's."""
LOCAL_POD_TABLE = 39999
"""The table of this node's pod routes (the pod attachment writes them)."""
LOCAL_POD_RULE_PRIORITY = 19999
"""The priority of the rule that looks that table up."""


class ConfigError(ValueError):
    """A datapath setting is unusable; raised when the configuration is built."""


@dataclasses.dataclass(frozen=True)
class RoutingNumbers:
    """Tables and rule priorities. Rules are consulted in priority order, lowest first::

        local_pod_priority   from all lookup local_pod_table     pods on this node
        overlay_priority     from all lookup overlay_table       overlay subnets, via VXLAN
        subnet_priority      from <subnet> lookup <its table>    one per subnet of the node
        32766                from all lookup main                the node's own routes

    Every rule whose priority lies in [local_pod_priority, subnet_priority] is hybridnet's
    (observe owns them, plan deletes the ones not desired): keep that range free of the
    site's rules. Subnet tables are drawn from [subnet_table_first, subnet_table_last]; every
    route hybridnet writes carries ``route_protocol`` (``ip route show proto N``), and only
    routes with it are ever changed or deleted.
    """

    local_pod_table: int = LOCAL_POD_TABLE
    overlay_table: int = 40000
    subnet_table_first: int = 10000
    subnet_table_last: int = 39998
    local_pod_priority: int = LOCAL_POD_RULE_PRIORITY
    overlay_priority: int = 20000
    subnet_priority: int = 20001
    route_protocol: int = 104
    """Unassigned in iproute2's rt_protos (kernel 2 ... eigrp 192)."""

    def __post_init__(self) -> None:
        if not (
            0
            < self.local_pod_priority
            < self.overlay_priority
            < self.subnet_priority
            <= MAX_RULE_PRIORITY
        ):
            raise ConfigError(
                "rule priorities must rise local-pod < overlay < subnet, all in 1-32765: "
                f"{self.local_pod_priority}, {self.overlay_priority}, {self.subnet_priority}"
            )
        if not 0 < self.subnet_table_first <= self.subnet_table_last <= LINUX_MAX_TABLE:
            raise ConfigError(
                f"subnet tables {self.subnet_table_first}-{self.subnet_table_last} are not a range"
            )
        fixed = {self.local_pod_table, self.overlay_table}
        if len(fixed) != 2 or fixed & RESERVED_TABLES:
            raise ConfigError(f"tables {sorted(fixed)} must differ and not be 0/253/254/255")
        for table in fixed:
            if self.subnet_table_first <= table <= self.subnet_table_last:
                raise ConfigError(f"table {table} lies inside the subnet table range")
        if RESERVED_TABLES & set(
            range(self.subnet_table_first, min(self.subnet_table_last, 255) + 1)
        ):
            raise ConfigError("the subnet table range must not include 253, 254 or 255")
        if not 5 <= self.route_protocol <= 255:
            raise ConfigError(f"route protocol {self.route_protocol} is not in 5-255")

    @property
    def owned_priorities(self) -> range:
        return range(self.local_pod_priority, self.subnet_priority + 1)

    @property
    def subnet_tables(self) -> int:
        return self.subnet_table_last - self.subnet_table_first + 1


VXLAN_DEFAULT_PORT = 8472
"""The Linux kernel's historical VXLAN port, which the reference uses (IANA's is 4789)."""


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """What the node's operator decides: which interfaces carry what."""

    underlay_interface: str | None = None
    """The parent of underlay VLAN sub-interfaces (and the BGP underlay's interface)."""
    vtep_interface: str | None = None
    """The interface VXLAN packets leave by; its address is the local VTEP by default."""
    vtep_address: str | None = None
    """The local VTEP address, when not the first global address of ``vtep_interface``."""
    vxlan_port: int = VXLAN_DEFAULT_PORT
    numbers: RoutingNumbers = dataclasses.field(default_factory=RoutingNumbers)
    nft_table: str = "hybridnet"
    """The nftables table (family inet) hybridnet owns and replaces whole."""
    policy_table: str = "hybridnet-policy"
    """The nftables table (family inet) NetworkPolicy is enforced in, also hybridnet's own."""

    def __post_init__(self) -> None:
        if not 1 <= self.vxlan_port <= 65535:
            raise ConfigError(f"VXLAN port {self.vxlan_port} is not in 1-65535")
        if self.vtep_address is not None:
            try:
                ipaddress.ip_address(self.vtep_address)
            except ValueError as exc:
                raise ConfigError(f"VTEP address {self.vtep_address!r}: {exc}") from exc
        for table in (self.nft_table, self.policy_table):
            if not _PLAIN_TABLE.match(table):
                raise ConfigError(f"nftables table name {table!r} is not a plain name")
        if self.nft_table == self.policy_table:
            raise ConfigError(f"the masquerade and policy tables are both {self.nft_table!r}")


_PLAIN_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
"""What nft takes as a table name without quoting (a letter first)."""
