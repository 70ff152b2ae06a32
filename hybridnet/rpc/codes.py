"""CNI error codes, defined once for both ends of the plugin <-> daemon contract.

The daemon puts the code a failure should become in the trailing metadata key ``cni-code``; the
plugin's client reads it back and the plugin answers the runtime with it. Standard library only
(nothing at all, in fact): the plugin bundle carries this module.
"""

from __future__ import annotations

CNI_CODE_KEY = "cni-code"
"""The trailing metadata key that carries a failed call's CNI code."""

# The CNI spec's well-known codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
CONTAINER_UNKNOWN = 3
INVALID_ENV = 4
IO_ERROR = 5
DECODE_ERROR = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
"""STATUS only: the plugin cannot serve ADDs now."""
LIMITED_CONNECTIVITY = 51
"""STATUS only: ADDs work, but some connectivity is degraded."""

# hybridnet's own (100 and up are plugin-specific).
CHECK_FAILED = 100
"""CHECK found the attachment differs."""
NETWORK_NOT_ON_NODE = 101
"""ADD: the pod's network does not attach this node (an underlay network's nodeSelector does
not pick it). Not 11, try again later: nothing changes until the node's labels or the
network do; not 7, invalid network config: the runtime's configuration is fine."""
ADDRESS_IN_USE = 102
"""ADD: the underlay address check found another host holding the pod's address."""
POD_REQUEST_INVALID = 103
"""ADD on the embedded store: the pod's annotations ask for something impossible (the message
names the annotation). With Kubernetes the webhook refuses such a pod before it is created."""
INTERNAL = 999
"""An unexpected failure inside the plugin or the daemon."""
