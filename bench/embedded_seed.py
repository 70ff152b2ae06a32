"""Seed an embedded (SQLite) store with the pod network ``pods`` and its subnet.

Run as a script by a tree's interpreter set-up (bench/trees.py), so the store file is written by
the same ``hybridnet`` package whose daemon then opens it:

    python bench/embedded_seed.py STORE_FILE CIDR
"""

from __future__ import annotations

import sys

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Network, NetworkSpec, Subnet, SubnetSpec
from hybridnet.store.sqlite import SQLiteStore

POD_NETWORK = "pods"


def main(argv: list[str]) -> int:
    path, cidr = argv
    store = SQLiteStore(path)
    try:
        spec = NetworkSpec(type="Overlay", mode="VXLAN", net_id=5)
        store.create(Network(ObjectMeta(name=POD_NETWORK), spec))
        subnet = SubnetSpec(network=POD_NETWORK, range=AddressRange(version="4", cidr=cidr))
        store.create(Subnet(ObjectMeta(name=f"{POD_NETWORK}-v4"), subnet))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
