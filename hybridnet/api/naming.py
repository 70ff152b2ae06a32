"""How IPInstances are named and labelled, shared by the manager (writer) and the daemon
(reader): one object per address, named after it; the pod in the labels."""

from __future__ import annotations

import hashlib
import ipaddress
import re

from hybridnet.api import constants as c

LABEL_POD_NAMESPACE = f"{c.GROUP}/pod-namespace"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def instance_name(address: str) -> str:
    """``198.19.0.5`` -> ``198-19-0-5``; ``2001:db8::5`` -> ``2001-db8--5`` (one per address)."""
    return str(ipaddress.ip_address(address)).replace(".", "-").replace(":", "-")


def label_value(text: str) -> str:
    """``text`` when it is a valid label value, else a stable hash of it (names can be longer
    than the 63 characters a label value may have)."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def pod_selector(pod_namespace: str, pod_name: str) -> str:
    """The label selector that finds a pod's IPInstances."""
    return (
        f"{LABEL_POD_NAMESPACE}={label_value(pod_namespace)},{c.LABEL_POD}={label_value(pod_name)}"
    )
