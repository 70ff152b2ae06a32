"""The policy layer's own errors: a spec that cannot be read, a flow that cannot be asked."""

from __future__ import annotations


class PolicyError(ValueError):
    """Base of what hybridnet.policy raises."""


class InvalidPolicy(PolicyError):
    """A NetworkPolicy whose ``podSelector`` or ``policyTypes`` cannot be read: it selects
    nothing that could be enforced. ``path`` names the field as the API server would."""

    def __init__(self, policy: str, path: str, message: str):
        super().__init__(f"NetworkPolicy {policy}: {path}: {message}")
        self.policy = policy
        self.path = path
        self.message = message


class BadFlow(PolicyError):
    """A flow to evaluate that names no address, or a port or protocol that does not exist."""
