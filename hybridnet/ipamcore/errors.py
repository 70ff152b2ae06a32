"""Why an allocation failed, by type: the manager turns each into a pod Event with a reason."""

from __future__ import annotations


class IPAMError(Exception):
    """Base of allocation failures; ``reason`` is the short CamelCase word for Events."""

    reason = "AllocationFailed"


class NoSuchNetwork(IPAMError):
    reason = "NetworkNotFound"


class NoSuchSubnet(IPAMError):
    reason = "SubnetNotFound"


class SubnetExhausted(IPAMError):
    """No address left where the pod may be placed; retry when addresses are released."""

    reason = "SubnetExhausted"


class AddressUnavailable(IPAMError):
    """A requested fixed address is taken, excluded, the gateway, or outside every subnet."""

    reason = "AddressUnavailable"


class InvalidRequest(IPAMError):
    reason = "InvalidRequest"
