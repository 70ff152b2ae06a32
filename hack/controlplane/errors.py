"""The control plane's error type."""


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used; the message says why."""
