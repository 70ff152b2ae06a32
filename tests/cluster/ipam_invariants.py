"""What must hold of the stored IPInstances when the dust settles, however many managers served
the pods: each pod holds exactly one address of each family it asked for, no address is held
twice, and every manager's allocator agrees with storage.

The checks return every violation they find (an empty list when all is well), so a failing test
shows them all. They do not rely on the store's own guarantee that an IPInstance's name is its
address: that is one of the things they check, and duplicates are found by the address in the
spec, so a bug that wrote an address under another name would show.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from hybridnet.api import constants as c
from hybridnet.api.resources import IPInstance
from hybridnet.ipamstore import ipinstances

FAMILIES = {4: "IPv4", 6: "IPv6"}


def stored_problems(instances: Iterable[IPInstance], expected: Mapping[str, set[int]]) -> list[str]:
    """Violations in ``instances`` (those of the test's subnets) given ``expected``: each pod
    (``namespace/name``) and the IP versions it must hold, one address of each."""
    problems: list[str] = []
    holders: dict[str, list[str]] = defaultdict(list)  # address -> "owner (instance name)"
    held: dict[tuple[str, int], list[str]] = defaultdict(list)  # (owner, version) -> addresses
    for instance in instances:
        problems += instance_problems(instance)
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            address = ipinstances.address_of(instance)
            holders[address].append(f"{owner} ({instance.name})")
            held[(owner, int(instance.spec.address.version))].append(address)

    for address, by in sorted(holders.items()):
        if len(by) > 1:
            problems.append(f"{address} is held {len(by)} times: by {', '.join(sorted(by))}")
    for (owner, version), addresses in sorted(held.items()):
        family = FAMILIES.get(version, f"version {version}")
        if owner not in expected:
            problems.append(f"{owner} is not a pod of the test but holds {sorted(addresses)}")
        elif version not in expected[owner]:
            problems.append(f"{owner} holds {family} {sorted(addresses)} it did not ask for")
        if len(addresses) > 1:
            problems.append(f"{owner} holds {len(addresses)} {family} addresses: {addresses}")
    for owner, versions in sorted(expected.items()):
        for version in sorted(versions):
            if (owner, version) not in held:
                problems.append(f"{owner} holds no {FAMILIES[version]} address")
    return problems


def instance_problems(instance: IPInstance) -> list[str]:
    """What is wrong with one IPInstance on its own: a name that is not its address, no pod
    binding, a pod label that names another pod than the binding."""
    problems = []
    address = ipinstances.address_of(instance)
    if instance.name != ipinstances.instance_name(address):
        problems.append(f"IPInstance {instance.name} holds {address}: not the name of it")
    owner = ipinstances.owner_of(instance)
    binding = instance.spec.binding
    if owner is None or binding is None:
        problems.append(f"IPInstance {instance.name} ({address}) is bound to no pod")
        return problems
    pod_label = instance.metadata.labels.get(c.LABEL_POD)
    if pod_label != ipinstances.label_value(binding.pod_name or ""):
        problems.append(
            f"IPInstance {instance.name} is bound to {owner} but labelled for pod {pod_label}"
        )
    return problems


def allocator_problems(
    who: str,
    believed: Callable[[str], Iterable[str]],
    instances: Iterable[IPInstance],
    owners: Iterable[str],
) -> list[str]:
    """Where a manager's view (``believed``: owner -> the addresses its allocator gives that
    owner) differs from storage, for each of ``owners``. A manager that thinks a pod holds an
    address stored for another pod would hand it out again once the other pod is gone."""
    stored: dict[str, set[str]] = defaultdict(set)
    for instance in instances:
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            stored[owner].add(ipinstances.address_of(instance))
    problems = []
    for owner in sorted(owners):
        thinks = set(believed(owner))
        if thinks != stored[owner]:
            says = sorted(stored[owner])
            problems.append(f"{who} believes {owner} holds {sorted(thinks)}; storage says {says}")
    return problems
